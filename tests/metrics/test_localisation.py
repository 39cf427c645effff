import numpy as np
import pytest

from camkit.metrics.localisation import energy_in_mask, pointing_game


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
    from camkit.metrics.localisation import rank_correlation

    assert rank_correlation(a, b) == pytest.approx(stats.spearmanr(a.ravel(), b.ravel()).statistic)
    assert rank_correlation(a, a) == pytest.approx(1.0)
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    assert rank_correlation(np.zeros((3, 3)), a[:3, :3]) is None


def test_two_map_metrics_read_nan_the_same_in_either_argument():
    from camkit.metrics.localisation import rank_correlation, top_region_iou

    heat = np.random.default_rng(0).random((8, 8))
    flat, holed = np.full((8, 8), np.nan), heat.copy()
    holed[2, 3] = np.nan
    assert rank_correlation(flat, heat) is None and rank_correlation(heat, flat) is None
    assert rank_correlation(heat, holed) == rank_correlation(holed, heat)
    assert top_region_iou(heat, flat) == top_region_iou(flat, heat)
    with pytest.raises(ValueError, match="no pixels"):
        top_region_iou(np.zeros((0, 0)), np.zeros((0, 0)))  # was 0/0 = NaN
    with pytest.raises(ValueError, match="of one size"):
        rank_correlation(heat, heat[:4])


def test_top_region_iou_hand_computed():
    from camkit.metrics.localisation import top_region_iou

    a = np.arange(10.0).reshape(2, 5)  # top 20 % = {9, 8}
    b = np.array([[9.0, 0, 0, 0, 0], [0, 0, 0, 0, 8.5]])  # top 20 % = {0, 9}
    assert top_region_iou(a, b, 0.2) == pytest.approx(1 / 3)
    assert top_region_iou(a, a, 0.5) == 1.0
    with pytest.raises(ValueError, match="fraction"):
        top_region_iou(a, b, 0.0)


