"""How fast can one Score-CAM masked pass be at equal output? A ceiling for Score-CAM's speedup.

    python benchmarks/bench_forward.py                  # CPU, random weights, noise images
    python benchmarks/bench_forward.py --weights camkit-demo/classifier.ckpt --images shapes

Score-CAM scores every channel's mask with a full forward pass of the classifier, in camkit as in
pytorch-grad-cam, and each score enters the map through a softmax over channels, so no pass can
be skipped or run at lower precision without changing the map. The only room left is how fast
one float32 pass runs and how many masks are distinct. This script times the same chunk of
masked images (``--batch`` masks of the first image, at ``--size`` px) through

- ``eager``: the model as it is, NCHW — what pytorch-grad-cam's masked passes run;
- ``camkit``: the BN-folded copy on channels-last inputs that camkit's Score-CAM runs;
- ``torch.compile``: Inductor with frozen weights, channels-last (needs a C++ compiler; its
  compile time is printed apart);
- ``onnxruntime``: the model exported to ONNX (only if onnxruntime is installed),

checks that each gives eager's logits to float rounding, and counts the distinct masks of the
``--images`` first images (camkit's Score-CAM makes one pass per distinct mask). The ceiling of
camkit's one-class Score-CAM speedup over pytorch-grad-cam is then
``eager / fastest engine × masks / distinct masks``. Median of ``--repeats`` round-robin runs.

It also scores all masks of the first image for its top class (``--no-spread`` skips this, ~1 min
on a CPU) and prints how the softmax weight spreads over the channels and how far bfloat16 scores
would move the normalised map: the reason no pass can be dropped or run at lower precision.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_explain import write_result
from bench_methods import load_model, make_images

from camkit.core.probe import LayerProbe
from camkit.methods.score import _distinct_masks, _inference_copy, score_masks


def score_cam_masks(model, images: torch.Tensor, layer: str = "layer4.2"):
    """Each image's layer activations, and its masks as pytorch-grad-cam makes them."""
    with LayerProbe(model, [layer]) as probe, torch.inference_mode():
        model(images)
        activations = probe.activations[layer].float()
    return activations, score_masks(activations, tuple(images.shape[-2:]), align_corners=True)


def weight_spread(model, image, activations, masks, batch: int) -> dict:
    """Score every mask of one image for its top class in float32 and bfloat16: how many
    channels hold 90 % / 99 % of the softmax weight, and the largest change of the normalised
    map when the bfloat16 scores are used."""
    network = _inference_copy(model)
    with torch.inference_mode():
        target = int(model(image[None]).argmax())
        exact, low = [], []
        for start in range(0, len(masks), batch):
            chunk = (image * masks[start : start + batch, None]).contiguous(
                memory_format=torch.channels_last
            )
            exact.append(network(chunk)[:, target].float())
            with torch.autocast("cpu", dtype=torch.bfloat16):
                low.append(network(chunk)[:, target].float())
    exact, low = torch.cat(exact), torch.cat(low)

    def normalised_map(scores):
        heat = torch.einsum("c,chw->hw", scores.softmax(0), activations).relu()
        return (heat - heat.min()) / (heat.max() - heat.min() + 1e-7)

    cumulative = exact.softmax(0).sort(descending=True).values.cumsum(0)
    return {
        "class": target,
        "channels_for_90_percent": int((cumulative < 0.9).sum()) + 1,
        "channels_for_99_percent": int((cumulative < 0.99).sum()) + 1,
        "bfloat16_max_score_error": float((low - exact).abs().max()),
        "bfloat16_max_map_change": float((normalised_map(low) - normalised_map(exact)).abs().max()),
    }


ENGINES = ("eager", "camkit", "torch.compile", "onnxruntime")


