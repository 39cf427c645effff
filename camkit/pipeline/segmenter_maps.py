"""The classifier's map next to the segmenter's own, on the same images.

For each image the pipeline gives the classifier's heatmap (its first target, put on the image
as every command puts it), and :class:`SegmenterMaps` adds the segmenter's own Grad-CAM: a
:class:`~camkit.regions.SegmenterExplainer` at ``layer`` (default ``layer4``) for the
foreground's logits summed over the segmenter's own predicted mask, put on the image the same
way (the layer's geometry, ``align``). Both maps are then measured with the pure functions of
:mod:`camkit.metrics.localisation`, inside

- ``predicted``: the segmenter's predicted foreground at the image's size (probabilities
  resampled to the image, then thresholded: the mask ``camkit compare --segmenter`` uses), and
- ``true``: the true mask, where the run has one (mask files);

and against each other. Columns of one image (:func:`pair_metrics`; ``None`` where a metric
does not apply, e.g. an empty mask):

==========================================  ====================================================
``{map}_pointing_game@{mask}``              :func:`~camkit.metrics.localisation.pointing_game`
                                            as 0/1 (tolerance in px at the image's size)
``{map}_energy_in_mask@{mask}``             :func:`~camkit.metrics.localisation.energy_in_mask`
``agreement_spearman``                      :func:`~camkit.metrics.localisation.rank_correlation`
                                            of the two maps at the image's size
``agreement_top{P}_iou``                    :func:`~camkit.metrics.localisation.top_region_iou`:
                                            IoU of each map's top ``P`` % pixels (default 20);
                                            ``None`` when either map is flat
``{map}_flat``                              1.0 when the map has no positive value (Grad-CAM's
                                            ReLU removed it all): its pointing game then misses
                                            and its energy is 0
``predicted_mask_share``                    the predicted mask's share of the image
``segmenter_class_id``                      the segmenter class explained
==========================================  ====================================================

``map`` is ``classifier`` or ``segmenter``. The agreement measures are rank-based, so the two
maps' unrelated scales do not matter. Summaries are :func:`camkit.pipeline.compare.summarise`'s
(mean, median, 95 % percentile-bootstrap interval of the mean).

Example:
    >>> maps = SegmenterMaps(*load_segmenter("seg.ckpt"))
    >>> rows = [row for row, _ in maps.compare(Comparer(model, info), paths, mask_paths)]
    >>> print(format_table(summary_table(rows)))
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from camkit.metrics.localisation import (
    energy_in_mask,
    pointing_game,
    rank_correlation,
    top_region_iou,
)
from camkit.pipeline.compare import summarise
from camkit.pipeline.run import Result

__all__ = ["MapPair", "SegmenterMaps", "pair_metrics", "pairs_figure", "summary_table"]

MAPS = ("classifier", "segmenter")
MASKS = ("predicted", "true")


def pair_metrics(
    classifier_map: np.ndarray,
    segmenter_map: np.ndarray,
    predicted_mask: np.ndarray,
    true_mask: np.ndarray | None = None,
    tolerance: float = 15.0,
    fraction: float = 0.2,
) -> dict:
    """Pointing game and energy in mask of both maps inside each mask, and their agreement.

    Args:
        classifier_map, segmenter_map: raw ``(H, W)`` maps at the image's size.
        predicted_mask: the segmenter's binary mask ``(H, W)``; ``true_mask``: the true one, or
            ``None`` (then the ``@true`` columns are ``None``).
        tolerance: the pointing game's tolerance in px; ``fraction``: the top share of pixels
            whose overlap ``agreement_top{P}_iou`` measures.

    Returns:
        The columns of the module docstring (without ``segmenter_class_id``).
    """
    maps = {"classifier": classifier_map, "segmenter": segmenter_map}
    masks = {"predicted": predicted_mask, "true": true_mask}
    out: dict = {}
    for mask_name, mask in masks.items():
        for map_name, heatmap in maps.items():
            hit = None if mask is None else pointing_game(heatmap, mask, tolerance)
            energy = None if mask is None else energy_in_mask(heatmap, mask)
            out[f"{map_name}_pointing_game@{mask_name}"] = None if hit is None else float(hit)
            out[f"{map_name}_energy_in_mask@{mask_name}"] = energy
    for map_name, heatmap in maps.items():
        out[f"{map_name}_flat"] = float(not np.nan_to_num(np.asarray(heatmap)).max() > 0)
    out["agreement_spearman"] = rank_correlation(classifier_map, segmenter_map)
    # a flat map has no top region (its "top" pixels would be the first ones by position)
    flat = out["classifier_flat"] or out["segmenter_flat"]
    top = None if flat else top_region_iou(classifier_map, segmenter_map, fraction)
    out[f"agreement_top{round(100 * fraction)}_iou"] = top
    out["predicted_mask_share"] = float(np.asarray(predicted_mask).astype(bool).mean())
    return out


@dataclass(frozen=True)
class MapPair:
    """The two maps of one image, its masks, and :func:`pair_metrics` (+ the class explained).

    ``image``: RGB uint8 ``(H, W, 3)``; ``classifier_map``, ``segmenter_map``: raw float32
    ``(H, W)`` on it; ``predicted_mask``, ``true_mask``: bool ``(H, W)`` (``true_mask`` may be
    ``None``); ``segmenter_map_size``: the segmenter layer's map ``(h, w)`` before it was put on
    the image.
    """

    key: str
    image: np.ndarray
    classifier_map: np.ndarray
    segmenter_map: np.ndarray
    predicted_mask: np.ndarray
    true_mask: np.ndarray | None
    segmenter_class: int
    metrics: dict
    segmenter_map_size: tuple[int, int] = (0, 0)


class SegmenterMaps:
    """The segmenter's own Grad-CAM beside the classifier's, measured in the same masks.

    Args:
        segmenter, info: a ResUNet and its checkpoint metadata
            (:func:`camkit.models.segmenter.load_segmenter`); it is run on its own device.
        layer: the segmenter's layer to explain (``layer1``–``layer4``, ``dec4``–``dec0``).
        method: a method that takes gradients or the activations alone (default Grad-CAM).
        align: how maps are put on images (``"rf"`` or ``"grid"``; use the classifier's).
        tolerance, fraction: see :func:`pair_metrics`.
        threshold: where the binary segmenter's mask starts (sigmoid probability), for its
            region and its predicted mask alike.
    """

    def __init__(
        self,
        segmenter: torch.nn.Module,
        info: dict,
        layer: str = "layer4",
        method: str = "gradcam",
        align: str = "rf",
        tolerance: float = 15.0,
        fraction: float = 0.2,
        threshold: float = 0.5,
    ) -> None:
        from camkit.regions import SegmenterExplainer

        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        self.segmenter, self.info = segmenter, info
        self.explainer = SegmenterExplainer(segmenter, layer, method, threshold, align=align)
        self.layer, self.method = self.explainer.layer, method
        self.tolerance, self.fraction, self.threshold = tolerance, fraction, threshold

    def explain(self, images: Sequence[np.ndarray]) -> tuple[list, list, list[int], tuple]:
        """The segmenter's own maps on RGB uint8 ``images`` (raw float32 ``(H, W)`` each), its
        predicted masks (bool ``(H, W)``: foreground), the class explained in each, and the
        layer's map size ``(h, w)``."""
        from camkit.pipeline.masks import masks_from_logits, segmenter_batch
        from camkit.regions import own_regions

        if len(images) == 0:
            return [], [], [], (0, 0)
        device = next(self.segmenter.parameters()).device
        batch = segmenter_batch(self.info, images).to(device)  # (N, 3, size, size)
        # one plain pass gives both the region explained and the predicted masks
        logits = self.explainer.logits(batch)
        regions = own_regions(logits, self.threshold)
        heatmaps = self.explainer(batch, regions=regions).cpu()
        maps = [
            heatmaps.on_image(image.shape[:2], index=i)[0].numpy().astype(np.float32)
            for i, image in enumerate(images)
        ]
        shapes = [image.shape[:2] for image in images]
        predicted = masks_from_logits(logits, shapes, self.threshold)
        classes = heatmaps.class_ids[:, 0].tolist()
        return maps, [mask > 0 for mask, _ in predicted], classes, tuple(heatmaps.maps.shape[-2:])

    def measure(
        self,
        images: Sequence[np.ndarray],
        classifier_maps: Sequence[np.ndarray],
        true_masks: Sequence[np.ndarray | None] | None = None,
        keys: Sequence[str] | None = None,
    ) -> list[MapPair]:
        """One :class:`MapPair` per image: the segmenter explained, both maps measured."""
        true_masks = list(true_masks) if true_masks is not None else [None] * len(images)
        keys = list(keys) if keys is not None else [f"image-{i}" for i in range(len(images))]
        if not len(images) == len(classifier_maps) == len(true_masks) == len(keys):
            raise ValueError(
                f"{len(images)} images, {len(classifier_maps)} classifier maps, "
                f"{len(true_masks)} true masks and {len(keys)} keys: give one of each per image"
            )
        maps, predicted, classes, map_size = self.explain(images)
        pairs = []
        for key, image, heat, own, mask, truth, class_id in zip(
            keys, images, classifier_maps, maps, predicted, true_masks, classes
        ):
            heat = np.asarray(heat, np.float32)
            truth = None if truth is None else np.asarray(truth) > 0
            metrics = pair_metrics(heat, own, mask, truth, self.tolerance, self.fraction)
            metrics["segmenter_class_id"] = int(class_id)
            pair = MapPair(key, image, heat, own, mask, truth, int(class_id), metrics, map_size)
            pairs.append(pair)
        return pairs

    def follow(
        self, results: Iterable[Result], true_masks: bool, batch_size: int = 16
    ) -> Iterator[tuple[Result, MapPair | None]]:
        """The pipeline's results, each with its :class:`MapPair` (``None`` for a failed one),
        in order, the segmenter run in batches of ``batch_size``.

        ``true_masks``: the results' masks are true masks (mask files); ``False`` when they are
        predicted (``compare --segmenter``) or absent — then the ``@true`` columns are ``None``.
        """
        buffer: list[Result] = []

        def flush():
            good = [r for r in buffer if r.ok]
            pairs = self.measure(
                [r.image for r in good],
                [r.maps[r.order[0]].numpy() for r in good],
                [r.mask if true_masks else None for r in good],
                [r.key for r in good],
            )
            found = dict(zip([id(r) for r in good], pairs))
            yield from ((r, found.get(id(r))) for r in buffer)
            buffer.clear()

        for result in results:
            buffer.append(result)
            if len(buffer) >= batch_size:
                yield from flush()
        if buffer:
            yield from flush()

    def compare(
        self,
        comparer,
        image_paths: Sequence[Path | str],
        mask_paths: Sequence[Path | None] | None = None,
        class_id: int | None = None,
        batch_size: int = 16,
    ) -> Iterator[tuple[dict, MapPair | None]]:
        """The :class:`~camkit.pipeline.compare.Comparer`'s run on ``image_paths``, with the
        segmenter's own map beside each heatmap: ``(row, pair)`` per image, ``row`` being the
        Comparer's flat row (metrics against ``mask_paths``, the true masks, if given) with
        :func:`pair_metrics`' columns added; ``pair`` is ``None`` for a failed image."""
        from camkit.data.inputs import as_inputs
        from camkit.pipeline.masks import MaskSource
        from camkit.pipeline.records import flat_row, record
        from camkit.pipeline.run import explain_images

        items = as_inputs([Path(p) for p in image_paths])
        masks = None
        if mask_paths is not None and any(m is not None for m in mask_paths):
            if len(mask_paths) != len(items):
                raise ValueError(
                    f"{len(items)} images but {len(mask_paths)} mask paths; give one per image"
                )
            found = {item.key: m for item, m in zip(items, mask_paths) if m is not None}
            masks = MaskSource(by_key=found, resize=comparer.resize_mask)
        settings = replace(comparer.settings(class_id), batch_size=batch_size, align=self.align)
        settings = settings.resolved(comparer.model, comparer.info)
        results = explain_images(
            comparer.model, comparer.info, items, settings, masks, comparer.tolerance
        )
        for result, pair in self.follow(results, masks is not None, batch_size):
            row = flat_row(record(result, comparer.info, settings))
            if pair is not None:
                row.update(pair.metrics)
            yield row, pair

    @property
    def align(self) -> str:
        return self.explainer.explainer.align


def summary_table(rows: list[dict]) -> list[dict]:
    """The run in a few lines, one per map × mask: the mean and 95 % bootstrap interval of the
    pointing game and of the energy in mask over ``rows`` (masks without values left out)."""
    summary = {s["metric"]: s for s in summarise(rows)}
    table = []
    for mask in MASKS:
        for name in MAPS:
            hit = summary.get(f"{name}_pointing_game@{mask}")
            energy = summary.get(f"{name}_energy_in_mask@{mask}")
            if hit is None or not hit["n"]:
                continue
            table.append(
                {
                    "map": name,
                    "mask": mask,
                    "n": hit["n"],
                    "pointing_game": hit["mean"],
                    "pg_ci95": f"{hit['ci95_low']:.3f}–{hit['ci95_high']:.3f}",
                    "energy_in_mask": energy["mean"],
                    "energy_ci95": f"{energy['ci95_low']:.3f}–{energy['ci95_high']:.3f}",
                }
            )
    return table


def pairs_figure(
    pairs: Sequence[MapPair],
    classifier_label: str = "classifier",
    segmenter_label: str = "segmenter",
):
    """:func:`camkit.viz.plots.map_pair_grid` of ``pairs``, each map titled with its pointing
    game and energy inside the predicted mask (and the true one, where given)."""
    from camkit.viz.plots import map_pair_grid

    def caption(pair: MapPair, name: str) -> str:
        if pair.metrics.get(f"{name}_flat"):
            return "no positive value (flat map)"
        lines = []
        for mask in MASKS:
            hit = pair.metrics.get(f"{name}_pointing_game@{mask}")
            energy = pair.metrics.get(f"{name}_energy_in_mask@{mask}")
            if hit is not None:
                lines.append(f"{mask[:4]}: PG {hit:.0f}  E {energy:.2f}")
        return "\n".join(lines)

    titles = [
        (
            f"{pair.key}\nρ {_fmt(pair.metrics['agreement_spearman'])}",
            f"{classifier_label}\n{caption(pair, 'classifier')}",
            f"{segmenter_label}\n{caption(pair, 'segmenter')}",
        )
        for pair in pairs
    ]
    return map_pair_grid(
        [p.image for p in pairs],
        [p.classifier_map for p in pairs],
        [p.segmenter_map for p in pairs],
        [p.predicted_mask for p in pairs],
        [p.true_mask for p in pairs],
        titles,
    )


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"
