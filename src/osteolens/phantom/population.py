"""Who the synthetic specimens are: age, sex, bone density, WHO class and fractures.

The clinical model (all numbers documented in ``docs/phantom.md``):

* trabecular volumetric BMD (QCT-like, mg/cm³) falls with age and is lower in women::

      BMD = 180 - 2.0 · (age - 30) - 8 · [female] + ε,   ε ~ N(0, 28²),  clipped to [20, 260]

  with age ~ U(30, 90) years, so that normal, osteopenia and osteoporosis are each about a
  third of the cohort;
* T-score = (BMD - 170) / 32 against a young-adult reference of 170 ± 32 mg/cm³;
* WHO class: normal (T ≥ -1), osteopenia (-2.5 < T < -1), osteoporosis (T ≤ -2.5);
* each vertebra's BMD is the specimen's times a level factor (L1 → L4 slightly denser) and a
  5 % vertebra-to-vertebra variation;
* a vertebra fractures with probability ``logistic(-3.2 - 0.8 · T)`` (4 % at T = 0, 31 % at
  T = -3); type wedge / biconcave / crush with probabilities 0.5 / 0.3 / 0.2; severity
  (Genant grade 1 / 2 / 3 with probabilities 0.45 / 0.35 / 0.2) sets the height loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from osteolens.classes import BONE_DENSITY_ORDER

YOUNG_MEAN_BMD = 170.0
"""Young-adult reference mean of trabecular vBMD, mg/cm³."""
YOUNG_SD_BMD = 32.0
"""Young-adult reference standard deviation, mg/cm³."""
LEVELS = ("L1", "L2", "L3", "L4")
WHO_CLASSES = BONE_DENSITY_ORDER
FRACTURE_TYPES = ("none", "wedge", "biconcave", "crush")

# Intact vertebral-body dimensions of an average adult man, mm (posterior height, width, depth).
_LEVEL_HEIGHT_MM = {"L1": 25.5, "L2": 26.5, "L3": 27.0, "L4": 27.0}
_LEVEL_WIDTH_MM = {"L1": 42.0, "L2": 44.0, "L3": 46.0, "L4": 48.0}
_LEVEL_DEPTH_MM = {"L1": 32.0, "L2": 33.0, "L3": 34.0, "L4": 34.5}
_LEVEL_BMD_FACTOR = {"L1": 0.97, "L2": 0.99, "L3": 1.01, "L4": 1.03}
# Height loss ranges of Genant grades 1-3 (fraction of the intact height).
_GRADE_LOSS = {1: (0.20, 0.25), 2: (0.25, 0.40), 3: (0.40, 0.55)}


def t_score(bmd: float | np.ndarray) -> float | np.ndarray:
    """T-score: standard deviations from the young-adult mean, ``(BMD - 170) / 32``."""
    return (bmd - YOUNG_MEAN_BMD) / YOUNG_SD_BMD


def who_class(t: float) -> str:
    """WHO category of a T-score: normal (T ≥ -1), osteopenia (-2.5 < T < -1), osteoporosis (T ≤ -2.5)."""
    if t >= -1.0:
        return "normal"
    if t > -2.5:
        return "osteopenia"
    return "osteoporosis"


def genant_grade(height_loss: float) -> int:
    """Genant semi-quantitative grade of a fractional height loss.

    0: < 20 %, 1: 20-25 %, 2: 25-40 %, 3: > 40 % (Genant et al., JBMR 1993).
    """
    if height_loss < 0.20:
        return 0
    if height_loss < 0.25:
        return 1
    if height_loss <= 0.40:
        return 2
    return 3


@dataclass(frozen=True)
class SpecimenTraits:
    """One specimen (patient): covariates and specimen-level bone density.

    Attributes:
        specimen_id: ``S0001`` style identifier (1-based index).
        sex: ``"M"`` or ``"F"``.
        age: years.
        bmd: specimen trabecular vBMD, mg/cm³.
        size_scale: body-size factor applied to every vertebral dimension.
    """

    specimen_id: str
    sex: str
    age: float
    bmd: float
    size_scale: float


@dataclass(frozen=True)
class VertebraTraits:
    """One vertebra: density, deformity and intact dimensions (mm).

    ``reference_height_mm`` is the intact (pre-fracture) height; ``height_loss`` is
    ``1 - min(anterior, middle, posterior) / reference`` and sets ``fracture_grade``.
    """

    level: str
    bmd: float
    t_score: float
    who_class: str
    fracture_type: str
    fracture_grade: int
    height_loss: float
    reference_height_mm: float
    anterior_height_mm: float
    middle_height_mm: float
    posterior_height_mm: float
    width_mm: float
    depth_mm: float


def draw_specimen(rng: np.random.Generator, index: int) -> SpecimenTraits:
    """Draw a specimen's sex, age, BMD and body size (see the module docstring for the model)."""
    sex = "M" if rng.random() < 0.5 else "F"
    age = float(rng.uniform(30.0, 90.0))
    bmd = 180.0 - 2.0 * (age - 30.0) - (8.0 if sex == "F" else 0.0) + rng.normal(0.0, 28.0)
    size_scale = float(rng.normal(1.0 if sex == "M" else 0.92, 0.04))
    return SpecimenTraits(
        specimen_id=f"S{index + 1:04d}",
        sex=sex,
        age=round(age, 1),
        bmd=float(np.clip(bmd, 20.0, 260.0)),
        size_scale=float(np.clip(size_scale, 0.8, 1.12)),
    )


