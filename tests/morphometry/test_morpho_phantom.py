"""Phantom vertebrae with known heights and deformities (osteolens.phantom) are measured and graded right."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from osteolens.morphometry import measure_inputs, read_masks


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    from osteolens.phantom.cohort import generate_cohort

    out = tmp_path_factory.mktemp("phantom")
    # seed 3, 6 specimens: 4 wedge, 2 biconcave and 2 crush fractures among 24 lumbar vertebrae
    generate_cohort(out, specimens=6, seed=3, formats=("png",), grid=32)
    labels = pd.read_csv(out / "labels.csv")
    spines, failures = read_masks(out / "labels.csv")  # the phantom's table is a mask table
    assert failures == []
    table = measure_inputs(spines).vertebra_table()
    merged = labels.merge(table, left_on="image", right_on="spine", suffixes=("", "_measured"))
    assert len(merged) == len(labels)
    return merged[merged["view"] == "LAT"]


def test_wedge_fractures_get_their_grade(measured):
    wedges = measured[measured["fracture_type"] == "wedge"]
    assert len(wedges) >= 3 and set(wedges["fracture_grade"]) >= {1, 2}
    assert (wedges["fracture_type_measured"] == "wedge").all()
    assert (wedges["genant_grade"] == wedges["fracture_grade"]).all()
    assert np.abs(wedges["height_loss_measured"] - wedges["height_loss"]).max() < 0.02


def test_biconcave_and_normal_vertebrae(measured):
    biconcave = measured[measured["fracture_type"] == "biconcave"]
    assert len(biconcave) >= 1
    assert (biconcave["fracture_type_measured"] == "biconcave").all()
    assert (biconcave["genant_grade"] == biconcave["fracture_grade"]).all()
    normal = measured[measured["fracture_type"] == "none"]
    assert (normal["genant_grade"] == 0).all()


def test_heights_in_pixels(measured):
    spacing = measured["pixel_spacing_mm"]
    for kind in ("anterior", "middle", "posterior"):
        error_px = (measured[f"{kind}_height_mm_measured"] - measured[f"{kind}_height_mm"]) / spacing
        assert abs(error_px.mean()) < 0.5, kind
        # the phantom's endplates are parabolas right up to the walls: a corner can sit a
        # pixel and a half off where the curvature is strongest
        assert error_px.abs().max() < 2.0, kind
        assert (error_px.abs() < 1.0).mean() > 0.8, kind
