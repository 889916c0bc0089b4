"""Genant grades and types from heights, alone and against neighbouring vertebrae."""

from __future__ import annotations

import numpy as np
import pytest

from osteolens.morphometry import genant_grade, grade_from_loss, measure_spine


@pytest.mark.parametrize(
    ("loss", "grade"),
    [(0.0, 0), (0.199, 0), (0.20, 1), (0.249, 1), (0.25, 2), (0.40, 2), (0.401, 3), (0.9, 3)],
)
def test_grade_thresholds(loss, grade):
    assert grade_from_loss(loss) == grade


@pytest.mark.parametrize(
    ("heights", "grade", "kind", "loss"),
    [
        ((25.0, 24.5, 25.0), 0, None, 0.02),  # normal
        ((19.5, 24.0, 25.0), 1, "wedge", 0.22),  # anterior 22 % lower
        ((25.0, 17.0, 25.0), 2, "biconcave", 0.32),  # middle 32 % lower
        ((13.0, 20.0, 25.0), 3, "wedge", 0.48),
        ((30.0, 30.0, 22.0), 2, "crush", 1 - 22 / 30),  # posterior lower than the front, no neighbours
    ],
)
def test_types_and_grades(heights, grade, kind, loss):
    g = genant_grade(*heights)
    assert (g.grade, g.fracture_type) == (grade, kind)
    assert g.height_loss == pytest.approx(loss)
    assert not g.neighbour_reference


def test_crush_needs_the_neighbours():
    alone = genant_grade(17.0, 17.0, 17.5)  # uniformly low: invisible on its own
    assert alone.grade == 0
    against = genant_grade(17.0, 17.0, 17.5, neighbour_posterior=25.0)
    assert (against.grade, against.fracture_type) == (2, "crush")
    assert against.height_loss == pytest.approx(0.30)


def test_invalid_heights():
    with pytest.raises(ValueError, match="anterior"):
        genant_grade(0.0, 20.0, 20.0)
    with pytest.raises(ValueError, match="middle"):
        genant_grade(20.0, float("nan"), 20.0)


def _box(cx, top, width, ha, hm, hp):
    """A lateral vertebra with anterior on the left: posterior wall at x = cx + width/2."""
    del hm
    return [[cx - width / 2, top + (hp - ha)], [cx + width / 2, top], [cx - width / 2, top + hp], [cx + width / 2, top + hp]]


def test_spine_grades_a_crush_from_its_neighbours():
    # L1, L2, L3 with posterior heights 25, 17.5 (crushed, flat), 25.5
    heights = [(25.0, 25.0), (17.5, 17.5), (25.5, 25.5)]
    quads, top = [], 100.0
    for ha, hp in heights:
        quads.append(_box(100.0, top, 35.0, ha, None, hp))
        top += hp + 8.0
    spine = measure_spine(np.array(quads), ["L1", "L2", "L3"], pixel_mm=1.0, view="lateral", anterior="left")
    l2 = spine.vertebrae[1]
    assert l2.posterior_neighbour_ratio == pytest.approx(17.5 / 25.25)
    assert l2.genant.neighbour_reference
    assert (l2.genant.grade, l2.genant.fracture_type) == (2, "crush")
    assert l2.genant.height_loss == pytest.approx(1 - 17.5 / 25.25)
    assert spine.worst() is l2
    assert spine.vertebrae[0].genant.grade == 0 and spine.vertebrae[2].genant.grade == 0
    assert spine.cobb is None and "AP" in spine.cobb_note


def test_neighbours_follow_levels_not_list_positions():
    quads = [_box(100.0, 100.0 + 40 * k, 35.0, 25.0, None, 25.0) for k in range(3)]
    spine = measure_spine(np.array(quads), ["L1", "L2", "L4"], view="lateral")
    # L4's only listed neighbour, L2, is not adjacent: no neighbour reference
    assert spine.vertebrae[2].posterior_neighbour_ratio is None
    assert spine.vertebrae[1].posterior_neighbour_ratio == pytest.approx(1.0)
