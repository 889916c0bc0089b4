"""Vertebral morphometry as a Comprehensive SR (TID 1500 Measurement Report), one per spine.

A spine whose radiograph is a DICOM file gets ``<stem>_morphometry_sr.dcm``, in the
radiograph's study, in a new series (number 992, "osteolens morphometry"):

* one measurement group (TID 1501) per measured vertebra: tracking identifier = its name
  (the level), finding site = the vertebra (SNOMED CT for C1-L5, :func:`vertebra_code`),
  the radiograph as source image; heights in mm (UCUM ``mm``) when the pixel spacing is known,
  else in pixels (``{pixels}``): anterior, middle, posterior (lateral) or left, middle, right
  (AP); superior / inferior endplate, wedge and tilt angles (``deg``); the Genant grade
  (0-3, unit ``1``) and, for a deformity, its type (lateral views);
* for an AP spine with Cobb angles, one more group (finding site: the vertebral column) with
  the PT, MT and TL angles and each curve's upper and lower end vertebra.

Other spines are skipped and said so. UIDs are derived from the radiograph's and the spine's
identity (:mod:`osteolens.dicom_out.uids`), so writing again replaces the same object.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from osteolens.dicom_out.sr import PRIVATE, RADIOGRAPHY, _code, comprehensive_sr, device_context, library_entry
from osteolens.dicom_out.uids import derived_uid
from osteolens.errors import ConfigError
from osteolens.morphometry.spine import SpineMeasurement
from osteolens.morphometry.vertebra import VertebraMeasurement

SERIES_NUMBER = 992
NAME = "osteolens morphometry"
#: Heights by view: (attribute stem, private code, meaning).
HEIGHTS = {
    "lateral": (("anterior", "OSTL-H-ANT", "Anterior vertebral height"),
                ("middle", "OSTL-H-MID", "Middle vertebral height"),
                ("posterior", "OSTL-H-POST", "Posterior vertebral height")),
    "AP": (("left", "OSTL-H-LEFT", "Left vertebral height (image left)"),
           ("middle", "OSTL-H-MID", "Middle vertebral height"),
           ("right", "OSTL-H-RIGHT", "Right vertebral height (image right)")),
}
ANGLES = (("superior_angle_deg", "OSTL-A-SUP", "Superior endplate angle"),
          ("inferior_angle_deg", "OSTL-A-INF", "Inferior endplate angle"),
          ("wedge_angle_deg", "OSTL-A-WEDGE", "Wedge angle"),
          ("tilt_deg", "OSTL-A-TILT", "Vertebral tilt"))
COBB = (("pt", "Proximal thoracic"), ("mt", "Main thoracic"), ("tl", "Thoracolumbar"))
_LEVEL = re.compile(r"^([CTL])(\d{1,2})$", re.I)


def vertebra_code(name: str) -> Any:
    """The vertebra's SNOMED CT code (C1-C7, T1-T12, L1-L5, from DICOM's code dictionary), else private.

    Example:
        >>> vertebra_code("l1").value, vertebra_code("L6").scheme_designator
        ('66794005', '99OSTEOLENS')
    """
    from pydicom.sr.codedict import codes

    match = _LEVEL.match(str(name).strip())
    known = getattr(codes.SCT, f"{match.group(1).upper()}{int(match.group(2))}Vertebra", None) if match else None
    if known is not None:
        return _code(known.value, "SCT", known.meaning)
    return _code(f"OSTL-V-{name}"[:16], PRIVATE, f"{name} vertebra")


def _unit(vertebra: VertebraMeasurement) -> Any:
    return _code("mm", "UCUM", "millimeter") if vertebra.pixel_mm else _code("{pixels}", "UCUM", "pixels")


def _vertebra_items(vertebra: VertebraMeasurement) -> tuple[list[Any], list[Any]]:
    """(measurements, qualitative evaluations) of a measured vertebra."""
    from highdicom.sr import Measurement, QualitativeEvaluation

    degrees = _code("deg", "UCUM", "degree")
    items = [Measurement(name=_code(code, PRIVATE, meaning), value=float(vertebra.height(kind)), unit=_unit(vertebra))
             for kind, code, meaning in HEIGHTS[vertebra.view] if vertebra.height(kind) is not None]
    items += [Measurement(name=_code(code, PRIVATE, meaning), value=float(getattr(vertebra, attribute)), unit=degrees)
              for attribute, code, meaning in ANGLES if getattr(vertebra, attribute) is not None]
    evaluations = []
    if vertebra.genant is not None:
        items.append(Measurement(name=_code("OSTL-GENANT", PRIVATE, "Genant grade"),
                                 value=float(vertebra.genant.grade), unit=_code("1", "UCUM", "no units")))
        if vertebra.genant.fracture_type:
            kind = vertebra.genant.fracture_type
            evaluations.append(QualitativeEvaluation(
                name=_code("OSTL-DEFORMITY", PRIVATE, "Vertebral deformity type"),
                value=_code(f"OSTL-D-{kind.upper()}"[:16], PRIVATE, f"{kind.capitalize()} deformity")))
    return items, evaluations


def _cobb_items(spine: SpineMeasurement) -> tuple[list[Any], list[Any]]:
    """(the three Cobb angles, their end vertebrae) of an AP spine."""
    from highdicom.sr import Measurement, QualitativeEvaluation

    names = [v.name or f"#{i}" for i, v in enumerate(spine.vertebrae)]
    angles, ends = [], []
    for key, meaning in COBB:
        label = key.upper()
        angles.append(Measurement(name=_code(f"OSTL-COBB-{label}", PRIVATE, f"Cobb angle, {meaning.lower()} ({label})"),
                                  value=float(getattr(spine.cobb, key)), unit=_code("deg", "UCUM", "degree")))
        for end, index in zip(("upper", "lower"), getattr(spine.cobb, f"{key}_vertebrae"), strict=True):
            ends.append(QualitativeEvaluation(
                name=_code(f"OSTL-{label}-{end.upper()}", PRIVATE, f"{meaning} curve {end} end vertebra"),
                value=vertebra_code(names[index])))
    return angles, ends


def _check_items(spine: SpineMeasurement) -> tuple[list[Any], list[Any]]:
    """(no measurements, the spine-level cautions of a detection): an unreliable detection (the
    spine's ``warning``) and level names that may be off by one (a ``levels_uncertain`` problem)."""
    from highdicom.sr import QualitativeEvaluation

    checks = []
    if spine.warning:
        checks.append(QualitativeEvaluation(name=_code("OSTL-DETECTION", PRIVATE, "Landmark detection reliability"),
                                            value=_code("OSTL-UNRELIABLE", PRIVATE, "Unreliable: many vertebrae hardly seen")))
    if any(p.startswith("levels_uncertain") for v in spine.vertebrae for p in v.problems):
        checks.append(QualitativeEvaluation(name=_code("OSTL-LEVELS", PRIVATE, "Vertebral level identification"),
                                            value=_code("OSTL-LEVELS-UNC", PRIVATE, "Uncertain: may be off by one level")))
    return [], checks


def build_morphometry_sr(reference: Any, spine: SpineMeasurement, landmark_source: str | None = None) -> Any:
    """A ``highdicom.sr.ComprehensiveSR`` of ``spine`` measured on the radiograph ``reference`` (its header).

    ``landmark_source`` (e.g. the landmark detector that found the corners) is added to the
    algorithm's parameters, so a reader can tell detected corners from drawn ones. A detection's
    cautions (unreliable, level names uncertain) form a last group, "Detection checks".

    Raises:
        ConfigError: the spine has no measured vertebra and no Cobb angles.
    """
    from highdicom.sr import (AlgorithmIdentification, FindingSite, MeasurementReport,
                              MeasurementsAndQualitativeEvaluations, SourceImageForMeasurementGroup,
                              TrackingIdentifier)
    from pydicom.sr.codedict import codes

    from osteolens import __version__

    instance, key = reference.SOPInstanceUID, str(spine.key)
    parameters = [f"view {spine.view}", "Genant grade: McCloskey height ratios", "Cobb angles: AASCE 2019"]
    if spine.view == "lateral" and spine.vertebrae:
        parameters.insert(1, f"anterior side {spine.vertebrae[0].anterior_side}")
    if landmark_source:
        parameters.append(f"landmarks: {landmark_source}"[:64])
    algorithm = AlgorithmIdentification(name=NAME, version=__version__, parameters=parameters)
    source = [SourceImageForMeasurementGroup(reference.SOPClassUID, instance)]

    def group(index: str, identifier: str, site: Any, items: tuple[list[Any], list[Any]]) -> Any:
        return MeasurementsAndQualitativeEvaluations(
            tracking_identifier=TrackingIdentifier(uid=derived_uid(instance, key, "morphometry", index),
                                                   identifier=identifier[:64]),
            algorithm_id=algorithm, finding_sites=[FindingSite(site)], measurements=items[0] or None,
            qualitative_evaluations=items[1] or None, source_images=source)

    groups = [group(str(i), v.name or f"#{i}", vertebra_code(v.name or f"#{i}"), _vertebra_items(v))
              for i, v in enumerate(spine.vertebrae) if v.measured]
    if spine.cobb is not None:
        groups.append(group("cobb", "Cobb angles", codes.SCT.Spine, _cobb_items(spine)))
    checks = _check_items(spine)
    if groups and checks[1]:
        groups.append(group("checks", "Detection checks", codes.SCT.Spine, checks))
    if not groups:
        raise ConfigError(key, "has no measured vertebra, so there is nothing to report.",
                          "annotate all four corners of at least one vertebra.")
    report = MeasurementReport(observation_context=device_context(derived_uid(NAME, "device"), NAME, "morphometry"),
                               procedure_reported=_code(*RADIOGRAPHY), imaging_measurements=groups,
                               referenced_images=[library_entry(reference)])
    return comprehensive_sr(reference, report, series_uid=derived_uid(reference.StudyInstanceUID, NAME, "sr-series"),
                            instance_uid=derived_uid(instance, key, NAME, "sr"), series_number=SERIES_NUMBER,
                            description=NAME)


def write_morphometry_sr(spine: SpineMeasurement, source: str | os.PathLike[str],
                         out_dir: str | os.PathLike[str], landmark_source: str | None = None) -> Path:
    """Write ``<source stem>_morphometry_sr.dcm`` of ``spine`` into ``out_dir``; return its path
    (``landmark_source``: see :func:`build_morphometry_sr`).

    Raises:
        ConfigError: ``source`` is not DICOM, lacks the UIDs its study needs, or nothing was measured.
        FileWriteError: ``out_dir`` is not writable.

    Example:
        >>> write_morphometry_sr(result.spines[0], "spine.dcm", "dicom/")  # doctest: +SKIP
        PosixPath('dicom/spine_morphometry_sr.dcm')
    """
    return save_morphometry_sr(spine, source_reference(source), Path(source), out_dir, landmark_source)


def source_reference(source: str | os.PathLike[str]) -> Any:
    """The header of the DICOM radiograph that was measured, as results reference it.

    Raises:
        ConfigError: ``source`` is not DICOM, or lacks the UIDs its study needs.
    """
    from osteolens.dicom_out import _reference, read_header

    source = Path(source)
    header = read_header(source)
    if header is None:
        raise ConfigError(source, "is not a DICOM file, so its measurements have no study to join.",
                          "measure on the DICOM original to get a DICOM SR.")
    return _reference(header, source)


def save_morphometry_sr(spine: SpineMeasurement, reference: Any, source: Path, out_dir: str | os.PathLike[str],
                        landmark_source: str | None = None) -> Path:
    """:func:`write_morphometry_sr` with the source's header already read (:func:`source_reference`)."""
    from osteolens.dicom_out import _save

    return _save(build_morphometry_sr(reference, spine, landmark_source), Path(out_dir) / f"{source.stem}_morphometry_sr.dcm")


def write_morphometry_results(spines: Sequence[SpineMeasurement], sources: Mapping[str, Path | None],
                              out_dir: str | os.PathLike[str],
                              landmark_source: str | None = None) -> tuple[list[Path], list[tuple[str, str]]]:
    """Write an SR for each spine whose source (by spine key) is DICOM (``landmark_source``: see
    :func:`build_morphometry_sr`).

    Returns:
        The files written, and ``(spine key, reason)`` for each spine skipped.
    """
    written: list[Path] = []
    skipped: list[tuple[str, str]] = []
    for spine in spines:
        source = sources.get(str(spine.key))
        if source is None:
            skipped.append((str(spine.key), "no radiograph found for this spine, so no DICOM SR "
                                            "(name it in the landmark table's image column)"))
            continue
        try:
            written.append(write_morphometry_sr(spine, source, out_dir, landmark_source))
        except ConfigError as exc:
            skipped.append((str(spine.key), str(exc)))
    return written, skipped


__all__ = ["build_morphometry_sr", "vertebra_code", "write_morphometry_results", "write_morphometry_sr"]
