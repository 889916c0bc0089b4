"""Landmark evaluation: radial errors, Cobb agreement, flagged truth apart, outliers, mean shape."""

from __future__ import annotations

import numpy as np
import pytest

from osteolens.errors import EvaluationError
from osteolens.landmarks.evaluate import evaluate_spines, level_shift, mean_shape, place_mean_shape, summarise
from osteolens.morphometry import cobb_angles
from tests.landmarks.conftest import synthetic_spine


def _spines(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"s{i}": synthetic_spine(rng, (1024, 400), 17)[1] for i in range(count)}


def test_shifted_prediction_has_known_radial_error_and_same_angles():
    truth = _spines(6)
    pred = {k: v + [3.0, 3.9] for k, v in truth.items()}  # every point 4.92 px away, shapes unchanged
    result = evaluate_spines(pred, truth, heights={k: 1024.0 for k in truth}, n_bootstrap=50)
    s = result.summary
    assert s["mre_px"] == pytest.approx(np.hypot(3.0, 3.9))
    assert s["within_5px"] == 1.0 and s["within_10px"] == 1.0
    assert s["cobb_smape"] == pytest.approx(0.0, abs=1e-6) and s["cobb_cmae_deg"] == pytest.approx(0.0, abs=1e-6)
    assert s["mre_px_ci95"][0] == pytest.approx(np.hypot(3.0, 3.9)) and result.flagged == {"n_images": 0}


def test_cobb_errors_are_against_angles_of_the_true_landmarks():
    truth = _spines(3, seed=1)
    pred = {}
    for key, corners in truth.items():
        tilted = corners.copy()
        tilted[5, [1, 3], 1] += 40.0  # tilt one vertebra: its angle to the others changes
        pred[key] = tilted
    result = evaluate_spines(pred, truth, heights={k: 1024.0 for k in truth}, n_bootstrap=0)
    row = result.per_image.set_index("image").loc["s0"]
    expected = cobb_angles(truth["s0"], 1024.0)
    assert row["true_pt"] == pytest.approx(expected.pt)
    assert row["pred_pt"] == pytest.approx(cobb_angles(pred["s0"], 1024.0).pt)
    assert result.summary["cobb_smape"] > 0 and result.summary["cobb_cmae_deg"] > 0


def test_flagged_truth_is_summarised_apart_and_outliers_found():
    truth = _spines(8, seed=2)
    pred = {k: v + 1.0 for k, v in truth.items()}
    pred["s7"] = truth["s7"] + 60.0
    broken = truth["s3"].copy()
    broken[[0, 5]] = broken[[5, 0]]  # vertebra order not cranio-caudal
    truth["s3"] = broken
    result = evaluate_spines(pred, truth, flagged={"s2": "top_bottom_swapped"}, n_bootstrap=0)
    assert result.summary["n_images"] == 6 and result.flagged["n_images"] == 2
    table = result.per_image.set_index("image")
    assert "vertebra_order_not_craniocaudal" in table.loc["s3", "truth_problems"]
    assert bool(table.loc["s7", "outlier"]) and table.index[0] == "s7"


def test_bootstrap_resamples_patients():
    errors = [np.full(4, 1.0), np.full(4, 1.0), np.full(4, 9.0)]
    angles = np.ones((3, 3)) * 10
    grouped = summarise(errors, angles, angles, ["a", "a", "b"], n_bootstrap=200)
    assert grouped["n_patients"] == 2
    low, high = grouped["mre_px_ci95"]
    assert low == pytest.approx(1.0) and high == pytest.approx(9.0)


def test_no_common_image_is_an_error():
    with pytest.raises(EvaluationError, match="both predicted and true"):
        evaluate_spines({"a": np.zeros((17, 4, 2))}, {"b": np.zeros((17, 4, 2))})


def test_mean_shape_of_identical_spines_is_exact():
    corners = _spines(1)["s0"]
    shape = mean_shape([corners, corners * [2, 0.5]], [(1024, 400), (512, 800)])
    assert np.allclose(place_mean_shape(shape, (1024, 400)), corners)


def test_level_shift_finds_a_set_off_by_whole_vertebrae():
    true = _spines(1)["s0"]
    spacing = true[1:].mean(axis=1) - true[:-1].mean(axis=1)
    one_down = true.copy()
    one_down[:-1] = true[1:]  # predicted T1 on the true T2 ... and a made-up 18th below
    one_down[-1] = true[-1] + spacing[-1]
    assert level_shift(one_down, true) == 1
    one_up = true.copy()
    one_up[1:] = true[:-1]
    one_up[0] = true[0] - spacing[0]
    assert level_shift(one_up, true) == -1
    assert level_shift(true + 5.0, true) == 0
    with_gap = one_down.copy()
    with_gap[4] = np.nan  # a missing vertebra leaves the others to decide
    assert level_shift(with_gap, true) == 1


def test_summary_counts_shifted_sets_and_the_detectors_level_flag():
    truth = _spines(4)
    pred = {k: v + 1.0 for k, v in truth.items()}
    pred["s0"] = np.concatenate([truth["s0"][1:], truth["s0"][-1:] + 40.0])  # one level off
    flags = {"s0": True, "s1": True, "s2": False, "s3": False}
    result = evaluate_spines(pred, truth, heights={k: 1024.0 for k in truth}, n_bootstrap=0, levels_uncertain=flags)
    s = result.summary
    assert s["level_shifted"] == 1 and s["levels_uncertain"] == 2 and s["level_shifted_and_flagged"] == 1
    rows = result.per_image.set_index("image")
    assert rows.loc["s0", "level_shift"] == 1 and rows.loc["s1", "level_shift"] == 0
    assert "levels_uncertain" not in evaluate_spines(pred, truth, n_bootstrap=0).summary


def test_an_image_missing_a_vertebra_counts_in_the_point_metrics_not_the_angles():
    truth = _spines(3)
    pred = {k: v + [3.0, 4.0] for k, v in truth.items()}  # every point 5 px off
    pred["s0"][-1] = np.nan  # no L5: its Cobb angles cannot be compared
    s = evaluate_spines(pred, truth, heights={k: 1024.0 for k in truth}, n_bootstrap=0).summary
    assert s["n_images"] == 3 and s["n_images_cobb"] == 2
    assert s["mre_px"] == pytest.approx(5.0) and s["cobb_smape"] == pytest.approx(0.0, abs=1e-6)


def test_an_image_with_no_vertebra_in_common_is_reported_not_fatal():
    truth = _spines(3)
    pred = {k: v + [3.0, 4.0] for k, v in truth.items()}
    pred["s1"] = np.full_like(truth["s1"], np.nan)  # its names matched none of the truth's
    result = evaluate_spines(pred, truth, heights={k: 1024.0 for k in truth}, n_bootstrap=0)
    rows = result.per_image.set_index("image")
    assert np.isnan(rows.loc["s1", "mre_px"]) and np.isnan(rows.loc["s1", "max_px"])
    assert result.summary["n_images"] == 2 and result.summary["mre_px"] == pytest.approx(5.0)
