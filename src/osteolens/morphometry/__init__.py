"""Vertebral morphometry: heights, endplate and wedge angles, Genant grade, Cobb angles.

Measure vertebrae from four corner landmarks or from vertebral body masks, in any
orientation, check the annotations, grade fractures (Genant) and compute the Cobb angles of
an AP spine by the AASCE 2019 definition. See ``docs/morphometry.md``.
"""

from __future__ import annotations

from osteolens.morphometry.batch import BatchResult, measure_inputs
from osteolens.morphometry.checks import Problem, check_annotations
from osteolens.morphometry.cobb import CobbAngles, cobb_angles, smape
from osteolens.morphometry.genant import GenantGrade, genant_grade, grade_from_loss
from osteolens.morphometry.inputs import SpineInput, read_landmarks, read_masks
from osteolens.morphometry.masks import MaskOutline, corners_from_mask, measure_mask, outline_from_mask
from osteolens.morphometry.overlay import draw_overlay
from osteolens.morphometry.spine import SpineMeasurement, measure_spine
from osteolens.morphometry.vertebra import CORNERS, VertebraMeasurement, measure_vertebra

__all__ = [
    "CORNERS",
    "BatchResult",
    "CobbAngles",
    "GenantGrade",
    "MaskOutline",
    "Problem",
    "SpineInput",
    "SpineMeasurement",
    "VertebraMeasurement",
    "check_annotations",
    "cobb_angles",
    "corners_from_mask",
    "draw_overlay",
    "genant_grade",
    "grade_from_loss",
    "measure_inputs",
    "measure_mask",
    "measure_spine",
    "measure_vertebra",
    "outline_from_mask",
    "read_landmarks",
    "read_masks",
    "smape",
]