def draw_vertebra(rng: np.random.Generator, specimen: SpecimenTraits, level: str) -> VertebraTraits:
    """Draw one vertebra's BMD, fracture and heights given its specimen."""
    bmd = float(np.clip(specimen.bmd * _LEVEL_BMD_FACTOR[level] * rng.normal(1.0, 0.05), 15.0, 280.0))
    t = float(t_score(bmd))
    scale = specimen.size_scale
    reference = _LEVEL_HEIGHT_MM[level] * scale * rng.normal(1.0, 0.03)
    width = _LEVEL_WIDTH_MM[level] * scale * rng.normal(1.0, 0.03)
    depth = _LEVEL_DEPTH_MM[level] * scale * rng.normal(1.0, 0.03)
    # Intact shape: anterior and middle a little off the posterior height (never a fracture).
    ratios = np.array([rng.normal(1.0, 0.025), rng.normal(0.97, 0.015), 1.0])
    p_fracture = 1.0 / (1.0 + np.exp(3.2 + 0.8 * t))
    kind = "none"
    if rng.random() < p_fracture:
        kind = str(rng.choice(FRACTURE_TYPES[1:], p=[0.5, 0.3, 0.2]))
        grade = int(rng.choice([1, 2, 3], p=[0.45, 0.35, 0.2]))
        low, high = _GRADE_LOSS[grade]
        loss = rng.uniform(low + 0.005, high - 0.005)
        if kind == "wedge":
            ratios[0] = 1.0 - loss
        elif kind == "biconcave":
            ratios[1] = 1.0 - loss
        else:  # crush: the whole body loses height, anterior a little more
            ratios = np.array([1.0 - loss, 1.0 - loss + rng.uniform(0.0, 0.03), 1.0 - loss + rng.uniform(0.0, 0.03)])
    ratios = np.clip(ratios, 0.4, 1.06)
    heights = ratios * reference
    height_loss = float(max(0.0, 1.0 - heights.min() / reference))
    return VertebraTraits(
        level=level,
        bmd=bmd,
        t_score=t,
        who_class=who_class(t),
        fracture_type=kind,
        fracture_grade=genant_grade(height_loss),
        height_loss=height_loss,
        reference_height_mm=float(reference),
        anterior_height_mm=float(heights[0]),
        middle_height_mm=float(heights[1]),
        posterior_height_mm=float(heights[2]),
        width_mm=float(width),
        depth_mm=float(depth),
    )
