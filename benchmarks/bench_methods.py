"""Each CAM method's time per image, camkit against pytorch-grad-cam, in one process.

    python benchmarks/bench_methods.py                  # CPU
    python benchmarks/bench_methods.py --device cuda    # a GPU, if there is one

Both sides explain the same images for the same classes at ``layer4.2`` of a ResNet-50 and
return maps normalised at the input size; the largest difference between the two outputs is
printed next to the times ("equal output"). The gradient methods and Eigen-CAM run at batch 16
and 224 px, median over the repeats (round-robin, so drift hits both sides alike).
pytorch-grad-cam's Score-CAM and Ablation-CAM make one forward pass per channel per image
(2,048 × batch), so on a CPU those two methods run once per side at ``--heavy-batch`` images of
``--heavy-size`` px. camkit's Score-CAM is compared at pytorch-grad-cam's own upsampling
(align_corners=True), so outputs are equal. ``--weights CKPT`` loads a camkit checkpoint (a
trained model has dead channels, for which camkit's Score-CAM shares one pass); the default is random weights.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_explain import timed, write_result

from camkit.explain import Explainer

PEERS = {
    "gradcam": "GradCAM",
    "gradcampp": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "hirescam": "HiResCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "ablationcam": "AblationCAM",
    "scorecam": "ScoreCAM",
}
HEAVY = ("scorecam", "ablationcam")


def peer_runner(model, method: str, images: torch.Tensor, class_ids: list[int]):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = getattr(pytorch_grad_cam, PEERS[method])

    def run():
        with cls(model=model, target_layers=[model.layer4[2]]) as cam:
            if method in ("scorecam", "ablationcam"):
                cam.batch_size = 32  # the masked / ablated passes per chunk, as camkit's
            out = cam(input_tensor=images, targets=[ClassifierOutputTarget(c) for c in class_ids])
        model.zero_grad(set_to_none=True)
        return out

    return run


def ours_runner(model, method: str, images: torch.Tensor, class_ids: list[int]):
    explainer = Explainer(model, "layer4.2", method, batch_size=32)
    explainer._score_align_corners = method == "scorecam"  # pytorch-grad-cam's upsampling

    def run():
        return explainer(images, class_ids).normalized()[:, 0].cpu().numpy()

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--heavy-batch", type=int, default=None, help="default: 2 CPU, 16 GPU")
    parser.add_argument("--heavy-size", type=int, default=None, help="default: 112 CPU, 224 GPU")
    parser.add_argument("--repeats", type=int, default=None, help="default: 3 on CPU, 10 on GPU")
    parser.add_argument("--methods", default=",".join(PEERS))
    parser.add_argument("--weights", type=Path, default=None, help="a camkit checkpoint")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        import pytorch_grad_cam  # noqa: F401
    except ImportError:
        print("pytorch-grad-cam is not installed: `make install` adds it", file=sys.stderr)
        return 1
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    repeats = args.repeats or (10 if gpu else 3)
    heavy_batch = args.heavy_batch or (16 if gpu else 2)
    heavy_size = args.heavy_size or (224 if gpu else 112)
    torch.manual_seed(0)
    if args.weights is not None:
        from camkit.models.resnet import load_classifier

        model, _ = load_classifier(str(args.weights))
    else:
        model = torchvision.models.resnet50(weights=None)
    model = model.eval().to(device)
    classes = model.fc.out_features
    rows = []
    for method in args.methods.split(","):
        heavy = method in HEAVY  # one run each: theirs makes 2,048 forward passes per image
        batch, size = (heavy_batch, heavy_size) if heavy else (args.batch, args.size)
        generator = torch.Generator().manual_seed(1)
        images = torch.randn(batch, 3, size, size, generator=generator).to(device)
        class_ids = [(7 * i) % classes for i in range(batch)]
        cases = {
            "camkit": ours_runner(model, method, images, class_ids),
            "pytorch-grad-cam": peer_runner(model, method, images, class_ids),
        }
        outputs, times = {}, {name: [] for name in cases}
        for name, fn in cases.items():  # warm-up; for the heavy methods, the measurement
            start = time.perf_counter()
            outputs[name] = fn()
            if heavy:
                if gpu:
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - start)
        for _ in range(0 if heavy else repeats):
            for name, fn in cases.items():
                times[name].append(timed(fn, device))
        ours, theirs = (statistics.median(times[n]) / batch for n in cases)
        row = {
            "method": method,
            "camkit_ms_per_image": ours * 1000,
            "pytorch_grad_cam_ms_per_image": theirs * 1000,
            "speedup": theirs / ours,
            "max_abs_difference": float(
                np.abs(outputs["camkit"] - outputs["pytorch-grad-cam"]).max()
            ),
            "batch": batch,
            "size": size,
            "runs": len(times["camkit"]),
        }
        rows.append(row)
        print(
            f"{method:<12} batch {batch:>2} {size:>3} px   camkit {ours * 1000:9.1f} ms/img   "
            f"pytorch-grad-cam {theirs * 1000:9.1f} ms/img   {row['speedup']:7.1f}× faster   "
            f"max |Δ| {row['max_abs_difference']:.1e}",
            flush=True,
        )
    fields = {"weights": str(args.weights or "random"), "repeats": repeats, "rows": rows}
    write_result(
        args.out or Path(__file__).parent / "results" / f"methods-{device.type}.json",
        device,
        fields,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
