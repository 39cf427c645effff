"""Speed and memory of camkit's Grad-CAM against the plain forward and the peers, in one process.

    python benchmarks/bench_explain.py                 # CPU, batch 1 and 16, 224 px
    python benchmarks/bench_explain.py --device cuda   # a GPU, if there is one

For each batch size: the plain forward in ``inference_mode``; camkit Grad-CAM at ``layer4.2``
(raw maps, and upsampled + normalised to the input like the peers return), at ``layer3.5``,
and all 1000 class maps; pytorch-grad-cam ``GradCAM``; Captum ``LayerGradCam`` (ReLU + bilinear
upsampling). Median wall time over the repeats, ratio to the plain forward, and peak extra
memory (GPU: ``max_memory_allocated``; CPU: glibc's in-use heap sampled every ~0.5 ms).
Writes a table to stdout and JSON to ``benchmarks/results/``. ResNet-50 with random weights:
weights do not change the cost.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from camkit import __version__
from camkit.explainer import Explainer


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


class HeapSampler:
    """Peak of glibc's in-use bytes (uordblks + hblkhd) while a block runs, from a thread."""

    def __init__(self) -> None:
        libc = ctypes.CDLL("libc.so.6")
        self._mallinfo2 = libc.mallinfo2
        self._mallinfo2.restype = _MallInfo2

    def in_use(self) -> int:
        info = self._mallinfo2()
        return int(info.uordblks + info.hblkhd)

    def measure(self, fn: Callable[[], object]) -> int:
        baseline = self.in_use()
        peak = [baseline]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], self.in_use())
                time.sleep(0.0005)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            result = fn()
            peak[0] = max(peak[0], self.in_use())
            del result
        finally:
            stop.set()
            thread.join()
        return peak[0] - baseline


def peak_extra_bytes(
    fn: Callable[[], object], device: torch.device, sampler: HeapSampler | None
) -> int | None:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        baseline = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        result = fn()
        torch.cuda.synchronize()
        del result
        return torch.cuda.max_memory_allocated() - baseline
    return sampler.measure(fn) if sampler else None


def timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def cases(model: torch.nn.Module, images: torch.Tensor) -> dict[str, Callable[[], object]]:
    size = images.shape[-2:]
    layer4 = Explainer(model, "layer4.2")
    layer3 = Explainer(model, "layer3.5")
    out: dict[str, Callable[[], object]] = {}

    def forward():
        with torch.inference_mode():
            return model(images)

    out["plain forward (inference_mode)"] = forward
    out["camkit gradcam layer4.2 (raw maps)"] = lambda: layer4(images).maps
    out["camkit gradcam layer4.2 (+upsample, normalise)"] = lambda: layer4(images).normalized()
    out["camkit gradcam layer3.5 (+upsample, normalise)"] = lambda: layer3(images).normalized()
    out["camkit all 1000 class maps layer4.2 (raw)"] = lambda: layer4(images, "all").maps
    # the speed options (DESIGN: "channels-last and autocast are options, measured")
    half = "fp16" if images.device.type == "cuda" else "bf16"
    speed = {
        "channels-last": {"channels_last": True},
        f"autocast {half}": {"autocast": half},
        f"channels-last + {half}": {"channels_last": True, "autocast": half},
    }
    for label, options in speed.items():
        explainer = Explainer(model, "layer4.2", **options)
        out[f"camkit gradcam layer4.2 {label} (+upsample, normalise)"] = (
            lambda explainer=explainer: explainer(images).normalized()
        )
    try:
        from pytorch_grad_cam import GradCAM

        def grad_cam():
            with GradCAM(model=model, target_layers=[model.layer4[2]]) as cam:
                return cam(input_tensor=images, targets=None)

        out["pytorch-grad-cam GradCAM layer4.2"] = grad_cam
    except ImportError:
        print("pytorch-grad-cam not installed: skipped", file=sys.stderr)
    try:
        from captum.attr import LayerGradCam

        captum = LayerGradCam(model, model.layer4[2])

        def captum_gradcam():
            with torch.no_grad():
                targets = model(images).argmax(1)
            attribution = captum.attribute(images, target=targets, relu_attributions=True)
            model.zero_grad(set_to_none=True)
            return F.interpolate(
                attribution.detach(), size=size, mode="bilinear", align_corners=False
            )

        out["captum LayerGradCam layer4.2 (+upsample)"] = captum_gradcam
    except ImportError:
        print("captum not installed: skipped", file=sys.stderr)
    return out


def write_result(out: Path, device: torch.device, fields: dict) -> None:
    """The run's figures with the versions and machine, as JSON."""
    result = {
        "camkit": __version__,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        **fields,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=None, help="default: 5 on CPU, 30 on GPU")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    repeats = args.repeats or (30 if device.type == "cuda" else 5)
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval().to(device)
    sampler = HeapSampler() if device.type == "cpu" and platform.libc_ver()[0] == "glibc" else None
    rows = []
    for batch in args.batch_sizes:
        images = torch.randn(batch, 3, args.size, args.size, device=device)
        batch_cases = cases(model, images)
        # Round-robin: every repeat runs each case once, so drift in the machine's speed
        # (shared CPUs, clocks) hits all cases alike; then the median per case.
        for fn in batch_cases.values():
            for _ in range(2 if device.type == "cuda" else 1):
                fn()
        times: dict[str, list[float]] = {name: [] for name in batch_cases}
        for _ in range(repeats):
            for name, fn in batch_cases.items():
                times[name].append(timed(fn, device))
        forward_time = statistics.median(times["plain forward (inference_mode)"])
        reference = batch_cases["camkit gradcam layer4.2 (+upsample, normalise)"]()
        differences = {  # how far the speed options move the normalised maps
            name: float((fn() - reference).abs().max())
            for name, fn in batch_cases.items()
            if "channels-last" in name or "autocast" in name
        }
        for name, fn in batch_cases.items():
            seconds = statistics.median(times[name])
            memory = peak_extra_bytes(fn, device, sampler)
            row = {
                "batch": batch,
                "case": name,
                "median_s": seconds,
                "ratio_to_forward": seconds / forward_time,
                "peak_extra_mb": None if memory is None else memory / 2**20,
                "max_abs_difference": differences.get(name),
            }
            rows.append(row)
            memory_text = "-" if memory is None else f"{memory / 2**20:8.0f}"
            difference = f"  max |Δ| {differences[name]:.1e}" if name in differences else ""
            print(
                f"batch {batch:>2}  {name:<66} {seconds * 1000:9.1f} ms  "
                f"{row['ratio_to_forward']:5.2f}×  {memory_text} MB{difference}",
                flush=True,
            )
    names = {r["case"] for r in rows}
    for batch in args.batch_sizes:
        ours = next(
            r
            for r in rows
            if r["batch"] == batch and r["case"].startswith("camkit gradcam layer4.2 (+")
        )
        for peer in (
            "pytorch-grad-cam GradCAM layer4.2",
            "captum LayerGradCam layer4.2 (+upsample)",
        ):
            if peer in names:
                theirs = next(r for r in rows if r["batch"] == batch and r["case"] == peer)
                print(
                    f"batch {batch:>2}  camkit is {theirs['median_s'] / ours['median_s']:.1f}× faster than {peer.split()[0]}"
                )
    fields = {"size": args.size, "repeats": repeats, "rows": rows}
    write_result(
        args.out or Path(__file__).parent / "results" / f"explain-{device.type}.json",
        device,
        fields,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
