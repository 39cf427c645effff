"""Did training learn anything? Validation accuracy and loss against guessing.

A classifier of K classes that learned nothing scores about chance, 1/K, and a model that
predicts every class equally likely has cross-entropy ln K. :func:`learned_nothing` says so in
one line when the validation accuracy is within a margin of chance or the validation loss is
within 5 % of ln K.
"""

from __future__ import annotations

import math

__all__ = ["LOSS_TOLERANCE", "MIN_MARGIN", "chance_margin", "learned_nothing"]

MIN_MARGIN = 0.05  # accuracy within 5 points of chance is no evidence of learning …
LOSS_TOLERANCE = 0.05  # … nor a loss within 5 % of ln K (the loss of a uniform guess)


def chance_margin(classes: int, count: int) -> float:
    """How far above chance an accuracy must be to count: ``max(0.05, σ)``, where
    ``σ = sqrt(p (1 − p) / n)`` is the standard error of guessing (``p = 1/K``) on ``n``
    validation images, so a small validation set needs a clearer lead."""
    chance = 1.0 / classes
    return max(MIN_MARGIN, math.sqrt(chance * (1.0 - chance) / max(count, 1)))


def learned_nothing(accuracy: float, loss: float, classes: int, count: int) -> str | None:
    """A one-line warning when validation ``accuracy`` / ``loss`` (over ``count`` images of
    ``classes`` classes) are no better than guessing, else ``None``.

    Example:
        >>> learned_nothing(0.26, 1.39, classes=4, count=400)[:40]
        'training learned next to nothing (valida'
        >>> learned_nothing(0.90, 0.30, classes=4, count=400) is None
        True
    """
    if classes < 2 or count < 1 or math.isnan(accuracy):
        return None
    chance, uniform = 1.0 / classes, math.log(classes)
    near_chance = accuracy < chance + chance_margin(classes, count)
    near_uniform = not math.isnan(loss) and abs(loss - uniform) <= LOSS_TOLERANCE * uniform
    if not (near_chance or near_uniform):
        return None
    return (
        f"training learned next to nothing (validation accuracy {accuracy:.3f} vs chance "
        f"{chance:.3f} for {classes} classes; validation loss {loss:.3f} vs ln {classes} = "
        f"{uniform:.3f}, the loss of a uniform guess): its heatmaps show little; train for more "
        "epochs, from pretrained weights (--pretrained imagenet), with a larger or smaller "
        "--lr, or check that the labels match the images"
    )
