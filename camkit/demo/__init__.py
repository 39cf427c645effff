"""``camkit demo``: the whole job offline, on camkit's own shapes data and its own model.

Trains a ResNet-50 classifier on a stream of freshly generated shapes coloured at random (only
shape decides the class, so the heatmaps show shape evidence; cached: a second run reuses it),
explains held-out images at ``layer4.2``, measures how well the heatmaps find the objects,
and writes a report folder with panels, a two-object figure, metrics and ``index.html``.

``config`` (DemoConfig), ``models`` (the cached data and models), ``measures`` (localisation
and segmentation on held-out shapes), ``report`` (panels, figure, HTML), ``run`` (run_demo).
"""

from camkit.demo.config import DemoConfig
from camkit.demo.measures import (
    centroid_offset,
    demo_inputs,
    evaluate_localisation,
    evaluate_segmentation,
    maximum_places,
    object_distances,
    own_maximum,
    place_of,
)
from camkit.demo.models import DemoModels, demo_models, demo_root, demo_variants
from camkit.demo.run import run_demo

__all__ = [
    "DemoConfig",
    "DemoModels",
    "centroid_offset",
    "demo_inputs",
    "demo_models",
    "demo_root",
    "demo_variants",
    "evaluate_localisation",
    "evaluate_segmentation",
    "maximum_places",
    "object_distances",
    "own_maximum",
    "place_of",
    "run_demo",
]
