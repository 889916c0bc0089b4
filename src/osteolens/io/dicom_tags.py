"""DICOM attributes <-> :class:`RadiographMeta` fields, including the PatientAge (AS) format.

PatientAge has value representation AS: three digits and a unit, ``nnnD``, ``nnnW``,
``nnnM`` or ``nnnY`` (PS3.5 table 6.2-1). osteolens keeps ages as decimal years:
``Y`` -> n, ``M`` -> n / 12, ``W`` -> 7 n / 365.25, ``D`` -> n / 365.25.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

_DAYS_PER_YEAR = 365.25
_UNIT_YEARS = {"Y": 1.0, "M": 1.0 / 12.0, "W": 7.0 / _DAYS_PER_YEAR, "D": 1.0 / _DAYS_PER_YEAR}
_AGE_RE = re.compile(r"^\s*(\d{1,3})\s*([DWMY]?)\s*$", re.IGNORECASE)
_SEXES = ("M", "F", "O")


def parse_age(value: Any) -> float | None:
    """Decimal years from a DICOM AS string (``045Y`` -> 45.0, ``006M`` -> 0.5).

    A bare number is read as years; anything unparsable gives None (the age is unknown,
    which is not an error in a radiograph).

    Example:
        >>> parse_age("045Y"), parse_age("006M"), parse_age("")
        (45.0, 0.5, None)
    """
    if value is None:
        return None
    match = _AGE_RE.match(str(value))
    if match is None:
        return None
    number, unit = int(match.group(1)), (match.group(2) or "Y").upper()
    return number * _UNIT_YEARS[unit]


def format_age(years: float | None) -> str | None:
    """The AS string that best represents ``years``.

    Years for ages of two years or more (rounded), otherwise the unit among months, weeks
    and days whose rounded value comes back closest to ``years`` (the largest unit on a
    tie). Ages that are not whole years, months, weeks or days are rounded, so they come
    back from :func:`parse_age` only approximately.

    Example:
        >>> format_age(45), format_age(0.5), format_age(3 / 365.25)
        ('045Y', '006M', '003D')
    """
    if years is None:
        return None
    if not math.isfinite(years) or years < 0 or years > 999:
        raise ValueError(f"age {years!r} years cannot be written as a DICOM age (0 to 999 years)")
    if years >= 2:
        return f"{round(years):03d}Y"
    best: tuple[float, str] | None = None
    for unit in ("Y", "M", "W", "D"):
        count = round(years / _UNIT_YEARS[unit])
        if count > 999:
            continue
        error = abs(count * _UNIT_YEARS[unit] - years)
        if best is None or error < best[0] - 1e-12:
            best = (error, f"{count:03d}{unit}")
    assert best is not None  # "Y" always fits below two years
    return best[1]


def text(ds: Dataset, keyword: str) -> str | None:
    """A tag's value as a stripped string, None when absent or empty."""
    value = ds.get(keyword)
    if value is None:
        return None
    if not isinstance(value, str) and hasattr(value, "__iter__"):
        value = "\\".join(str(v) for v in value)
    out = str(value).strip()
    return out or None


def parse_sex(value: str | None) -> str | None:
    """``M``, ``F`` or ``O`` (DICOM PatientSex), None for anything else."""
    if value is None:
        return None
    value = value.strip().upper()
    return value if value in _SEXES else None


def parse_laterality(ds: Dataset) -> str | None:
    """ImageLaterality, else series Laterality: ``R``, ``L`` or ``B``.

    ``U`` (unpaired body part, e.g. the spine) is reported as None: it names no side.
    """
    for keyword in ("ImageLaterality", "Laterality"):
        value = text(ds, keyword)
        if value is not None:
            value = value.upper()
            return None if value == "U" else value
    return None


def spacing_from(ds: Dataset) -> tuple[tuple[float, float], str] | None:
    """(row, column) spacing in mm and the tag it came from: PixelSpacing, else ImagerPixelSpacing.

    PixelSpacing is the calibrated spacing in the patient; ImagerPixelSpacing is at the
    detector (it includes the geometric magnification). Missing, zero, negative or
    non-finite values count as unknown (some archives write ``0\\0``).
    """
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value is None:
            continue
        try:
            row, col = (float(v) for v in value)
        except (TypeError, ValueError):
            continue
        if all(math.isfinite(v) and v > 0 for v in (row, col)):
            return (row, col), keyword
    return None


# BodyPartExamined defined terms -> SNOMED CT concept names in pydicom's code dictionary,
# after PS3.16 Annex L (the correspondence table). No library ships that table, so the
# bone-health regions are listed here; the codes themselves come from pydicom.
_BODY_PART_CONCEPTS = {
    "ABDOMEN": "Abdomen",
    "ARM": "UpperArm",
    "CALCANEUS": "Calcaneus",
    "CHEST": "Chest",
    "CLAVICLE": "Clavicle",
    "CSPINE": "CervicalSpine",
    "EXTREMITY": "Extremity",
    "FEMUR": "Femur",
    "FINGER": "Finger",
    "FOOT": "Foot",
    "FOREARM": "Forearm",
    "HAND": "Hand",
    "HEAD": "Head",
    "HIP": "Hip",
    "KNEE": "Knee",
    "LEG": "LowerLeg",
    "LSPINE": "LumbarSpine",
    "MANDIBLE": "Mandible",
    "MAXILLA": "Maxilla",
    "PELVIS": "Pelvis",
    "RADIUS": "Radius",
    "SHOULDER": "Shoulder",
    "SKULL": "Skull",
    "SPINE": "Spine",
    "SSPINE": "Sacrum",
    "TIBIA": "Tibia",
    "TSPINE": "ThoracicSpine",
    "ULNA": "Ulna",
}


def anatomic_region(body_part: str | None) -> tuple[str, str, str] | None:
    """(CodeValue, CodingSchemeDesignator, CodeMeaning) for a BodyPartExamined term, or None.

    Example:
        >>> anatomic_region("LSPINE")
        ('122496007', 'SCT', 'Lumbar spine')
    """
    from pydicom.sr.codedict import codes

    name = _BODY_PART_CONCEPTS.get((body_part or "").upper())
    if name is None:
        return None
    code = getattr(codes.SCT, name)
    return (str(code.value), str(code.scheme_designator), str(code.meaning))
