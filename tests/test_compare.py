import numpy as np
import pytest

from camkit.compare import energy_in_mask, pointing_game


def test_pointing_game_hand_computed():
    heatmap = np.zeros((50, 50))
    heatmap[10, 10] = 1.0
    mask = np.zeros((50, 50), bool)
    mask[10:20, 30:40] = True  # 20 px to the right of the maximum
    assert pointing_game(heatmap, mask, tolerance=15) is False
    assert pointing_game(heatmap, mask, tolerance=20) is True
    mask[10, 10] = True
    assert pointing_game(heatmap, mask, tolerance=0) is True


def test_pointing_game_edge_cases():
    mask = np.ones((8, 8), bool)
    assert pointing_game(np.random.default_rng(0).random((8, 8)), np.zeros((8, 8)), 15) is None
    assert pointing_game(np.full((8, 8), 0.3), mask) is False  # flat: points nowhere
    assert pointing_game(np.random.default_rng(0).random((8, 8)), mask) is True  # full mask
    with pytest.raises(ValueError, match="8×8 but the mask is 9×8"):
        pointing_game(np.zeros((8, 8)), np.zeros((8, 9)))


def test_energy_in_mask_hand_computed():
    heatmap = np.array([[1.0, 3.0], [-2.0, 0.0]])
    mask = np.array([[1, 0], [1, 0]])
    assert energy_in_mask(heatmap, mask) == pytest.approx(1.0 / 4.0)  # negatives ignored
    assert energy_in_mask(heatmap, np.ones((2, 2))) == 1.0
    assert energy_in_mask(heatmap, np.zeros((2, 2))) is None
    assert energy_in_mask(np.zeros((2, 2)), mask) == 0.0  # no positive mass, no NaN


def test_rank_correlation_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a = np.maximum(rng.normal(size=(9, 11)), 0)  # many ties at zero, as in Grad-CAM maps
    b = np.maximum(a + rng.normal(size=(9, 11)), 0)
    from camkit.compare import rank_correlation

    assert rank_correlation(a, b) == pytest.approx(stats.spearmanr(a.ravel(), b.ravel()).statistic)
    assert rank_correlation(a, a) == pytest.approx(1.0)
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    assert rank_correlation(np.zeros((3, 3)), a[:3, :3]) is None


def test_top_region_iou_hand_computed():
    from camkit.compare import top_region_iou

    a = np.arange(10.0).reshape(2, 5)  # top 20 % = {9, 8}
    b = np.array([[9.0, 0, 0, 0, 0], [0, 0, 0, 0, 8.5]])  # top 20 % = {0, 9}
    assert top_region_iou(a, b, 0.2) == pytest.approx(1 / 3)
    assert top_region_iou(a, a, 0.5) == 1.0
    with pytest.raises(ValueError, match="fraction"):
        top_region_iou(a, b, 0.0)