def engines(model, chunk: torch.Tensor, wanted=ENGINES) -> tuple[dict, dict]:
    """name → (function, input); name → set-up seconds. Engines that cannot start are left out
    with a message."""
    last = chunk.contiguous(memory_format=torch.channels_last)
    found = {"eager": (model, chunk), "camkit": (_inference_copy(model), last)}
    setup = {"eager": 0.0, "camkit": 0.0}
    if "torch.compile" in wanted:
        try:
            import torch._inductor.config as inductor

            inductor.freezing = True
            start = time.perf_counter()
            compiled = torch.compile(copy.deepcopy(model).to(memory_format=torch.channels_last))
            with torch.inference_mode():
                compiled(last)
            found["torch.compile"] = (compiled, last)
            setup["torch.compile"] = time.perf_counter() - start
        except Exception as error:  # no C++ compiler, an unsupported platform
            print(f"torch.compile left out: {str(error).splitlines()[0][:200]}")
    if "onnxruntime" in wanted:
        try:
            import onnxruntime
        except ImportError:
            print("onnxruntime left out: not installed")
        else:
            import tempfile

            start = time.perf_counter()
            with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                path = str(Path(folder) / "model.onnx")
                torch.onnx.export(model, (chunk,), path, dynamo=False, input_names=["x"])
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = torch.get_num_threads()
                session = onnxruntime.InferenceSession(
                    path, options, providers=["CPUExecutionProvider"]
                )
            array = chunk.numpy()
            found["onnxruntime"] = (
                lambda _x: torch.from_numpy(session.run(None, {"x": array})[0]),
                None,
            )
            setup["onnxruntime"] = time.perf_counter() - start
    return {name: found[name] for name in ENGINES if name in found and name in wanted}, setup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32, help="masked images per pass")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--images", type=int, default=2, help="images whose masks are counted")
    parser.add_argument("--kind", choices=("noise", "shapes"), default="noise")
    parser.add_argument("--weights", type=Path, default=None, help="a camkit checkpoint")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--engines",
        default=",".join(ENGINES),
        help="comma-separated; eager and camkit are always timed",
    )
    parser.add_argument("--no-spread", action="store_true", help="skip the weight spread")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    device = torch.device("cpu")
    model = load_model(args.weights, device)
    images = make_images(args.kind, args.images, args.size, device)
    activations, masks = score_cam_masks(model, images)
    distinct = [len(_distinct_masks(a)[0]) for a in activations]
    channels = activations.shape[1]
    chunk = (images[0] * masks[0, : args.batch, None]).contiguous()
    found, setup = engines(model, chunk, {"eager", "camkit", *args.engines.split(",")})
    with torch.inference_mode():
        reference = model(chunk)
        difference = {
            name: float((fn(x) - reference).abs().max()) for name, (fn, x) in found.items()
        }
        times = {name: [] for name in found}
        for _ in range(args.repeats):
            for name, (fn, x) in found.items():
                start = time.perf_counter()
                fn(x)
                times[name].append((time.perf_counter() - start) / args.batch * 1000)
    per_pass = {name: statistics.median(values) for name, values in times.items()}
    fastest = min(per_pass, key=per_pass.get)
    share = channels * len(distinct) / sum(distinct)
    rows = []
    for name, ms in per_pass.items():
        rows.append(
            {
                "engine": name,
                "ms_per_pass": ms,
                "vs_eager": per_pass["eager"] / ms,
                "max_abs_logit_difference": difference[name],
                "setup_s": setup[name],
            }
        )
        print(
            f"{name:<14} {ms:7.2f} ms / pass   {per_pass['eager'] / ms:5.2f}× eager   "
            f"max |Δ logit| {difference[name]:.1e}   set-up {setup[name]:5.1f} s"
        )
    ceiling = per_pass["eager"] / per_pass[fastest] * share
    print(
        f"distinct masks per image: {distinct} of {channels} ({share:.2f}× fewer passes); "
        f"ceiling of one-class Score-CAM vs pytorch-grad-cam: {ceiling:.2f}× ({fastest}), "
        f"{per_pass['eager'] / per_pass['camkit'] * share:.2f}× (camkit's engine)"
    )
    spread = None
    if not args.no_spread:
        spread = weight_spread(model, images[0], activations[0], masks[0], args.batch)
        print(
            f"first image, class {spread['class']}: {spread['channels_for_90_percent']} / "
            f"{spread['channels_for_99_percent']} of {channels} channels hold 90 % / 99 % of the "
            f"softmax weight; bfloat16 scores (max error {spread['bfloat16_max_score_error']:.1e})"
            f" move the normalised map by up to {spread['bfloat16_max_map_change']:.1e}"
        )
    write_result(
        args.out or Path(__file__).parent / "results" / "forward-cpu.json",
        device,
        {
            "weights": str(args.weights or "random"),
            "images": args.kind,
            "batch": args.batch,
            "size": args.size,
            "repeats": args.repeats,
            "distinct_masks": distinct,
            "channels": channels,
            "ceiling": ceiling,
            "fastest": fastest,
            "weight_spread": spread,
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
