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
(align_corners=True), so outputs are equal. ``scorecam-bf16`` runs camkit's masked passes under
bfloat16 autocast — an approximation, whose max |Δ| the row shows. ``scorecam-top3`` explains
three classes per image:
one camkit call (the masked passes serve every class), three pytorch-grad-cam calls (it takes one
target per image). ``--weights CKPT`` loads a camkit checkpoint (a
trained model has dead channels, for which camkit's Score-CAM shares one pass); the default is random weights; ``--images shapes`` uses held-out shapes images instead of noise.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_explain import HeapSampler, peak_extra_bytes, timed, write_result

from camkit.explainer import Explainer

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


def split(method: str) -> tuple[str, int]:
    """``"scorecam-top3"`` → ``("scorecam", 3)``: three target classes per image;
    ``"scorecam-bf16"`` → ``("scorecam", 1)`` (camkit under bfloat16 autocast)."""
    base, _, count = method.removesuffix("-bf16").partition("-top")
    return base, int(count or 1)


def peer_runner(model, method: str, images: torch.Tensor, class_ids: list[list[int]]):
    """pytorch-grad-cam takes one target per image: K targets are K calls."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    base, count = split(method)
    cls = getattr(pytorch_grad_cam, PEERS[base])

    def run():
        maps = []
        for k in range(count):
            with cls(model=model, target_layers=[model.layer4[2]]) as cam:
                if base in ("scorecam", "ablationcam"):
                    cam.batch_size = 32  # the masked / ablated passes per chunk, as camkit's
                targets = [ClassifierOutputTarget(ids[k]) for ids in class_ids]
                maps.append(cam(input_tensor=images, targets=targets))
            model.zero_grad(set_to_none=True)
        return np.stack(maps, axis=1)  # (N, K, H, W)

    return run


def ours_runner(model, method: str, images: torch.Tensor, class_ids: list[list[int]]):
    base, _ = split(method)
    autocast = "bf16" if method.endswith("-bf16") else None  # approximate: max |Δ| says how much
    explainer = Explainer(model, "layer4.2", base, batch_size=32, autocast=autocast)
    explainer._score_align_corners = base == "scorecam"  # pytorch-grad-cam's upsampling

    def run():
        return explainer(images, class_ids).normalized().cpu().numpy()  # (N, K, H, W)

    return run


def load_model(weights: Path | None, device: torch.device) -> torch.nn.Module:
    """A camkit checkpoint, or a ResNet-50 with seeded random weights."""
    torch.manual_seed(0)
    if weights is not None:
        from camkit.models.resnet import load_classifier

        model, _ = load_classifier(str(weights))
    else:
        model = torchvision.models.resnet50(weights=None)
    return model.eval().to(device)


def make_images(kind: str, batch: int, size: int, device: torch.device) -> torch.Tensor:
    """``"noise"``: seeded Gaussian noise; ``"shapes"``: held-out shapes images, as the demo
    model saw in training."""
    if kind == "shapes":
        from camkit.data.images import preprocess
        from camkit.data.shapes import generate

        pictures = [generate(i, seed=2, size=size).image for i in range(batch)]
        return preprocess(pictures, size).to(device)
    generator = torch.Generator().manual_seed(1)
    return torch.randn(batch, 3, size, size, generator=generator).to(device)


def _mb(value: int | None) -> int | None:
    return None if value is None else round(value / 2**20)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--heavy-batch", type=int, default=None, help="default: 2 CPU, 16 GPU")
    parser.add_argument("--heavy-size", type=int, default=None, help="default: 112 CPU, 224 GPU")
    parser.add_argument("--repeats", type=int, default=None, help="default: 3 on CPU, 10 on GPU")
    parser.add_argument(
        "--methods",
        default=",".join([*PEERS, "scorecam-top3", "scorecam-bf16"]),
        help="comma-separated; NAME-topK explains K classes per image (K calls for the peer)",
    )
    parser.add_argument("--weights", type=Path, default=None, help="a camkit checkpoint")
    parser.add_argument(
        "--images", choices=("noise", "shapes"), default="noise", help="what the images show"
    )
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
    model = load_model(args.weights, device)
    classes = model.fc.out_features
    sampler = HeapSampler() if not gpu and platform.libc_ver()[0] == "glibc" else None
    rows = []
    for method in args.methods.split(","):
        heavy = (
            split(method)[0] in HEAVY
        )  # one run each: theirs makes 2,048 forward passes per image
        batch, size = (heavy_batch, heavy_size) if heavy else (args.batch, args.size)
        images = make_images(args.images, batch, size, device)
        count = split(method)[1]
        class_ids = [[(7 * i + k) % classes for k in range(count)] for i in range(batch)]
        cases = {
            "camkit": ours_runner(model, method, images, class_ids),
            "pytorch-grad-cam": peer_runner(model, method, images, class_ids),
        }
        outputs, times, memory = {}, {name: [] for name in cases}, {}
        for name, fn in cases.items():  # warm-up; for the heavy methods, the measurement
            if heavy:  # one run: its time, its output and its peak memory

                def keep(fn=fn, name=name, outputs=outputs):
                    outputs[name] = fn()

                start = time.perf_counter()
                memory[name] = peak_extra_bytes(keep, device, sampler)
                times[name].append(time.perf_counter() - start)
            else:
                outputs[name] = fn()
        for _ in range(0 if heavy else repeats):
            for name, fn in cases.items():
                times[name].append(timed(fn, device))
        if not heavy:
            memory = {name: peak_extra_bytes(fn, device, sampler) for name, fn in cases.items()}
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
            "camkit_peak_extra_mb": _mb(memory["camkit"]),
            "pytorch_grad_cam_peak_extra_mb": _mb(memory["pytorch-grad-cam"]),
        }
        rows.append(row)
        print(
            f"{method:<12} batch {batch:>2} {size:>3} px   camkit {ours * 1000:9.1f} ms/img   "
            f"pytorch-grad-cam {theirs * 1000:9.1f} ms/img   {row['speedup']:7.1f}× faster   "
            f"max |Δ| {row['max_abs_difference']:.1e}   peak extra memory "
            f"{row['camkit_peak_extra_mb']} vs {row['pytorch_grad_cam_peak_extra_mb']} MB",
            flush=True,
        )
    fields = {
        "weights": str(args.weights or "random"),
        "images": args.images,
        "repeats": repeats,
        "rows": rows,
    }
    write_result(
        args.out or Path(__file__).parent / "results" / f"methods-{device.type}.json",
        device,
        fields,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