def test_threshold_and_otsu_overlap_by_hand():
    from camkit.metrics.localisation import otsu_overlap, threshold_overlap

    heatmap = np.array([[0.0, 0.1, 0.3], [0.6, 1.0, 0.0]])
    mask = np.array([[0, 0, 1], [1, 1, 0]])
    # ≥ 0.2·max selects {0.3, 0.6, 1.0} = the mask exactly
    assert threshold_overlap(heatmap, mask, 0.2) == {"iou": 1.0, "dice": 1.0}
    # ≥ 0.5·max selects {0.6, 1.0}: IoU 2/3, Dice 4/5
    assert threshold_overlap(heatmap, mask, 0.5) == pytest.approx({"iou": 2 / 3, "dice": 0.8})
    assert threshold_overlap(heatmap, np.zeros((2, 3)), 0.2) is None
    assert threshold_overlap(np.zeros((2, 3)), mask, 0.2) == {
        "iou": 0.0,
        "dice": 0.0,
    }  # flat: nothing
    two_levels = np.array([[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    assert otsu_overlap(two_levels, mask) == {"iou": 1.0, "dice": 1.0}
    assert otsu_overlap(np.full((2, 3), 0.4), mask) == {"iou": 0.0, "dice": 0.0}


def test_auc_ap_rank_accuracy_by_hand():
    from camkit.metrics.localisation import average_precision, pixel_auc, relevance_rank_accuracy

    heatmap = np.array([[0.9, 0.8, 0.1, 0.4]])
    mask = np.array([[1, 0, 1, 0]])
    # pairs (positive, negative): (0.9 > 0.8) (0.9 > 0.4) (0.1 < 0.8) (0.1 < 0.4) → AUC 2/4
    assert pixel_auc(heatmap, mask) == 0.5
    # ranking 0.9 (+), 0.8 (−), 0.4 (−), 0.1 (+): AP = 0.5·1 + 0.5·(2/4)
    assert average_precision(heatmap, mask) == pytest.approx(0.75)
    # |M| = 2: the top two are 0.9 (+) and 0.8 (−)
    assert relevance_rank_accuracy(heatmap, mask) == 0.5
    assert (
        pixel_auc(heatmap, np.ones((1, 4))) is None and pixel_auc(heatmap, np.zeros((1, 4))) is None
    )
    assert average_precision(heatmap, np.zeros((1, 4))) is None
    flat = np.zeros((1, 4))
    assert pixel_auc(flat, mask) == 0.5 and average_precision(flat, mask) == 0.5  # chance, no NaN


def test_auc_and_ap_match_scikit_learn_with_ties():
    metrics = pytest.importorskip("sklearn.metrics")
    from camkit.metrics.localisation import average_precision, pixel_auc

    rng = np.random.default_rng(1)
    heatmap = np.round(rng.random((20, 30)), 2)  # many ties
    mask = rng.random((20, 30)) > 0.7
    assert pixel_auc(heatmap, mask) == pytest.approx(
        metrics.roc_auc_score(mask.ravel(), heatmap.ravel())
    )
    assert average_precision(heatmap, mask) == pytest.approx(
        metrics.average_precision_score(mask.ravel(), heatmap.ravel())
    )


def test_heatmap_metrics_edge_cases_never_nan():
    from camkit.metrics.localisation import heatmap_metrics

    rng = np.random.default_rng(2)
    heatmap = rng.random((16, 16))
    empty = heatmap_metrics(heatmap, np.zeros((16, 16)))
    assert (
        all(v is None for k, v in empty.items() if k != "energy_in_mask")
        and empty["energy_in_mask"] is None
    )
    full = heatmap_metrics(heatmap, np.ones((16, 16)))
    assert full["pointing_game"] == 1.0 and full["energy_in_mask"] == 1.0 and full["auc"] is None
    flat = heatmap_metrics(np.zeros((16, 16)), rng.random((16, 16)) > 0.5)
    assert not any(isinstance(v, float) and np.isnan(v) for v in flat.values())
    with pytest.raises(ValueError, match="resample the heatmap"):
        heatmap_metrics(np.zeros((7, 7)), np.zeros((16, 16)))


def test_bootstrap_summary():
    from camkit.metrics.stats import bootstrap_summary

    summary = bootstrap_summary([1.0, 2.0, 3.0, None, 4.0])
    assert summary["n"] == 4 and summary["mean"] == 2.5 and summary["median"] == 2.5
    assert 1.0 <= summary["ci95_low"] < 2.5 < summary["ci95_high"] <= 4.0
    assert bootstrap_summary([None])["mean"] is None


def test_agreement_with_quantus_where_definitions_overlap():
    quantus = pytest.importorskip("quantus")
    from camkit.metrics.localisation import energy_in_mask, pointing_game, relevance_rank_accuracy

    rng = np.random.default_rng(3)
    heatmaps = rng.random((12, 1, 24, 24))  # continuous: no ties
    masks = np.zeros((12, 1, 24, 24), bool)
    for i in range(12):
        y, x = rng.integers(0, 18, 2)
        masks[i, 0, y : y + 6, x : x + 6] = True
    masks[11] = False  # one empty mask
    pg = quantus.PointingGame(disable_warnings=True).evaluate_batch(a_batch=heatmaps, s_batch=masks)
    rra = quantus.RelevanceRankAccuracy(disable_warnings=True).evaluate_batch(
        a_batch=heatmaps, s_batch=masks
    )
    rma = quantus.RelevanceMassAccuracy(disable_warnings=True).evaluate_batch(
        a_batch=heatmaps, s_batch=masks
    )
    for i in range(11):
        assert pointing_game(heatmaps[i, 0], masks[i, 0], tolerance=0) == bool(pg[i])
        assert relevance_rank_accuracy(heatmaps[i, 0], masks[i, 0]) == pytest.approx(rra[i])
        assert energy_in_mask(heatmaps[i, 0], masks[i, 0]) == pytest.approx(rma[i])
    # Quantus's known bug: NaN assigned into a bool array makes an empty mask a hit
    assert bool(pg[11]) is True
    assert pointing_game(heatmaps[11, 0], masks[11, 0]) is None
