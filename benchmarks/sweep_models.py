"""Every torchvision classification model: its default layer, path, map grid, geometry and cost.

    python benchmarks/sweep_models.py                   # all models, random weights, 224 px
    python benchmarks/sweep_models.py --models resnet18,vgg11 --size 128

For each name of ``torchvision.models.list_models(module=torchvision.models)``: the model with
random weights, ``default_layer`` (the rule camkit applies), Grad-CAM there for the top class of
one random image (median of ``--repeats`` calls, after one warm-up) against the plain forward,
the computation path, the map grid, where the cells sit (``align``: ``rf`` with the derived or
measured geometry, or ``grid`` where none exists) and the status: ``ok``, or the one-line error.
Prints a Markdown table (the README's) and writes the rows as JSON. Not part of CI: the largest
models take minutes each on a CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_explain import write_result

from camkit.core.introspect import default_layer
from camkit.explainer import Explainer
from camkit.models.zoo import nonzero_heads


def _median_seconds(call, repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sweep_one(name: str, size: int, repeats: int) -> dict:
    """One model's row; a failure is a status, never an exception."""
    row = {"model": name, "layer": None, "path": None, "grid": None, "align": None}
    try:
        options = {"init_weights": False} if name in ("googlenet", "inception_v3") else {}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = torchvision.models.get_model(name, weights=None, **options).eval()
        nonzero_heads(model)  # torchvision zero-initialises ViT's head: every map 0
        side = 224 if name.startswith(("vit", "maxvit")) else size  # one input size only
        images = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(0))
        row["layer"] = default_layer(model)
        explainer = Explainer(model, row["layer"])
        heatmaps = explainer(images)
        row.update(path=heatmaps.path, grid="×".join(map(str, heatmaps.maps.shape[-2:])))
        # random weights: a class's map can be all 0 after the relu, so the top 5 are checked
        maps = explainer(images, "top-5").maps
        if not torch.isfinite(maps).all() or not (maps.flatten(2).std(dim=2) > 0).any():
            raise ValueError("the maps of the top 5 classes are not finite, or all constant")
        geometry = heatmaps.geometry
        row["align"] = (
            f"rf {geometry.offset[0]:g}+{geometry.stride[0]:g}·i ({geometry.source})"
            if geometry is not None
            else "grid (no receptive-field centre)"
        )
        with torch.inference_mode():
            forward = _median_seconds(lambda: model(images), repeats)
        explain = _median_seconds(lambda: explainer(images), repeats)
        row.update(forward_ms=1000 * forward, vs_forward=explain / forward, status="ok")
    except Exception as error:  # the sweep reports every failure as a status
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        row["status"] = f"{type(error).__name__}: {message[:140]}"
    return row


def table(rows: list[dict]) -> str:
    lines = [
        "| model | default layer | path | map | cells | × forward | status |",
        "|---|---|---|---|---|---:|---|",
    ]
    for r in rows:
        ratio = f"{r['vs_forward']:.2f}" if "vs_forward" in r else "-"
        lines.append(
            f"| {r['model']} | `{r['layer']}` | {r['path']} | {r['grid']} | {r['align']} "
            f"| {ratio} | {r['status']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma-separated names (default: all)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/models-cpu.json"))
    args = parser.parse_args(argv)
    names = (
        args.models.split(",")
        if args.models
        else torchvision.models.list_models(module=torchvision.models)
    )
    rows = []
    for name in names:
        rows.append(sweep_one(name, args.size, args.repeats))
        print(f"{name}: {rows[-1]['status']}", file=sys.stderr, flush=True)
    print(table(rows))
    ok = sum(r["status"] == "ok" for r in rows)
    print(f"\n{ok} of {len(rows)} models ok", file=sys.stderr)
    write_result(args.out, torch.device("cpu"), {"size": args.size, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
