"""The demo's report: per-image panels, the two-object figure and ``index.html``."""

from __future__ import annotations

import html
from dataclasses import replace

import numpy as np

from camkit.data.shapes import CLASSES, generate
from camkit.demo.config import DemoConfig
from camkit.demo.measures import demo_inputs
from camkit.pipeline.run import explain_images
from camkit.pipeline.settings import Settings

__all__ = ["index_html", "pairs_figure", "panel"]


def panel(model, info, sample, config: DemoConfig, predicted=None) -> np.ndarray:
    """image + mask contour | Grad-CAM (true class) | FCN probability map of every class, and
    the ResUNet's predicted mask (magenta contour) when given."""
    from camkit.viz.overlay import colorbar, draw_contours, hstack, overlay, titled

    class_names = list(info.class_names)
    height = 192
    settings = Settings("layer4.2", size=config.size, output_stride=config.output_stride)
    item = demo_inputs([sample], info, "panel")
    (result,) = explain_images(model, info, item, settings)
    gradcam = result.maps[0].numpy()
    fcn = replace(settings, method="fcn", targets="all")
    (scores,) = explain_images(model, info, [replace(item[0], targets=None)], fcn)
    # softmax over classes at each cell of the score maps, then put on the image
    softmax = replace(scores.heatmaps, maps=scores.heatmaps.maps.softmax(dim=1))
    probabilities = softmax.on_image(sample.image.shape[:2], index=0).numpy()
    mask = sample.mask > 0
    probability = float(result.heatmaps.probabilities[0, 0])

    def fit(tile):
        import cv2

        return cv2.resize(tile, (height, height), interpolation=cv2.INTER_NEAREST)

    tiles = [titled(fit(draw_contours(sample.image, mask)), f"{CLASSES[sample.labels[0]]} (mask)")]
    tiles.append(
        titled(fit(overlay(sample.image, gradcam, 0.5, mask=mask)), f"Grad-CAM p={probability:.2f}")
    )
    for name in CLASSES:
        tile = overlay(
            sample.image, probabilities[class_names.index(name)], 0.5, 0.0, 1.0, mask=mask
        )
        tiles.append(titled(fit(tile), f"FCN {name}"))
    if predicted is not None:
        tile = draw_contours(overlay(sample.image, gradcam, 0.5), predicted > 0, (255, 0, 255))
        tiles.insert(2, titled(fit(tile), "ResUNet mask"))
    tiles.append(titled(colorbar(height, 0.0, 1.0), "FCN p"))
    return hstack(tiles)


def pairs_figure(model, info, config: DemoConfig, count: int = 6) -> np.ndarray:
    """Rows of: two-object image | Grad-CAM of class A | Grad-CAM of class B (own contour)."""
    import cv2

    from camkit.viz.overlay import draw_contours, hstack, overlay, titled

    settings = Settings("layer4.2", size=config.size, output_stride=config.output_stride)
    samples = [
        generate(index, config.seed + 3, config.size, config.difficulty, objects=2)
        for index in range(count)
    ]
    rows = []
    for sample, result in zip(
        samples, explain_images(model, info, demo_inputs(samples, info, "pair"), settings)
    ):
        tiles = [
            titled(cv2.resize(sample.image, (192, 192), interpolation=cv2.INTER_NEAREST), "image")
        ]
        for j, label in enumerate(sample.labels):
            own = sample.mask == label + 1
            tile = draw_contours(overlay(sample.image, result.maps[j].numpy(), 0.5), own)
            tiles.append(
                titled(
                    cv2.resize(tile, (192, 192), interpolation=cv2.INTER_NEAREST),
                    f"map of {CLASSES[label]}",
                )
            )
        rows.append(hstack(tiles))
    gap = np.full((6, rows[0].shape[1], 3), 255, np.uint8)
    out = []
    for row in rows:
        out.extend([row, gap])
    return np.concatenate(out[:-1], axis=0)


def _segmentation_html(summary: dict) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{row['train_images']}</td><td>{row['images']}</td>"
        f"<td>{row['iou']:.3f}</td><td>{row['dice']:.3f}</td><td>{row['iou_dataset']:.3f}</td></tr>"
        for name, row in summary.get("segmentation", {}).items()
    )
    if not rows:
        return ""
    return (
        "<h2>ResUNet segmenter (held-out images)</h2><table><tr><th>model</th><th>trained on</th>"
        "<th>evaluated on</th><th>IoU (per image)</th><th>Dice</th><th>IoU (data set)</th></tr>"
        f"{rows}</table>"
    )


def index_html(summary: dict, panels: list[str]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{value['map_size'][0]}×{value['map_size'][1]}</td>"
        f"<td>{value['accuracy']:.3f}</td><td>{value['pointing_game']:.3f}</td>"
        f"<td>{value['energy_in_mask']:.3f}</td><td>{value['two_object_own_max']:.3f}</td></tr>"
        for name, value in summary["localisation"].items()
    )
    images = "".join(f'<p><img src="{html.escape(p)}" alt="{html.escape(p)}"></p>' for p in panels)
    training = summary["training"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>camkit demo report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1600px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}img{{max-width:100%}}</style></head>
<body><h1>camkit demo: Grad-CAM at layer4.2 on synthetic shapes</h1>
<p>ResNet-50 trained from {html.escape(str(training.get("origin", "scratch")))} for {training["epochs"]} epoch(s)
on {training["n_train"]} images ({html.escape(training.get("data", "shapes"))}) at {training["size"]} px;
validation accuracy {training["val_accuracy"]:.3f}.
Held-out: {summary["config"]["n_test"]} single-object and {summary["config"]["n_pairs"]} two-object images.
Pointing game tolerance {summary["config"]["tolerance"]:.0f} px at the image's own size.</p>
<table><tr><th>network</th><th>map</th><th>accuracy</th><th>pointing game</th><th>energy in mask</th>
<th>two-object: own max</th></tr>{rows}</table>
<p>Output stride 16 dilates layer4 for the call (same weights), so maps are twice as dense.</p>
{_segmentation_html(summary)}
<h2>Each class's map on two-object images</h2><p><img src="pairs.png" alt="pairs"></p>
<h2>Panels: image | Grad-CAM | ResUNet mask (magenta) | FCN class-probability maps | scale</h2>{images}
</body></html>
"""
