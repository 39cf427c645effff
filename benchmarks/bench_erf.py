"""Drawing each cell where its evidence comes from: effective receptive-field centres.

    python benchmarks/bench_erf.py --weights camkit-demo/classifier.ckpt

``align="rf"`` draws cell ``i`` of a stride-``S`` ResNet map at ``S·i``, the centre of its
receptive field. But a deep layer's receptive field is wider than the image, and what a cell
answers to is concentrated in its *effective* receptive field (Luo et al., NeurIPS 2016), which
the image's border cuts for every cell near it, and which the trained weights may tilt. This
measures where that evidence lies: for each cell ``(i, j)`` of ``layer4.2`` the centroid of
``|∂ Σ_k A_k[i, j] / ∂x|`` (summed over colours and over ``--erf-images`` generated hard
images of another seed; one backward pass per cell), rows and columns each averaged over the
other axis. The Grad-CAM maps (true class) of the demo's 200 held-out hard images and 100 pairs
are then drawn three ways — ``grid``, ``rf`` and ``erf`` (bilinear between the measured centres,
flat beyond the outermost) — and measured as ``bench_alignment.py`` measures them: centroid
offset, energy in mask, pointing game (15 px), the two-object test. Those follow the pipeline's
rules (pointing: any pixel at the maximum; two-object: the first such pixel), under which the
wide flat borders beyond outermost centres tie many pixels, so both are also scored at the
drawn centre of the maximal cell (``pointing_cell``, ``two_object_cell``). Energy and pointing also
for the half of the images whose object lies farther from the image's centre (``outer``) and
the other half (``inner``), since the measured centres crowd towards the middle. A measurement,
not an option of the pipeline.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_explain import write_result

from camkit import Explainer
from camkit.core.probe import LayerProbe
from camkit.core.surgery import dilated_last_stage
from camkit.data.images import preprocess
from camkit.data.shapes import CLASSES, generate
from camkit.demo import DemoConfig, centroid_offset
from camkit.demo.measures import object_distances, place_of
from camkit.metrics.localisation import energy_in_mask, pointing_game
from camkit.models.resnet import load_classifier

LAYER = "layer4.2"


def erf_centres(model, layer: str, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per row and per column of ``layer``'s map: the mean centroid (px, model input) of the
    input-gradient magnitude of the cell's channel sum, over ``images``."""
    x = images.clone().requires_grad_(True)
    with LayerProbe(model, layer) as probe:
        model(x)
    activations = probe.activations[layer]
    rows, columns = activations.shape[-2:]
    ys, xs = np.mgrid[0 : x.shape[-2], 0 : x.shape[-1]]
    cy, cx = np.zeros((rows, columns)), np.zeros((rows, columns))
    for i in range(rows):
        for j in range(columns):
            (grad,) = torch.autograd.grad(activations[:, :, i, j].sum(), x, retain_graph=True)
            weight = grad.abs().sum((0, 1)).numpy()
            if not weight.sum() > 0:
                raise ValueError(f"cell ({i}, {j}) has no input gradient on these images")
            cy[i, j] = (weight * ys).sum() / weight.sum()
            cx[i, j] = (weight * xs).sum() / weight.sum()
    rows_at, columns_at = cy.mean(1), cx.mean(0)
    if not (np.all(np.diff(rows_at) > 0) and np.all(np.diff(columns_at) > 0)):
        raise ValueError(f"measured centres are not increasing: {rows_at}, {columns_at}")
    return rows_at, columns_at


def axis_weights(pixels: int, centres: np.ndarray) -> np.ndarray:
    """``(pixels, cells)`` bilinear weights between increasing cell ``centres``, flat beyond:
    each cell's tent (``np.interp`` of its one-hot row, which holds the end values)."""
    return np.stack([np.interp(np.arange(pixels), centres, row) for row in np.eye(len(centres))], 1)


