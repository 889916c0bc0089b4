"""Genant semi-quantitative grading of vertebral fractures from measured heights.

Genant's method (Genant et al., J Bone Miner Res 1993) grades a vertebra by its visually
estimated loss of height: grade 0 normal, 1 mild (20-25 %), 2 moderate (25-40 %), 3 severe
(> 40 %), and names the shape of the deformity: *wedge* (the anterior height is reduced),
*biconcave* (the middle height is reduced, both endplates cave in) or *crush* (the posterior
height, usually the whole body, is reduced).

osteolens turns the estimate into measurements with the ratios of quantitative morphometry
(McCloskey / Eastell), one per deformity type, each clipped to [0, 1]:

* wedge      = 1 - Ha / Hp
* biconcave  = 1 - Hm / Hp
* crush      = 1 - Hp / Hp_ref, where Hp_ref is the mean posterior height of the adjacent
  vertebrae (above and below, those measured); without neighbours the vertebra's own
  reference is used instead, 1 - Hp / max(Ha, Hm).

The height loss is the largest of the three and its type is the one that gives it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

# Lower bounds of grades 1, 2 and 3 (fraction of height lost).
MILD, MODERATE, SEVERE = 0.20, 0.25, 0.40


@dataclass(frozen=True)
class GenantGrade:
    """A vertebra's Genant grade.

    Attributes:
        grade: 0 normal, 1 mild, 2 moderate, 3 severe.
        fracture_type: ``"wedge"``, ``"biconcave"`` or ``"crush"``; None when grade is 0.
        height_loss: the fraction of height lost (0-1) that set the grade.
        losses: the loss of each type, ``{"wedge": .., "biconcave": .., "crush": ..}``.
        neighbour_reference: True when the crush loss used the adjacent vertebrae.
    """

    grade: int
    fracture_type: str | None
    height_loss: float
    losses: dict[str, float]
    neighbour_reference: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return asdict(self)


def grade_from_loss(height_loss: float) -> int:
    """Genant grade of a fractional height loss.

    Grade 1 for 0.20 <= loss < 0.25, grade 2 for 0.25 <= loss <= 0.40, grade 3 above 0.40.
    The loss is rounded to 9 decimals first, so that 1 - 10/12.5 (0.19999999999999996 in
    floating point) is the 20 % it means.

    >>> [grade_from_loss(x) for x in (0.1, 0.2, 0.3, 0.4, 0.41)]
    [0, 1, 2, 2, 3]
    """
    height_loss = round(height_loss, 9)
    if height_loss > SEVERE:
        return 3
    if height_loss >= MODERATE:
        return 2
    if height_loss >= MILD:
        return 1
    return 0


def _loss(height: float, reference: float) -> float:
    return min(max(1.0 - height / reference, 0.0), 1.0)


def genant_grade(
    anterior: float,
    middle: float,
    posterior: float,
    neighbour_posterior: float | None = None,
) -> GenantGrade:
    """Grade one vertebra from its anterior, middle and posterior heights (any one unit).

    Args:
        anterior: anterior height Ha.
        middle: middle height Hm.
        posterior: posterior height Hp.
        neighbour_posterior: mean posterior height of the adjacent vertebrae, when known;
            it is the reference of the crush ratio.

    Returns:
        The grade, the deformity type and the height losses.

    Raises:
        ValueError: when a height is not a positive finite number.

    >>> g = genant_grade(18.0, 24.0, 25.0)   # anterior 28 % lower than posterior
    >>> g.grade, g.fracture_type, round(g.height_loss, 2)
    (2, 'wedge', 0.28)
    """
    heights = {"anterior": anterior, "middle": middle, "posterior": posterior}
    if neighbour_posterior is not None:
        heights["neighbour_posterior"] = neighbour_posterior
    for key, value in heights.items():
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{key} height must be a positive number, got {value!r}")
    crush_ref = neighbour_posterior if neighbour_posterior is not None else max(anterior, middle)
    losses = {
        "wedge": _loss(anterior, posterior),
        "biconcave": _loss(middle, posterior),
        "crush": _loss(posterior, crush_ref),
    }
    kind = max(losses, key=losses.__getitem__)
    loss = losses[kind]
    grade = grade_from_loss(loss)
    return GenantGrade(
        grade=grade,
        fracture_type=kind if grade > 0 else None,
        height_loss=loss,
        losses=losses,
        neighbour_reference=neighbour_posterior is not None,
    )
