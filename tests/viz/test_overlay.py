import cv2
import numpy as np
import pytest

from camkit.viz.overlay import colorize, overlay, panel, save_image


def test_blend_is_linear_on_the_stated_scale(rgb_image):
    heatmap = np.linspace(0, 2, 80 * 100, dtype=np.float32).reshape(80, 100)
    assert np.array_equal(overlay(rgb_image, heatmap, alpha=0.0), rgb_image)
    colours = colorize(heatmap, 0.0, 2.0)
    assert np.array_equal(overlay(rgb_image, heatmap, alpha=1.0, vmin=0.0, vmax=2.0), colours)
    half = overlay(rgb_image, heatmap, alpha=0.5, vmin=0.0, vmax=2.0).astype(int)
    expected = np.round(0.5 * rgb_image + 0.5 * colours.astype(float)).astype(int)
    assert np.abs(half - expected).max() <= 1
    # value v → index 255·(v − vmin)/(vmax − vmin): the middle of the scale is index ~128
    jet = cv2.cvtColor(
        cv2.applyColorMap(np.array([[128]], np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB
    )
    assert np.array_equal(colorize(np.array([[1.0]]), 0.0, 2.0), jet)


def test_flat_and_nan_heatmaps_do_not_crash(rgb_image):
    flat = np.zeros((80, 100), np.float32)
    assert overlay(rgb_image, flat).shape == rgb_image.shape
    nan = flat.copy()
    nan[0, 0] = np.nan
    assert overlay(rgb_image, nan).dtype == np.uint8


@pytest.mark.parametrize("alpha", [-0.1, 1.5, "half", True])
def test_alpha_validated(rgb_image, alpha):
    with pytest.raises(ValueError, match="alpha"):
        overlay(rgb_image, np.zeros((80, 100)), alpha=alpha)


def test_shape_mismatch_names_both_shapes(rgb_image):
    with pytest.raises(ValueError, match=r"\(7, 7\).*\(80, 100\)"):
        overlay(rgb_image, np.zeros((7, 7)))
    with pytest.raises(ValueError, match="colormap"):
        colorize(np.zeros((3, 3)), colormap="rainbowish")


def test_panel_and_atomic_save(tmp_path, rgb_image):
    maps = [np.random.default_rng(0).random((80, 100)).astype(np.float32) for _ in range(2)]
    mask = np.zeros((80, 100), np.uint8)
    mask[20:50, 30:70] = 1
    image = panel(
        rgb_image, maps, ["a very long class name that will not fit", "b"], mask=mask, height=128
    )
    assert image.shape[0] == 128 + 22 and image.dtype == np.uint8
    assert image.shape[1] > 3 * 160
    path = save_image(tmp_path / "sub" / "panel.png", image)
    assert cv2.imread(str(path)).shape == image.shape
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["panel.png"]
    with pytest.raises(ValueError, match="titles"):
        panel(rgb_image, maps, ["only one"])
