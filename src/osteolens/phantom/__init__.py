"""Synthetic biplanar vertebral radiographs with known bone density and geometry.

A cohort of specimens, each with vertebrae L1-L4 simulated as 3-D trabecular volumes in a
cortical shell (:mod:`~osteolens.phantom.volume`), projected AP and lateral by Beer-Lambert
line integrals through a varying acquisition chain (:mod:`~osteolens.phantom.projection`),
labelled with BMD, T-score, WHO class, fracture grade and true heights
(:mod:`~osteolens.phantom.population`) and written as DICOM / PNG / masks plus
``labels.csv`` (:mod:`~osteolens.phantom.cohort`). The model is described in
``docs/phantom.md``.

Example:
    >>> import tempfile
    >>> manifest = generate_cohort(tempfile.mkdtemp(), specimens=1, seed=0, size=64, formats=("png",))
    >>> len(manifest), sorted(set(manifest.frame["view"]))
    (8, ['AP', 'LAT'])
"""

from __future__ import annotations

from osteolens.phantom.cohort import COLUMNS, PhantomImage, generate_cohort, simulate_specimen, specimen_rng
from osteolens.phantom.population import (
    LEVELS,
    WHO_CLASSES,
    YOUNG_MEAN_BMD,
    YOUNG_SD_BMD,
    SpecimenTraits,
    VertebraTraits,
    draw_specimen,
    draw_vertebra,
    genant_grade,
    t_score,
    who_class,
)
from osteolens.phantom.projection import VIEWS, Acquisition, acquire, body_mask, draw_acquisition, project
from osteolens.phantom.volume import TrabecularParameters, VertebraGeometry, VertebraVolume, simulate_vertebra, trabecular_parameters

__all__ = [
    "COLUMNS",
    "LEVELS",
    "VIEWS",
    "WHO_CLASSES",
    "YOUNG_MEAN_BMD",
    "YOUNG_SD_BMD",
    "Acquisition",
    "PhantomImage",
    "SpecimenTraits",
    "TrabecularParameters",
    "VertebraGeometry",
    "VertebraTraits",
    "VertebraVolume",
    "acquire",
    "body_mask",
    "draw_acquisition",
    "draw_specimen",
    "draw_vertebra",
    "generate_cohort",
    "genant_grade",
    "project",
    "simulate_specimen",
    "simulate_vertebra",
    "specimen_rng",
    "t_score",
    "trabecular_parameters",
    "who_class",
]