def measure(maps, pair_maps, singles, pairs, rows, columns, tolerance) -> dict:
    """The demo's localisation figures for maps drawn at ``rows`` × ``columns`` centres."""
    wy, wx = (
        axis_weights(singles[0].image.shape[0], rows),
        axis_weights(singles[0].image.shape[1], columns),
    )
    offsets, energies, hits, cell_hits = [], [], [], []
    for cells, sample in zip(maps, singles):
        heat = wy @ cells @ wx.T
        offsets.append(centroid_offset(heat, sample.mask > 0))
        energies.append(energy_in_mask(heat, sample.mask > 0))
        hits.append(pointing_game(heat, sample.mask > 0, tolerance))
        y, x = _cell_point(cells, rows, columns)
        distance = object_distances(sample, sample.labels[0])[0][y, x]
        cell_hits.append(bool(distance <= tolerance))
    own, cell_own = [], []
    for k, per_class in enumerate(pair_maps):
        for cells, sample in zip(per_class, pairs):
            heat = wy @ cells @ wx.T
            y, x = np.unravel_index(int(heat.argmax()), heat.shape)
            distances = object_distances(sample, sample.labels[k])
            own.append(place_of(distances, int(y), int(x), tolerance) == "own")
            y, x = _cell_point(cells, rows, columns)
            cell_own.append(place_of(distances, y, x, tolerance) == "own")
    offsets = np.array([o for o in offsets if o is not None])
    outer = _outer(singles)
    return {
        "centroid_offset_y": round(float(offsets[:, 0].mean()), 2),
        "centroid_offset_x": round(float(offsets[:, 1].mean()), 2),
        "energy_in_mask": round(float(np.mean(energies)), 3),
        "pointing_game": round(float(np.mean(hits)), 3),
        "two_object_own_max": round(float(np.mean(own)), 3),
        # the same two tests at the drawn centre of the maximal cell: no ties on flat borders
        "pointing_cell": round(float(np.mean(cell_hits)), 3),
        "two_object_cell": round(float(np.mean(cell_own)), 3),
        # the half of the images whose object lies farther from the image's centre, and the rest
        "energy_outer": round(float(np.mean(np.array(energies)[outer])), 3),
        "energy_inner": round(float(np.mean(np.array(energies)[~outer])), 3),
        "pointing_outer": round(float(np.mean(np.array(hits)[outer])), 3),
        "pointing_inner": round(float(np.mean(np.array(hits)[~outer])), 3),
    }


def _cell_point(cells: np.ndarray, rows: np.ndarray, columns: np.ndarray) -> tuple[int, int]:
    """The pixel where the map's maximal cell is drawn (its centre, rounded, in the image)."""
    i, j = np.unravel_index(int(cells.argmax()), cells.shape)
    return int(np.clip(round(rows[i]), 0, None)), int(np.clip(round(columns[j]), 0, None))


def _outer(samples) -> np.ndarray:
    """Whether each sample's object centroid is farther from the image's centre than the
    median's."""
    distances = []
    for sample in samples:
        ys, xs = np.nonzero(sample.mask)
        centre = (np.array(sample.mask.shape) - 1) / 2
        distances.append(np.hypot(ys.mean() - centre[0], xs.mean() - centre[1]))
    return np.array(distances) > np.median(distances)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True, help="a classifier checkpoint")
    parser.add_argument("--erf-images", type=int, default=32, help="images the centres are on")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/erf-cpu.json"))
    args = parser.parse_args(argv)
    model, info = load_classifier(args.weights)
    model.eval()
    config = DemoConfig()
    size = config.size
    singles = [generate(i, config.seed + 2, size, "hard") for i in range(config.n_test)]
    pairs = [generate(i, config.seed + 3, size, "hard", objects=2) for i in range(config.n_pairs)]
    others = [generate(i, config.seed + 11, size, "hard") for i in range(args.erf_images)]
    to_model = [list(info.class_names).index(name) for name in CLASSES]

    def batch(samples):
        return preprocess([s.image for s in samples], size, info.mean, info.std)

    single_batch, pair_batch, other_batch = batch(singles), batch(pairs), batch(others)
    labels = [to_model[s.labels[0]] for s in singles]
    pair_labels = [[to_model[c] for c in s.labels] for s in pairs]
    rows = []
    for stride in (32, 16):
        dilated = dilated_last_stage(model) if stride == 16 else contextlib.nullcontext(model)
        with dilated as network:
            centres = erf_centres(network, LAYER, other_batch)
        explainer = Explainer(model, LAYER, "gradcam", output_stride=stride)
        result = explainer(single_batch, labels)
        maps = result.maps[:, 0].numpy()
        accuracy = float((result.logits.argmax(1).numpy() == np.array(labels)).mean())
        both = explainer(pair_batch, pair_labels).maps.numpy()  # (N, 2, h, w): each class's map
        pair_maps = [both[:, k] for k in (0, 1)]
        cells = maps.shape[-1]
        layouts = {
            "grid": ((np.arange(cells) + 0.5) * size / cells - 0.5,) * 2,
            "rf": (stride * np.arange(cells, dtype=float),) * 2,
            "erf": centres,
        }
        for align, (ry, rx) in layouts.items():
            row = {"output_stride": stride, "align": align, "accuracy": accuracy}
            row |= measure(maps, pair_maps, singles, pairs, ry, rx, config.tolerance)
            row["cell_rows"], row["cell_columns"] = (
                np.round(ry, 1).tolist(),
                np.round(rx, 1).tolist(),
            )
            print(row, flush=True)
            rows.append(row)
    command = (
        f"bench_erf.py --weights {args.weights} --erf-images {args.erf_images} --out {args.out}"
    )
    write_result(args.out, torch.device("cpu"), {"command": command, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
