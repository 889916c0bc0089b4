"""DICOM results of a prediction: a TID 1500 Comprehensive SR and a Grad-CAM Secondary Capture.

:func:`write_dicom_results` writes, for one radiograph, into ``out_dir``:

* ``<stem>_sr.dcm``: the prediction as a Comprehensive SR (:mod:`osteolens.dicom_out.sr`);
* ``<stem>_sc.dcm``: the Grad-CAM overlay as an RGB Secondary Capture with
  "NOT FOR DIAGNOSTIC USE" burned in (:mod:`osteolens.dicom_out.sc`), when an overlay is given;
* ``<stem>_image.dcm``: only for a PNG / JPEG / TIFF input given with :class:`Patient` data:
  the radiograph as a Secondary Capture opening a new study that the SR and SC then join.

A DICOM input keeps its patient, its study and its accession number: the results join its
study in new series. UIDs are derived from the input's and the bundle's identity
(:mod:`osteolens.dicom_out.uids`), so writing again replaces the same objects.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from osteolens.errors import ConfigError

#: Type 2 patient and study attributes the results copy; filled with "" when the input lacks them.
_COPIED = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
           "StudyDate", "StudyTime", "ReferringPhysicianName")
_REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


@dataclass(frozen=True)
class Patient:
    """Patient data for a new study made for a non-DICOM input.

    Attributes:
        patient_id: Patient ID (required, 64 characters at most).
        name: Patient's Name in DICOM form, e.g. ``DOE^JANE``.
        birth_date: ``YYYYMMDD``.
        sex: ``M``, ``F``, ``O`` or empty.
        accession_number: Accession Number (16 characters at most).
    """

    patient_id: str
    name: str = ""
    birth_date: str = ""
    sex: str = ""
    accession_number: str = ""

    def check(self) -> Patient:
        """Self, or a ConfigError naming the option that DICOM does not allow."""
        from pydicom.config import RAISE
        from pydicom.valuerep import validate_value

        fields = (("--patient-id", "LO", self.patient_id), ("--patient-name", "PN", self.name),
                  ("--patient-birth-date", "DA", self.birth_date), ("--patient-sex", "CS", self.sex),
                  ("--accession-number", "SH", self.accession_number))
        if not self.patient_id.strip():
            raise ConfigError("--patient-id", "is empty.", "give the patient's ID.")
        for option, vr, value in fields:
            try:
                validate_value(vr, value, RAISE)
            except ValueError as exc:
                raise ConfigError(option, f"{value!r} is not a valid DICOM {vr} value ({exc}).",
                                  "e.g. --patient-name DOE^JANE --patient-birth-date 19500131 --patient-sex F."
                                  ) from exc
        if self.sex not in ("", "M", "F", "O"):
            raise ConfigError("--patient-sex", f"{self.sex!r} is not M, F or O.", "use M, F or O.")
        return self


def read_header(path: Path) -> Any:
    """The DICOM header of ``path`` (no pixels), or None when the file is not DICOM."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        return dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, EOFError, ValueError, TypeError):
        return None


def _reference(header: Any, path: Path) -> Any:
    """The header with the copied type 2 attributes present (empty when the input lacks them)."""
    missing = [keyword for keyword in _REQUIRED if not header.get(keyword)]
    if missing:
        raise ConfigError(path, f"the DICOM file lacks {', '.join(missing)}, so its results cannot join its study.",
                          "pass a complete DICOM image (e.g. as sent by the modality or PACS).")
    for keyword in _COPIED:
        if keyword not in header:
            setattr(header, keyword, "")
    return header


def _save(dataset: Any, path: Path) -> Path:
    from pydicom.filebase import DicomBytesIO

    from osteolens.io._files import write_atomic

    buffer = DicomBytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return write_atomic(path, buffer.getvalue())  # FileWriteError naming the file and the fix


def write_dicom_results(
    source: str | os.PathLike[str],
    record: dict[str, Any],
    bundle: Any,
    out_dir: str | os.PathLike[str],
    *,
    overlay_rgb: np.ndarray | None = None,
    patient: Patient | None = None,
    stem: str | None = None,
) -> list[Path]:
    """Write the SR (and the overlay SC) of one prediction; return the files written.

    Args:
        source: the radiograph that was predicted (DICOM, or a raster file with ``patient``).
        record: its JSON record (``osteolens.inference.report.ok_record``).
        bundle: the loaded :class:`~osteolens.inference.Bundle` that predicted it (or its path).
        out_dir: the folder (created).
        overlay_rgb: the Grad-CAM overlay ``uint8 (H, W, 3)``
            (``osteolens.explain.overlay(prediction.image, prediction.heatmap)``); None: no SC.
        patient: patient data that make a new study for a non-DICOM ``source``; ignored for
            DICOM, which keeps its own patient and study.
        stem: file name stem (default: the source's).

    Raises:
        ConfigError: a non-DICOM source without ``patient``, a DICOM file without the UIDs
            a result needs, or a failed record.
        FileWriteError: ``out_dir`` is not writable.

    Example:
        >>> write_dicom_results("knee.dcm", record, predictor.bundle, "dicom/")  # doctest: +SKIP
        [PosixPath('dicom/knee_sr.dcm')]
    """
    from osteolens.dicom_out.sc import build_overlay_sc, build_source_sc
    from osteolens.dicom_out.sr import build_sr
    from osteolens.dicom_out.uids import new_study_uids, result_uids

    source, out_dir = Path(source), Path(out_dir)
    if not isinstance(bundle, (str, os.PathLike)):
        loaded = bundle
    else:
        from osteolens.inference import load_bundle

        loaded = load_bundle(bundle)
    if record.get("result") != "ok":
        raise ConfigError(source, "the prediction failed, so there is no result to write as DICOM.",
                          f"fix the input first ({record.get('error')}).")
    stem = stem or source.stem or source.name
    written: list[Path] = []
    header = read_header(source)
    if header is None:
        if patient is None:
            raise ConfigError(source, "is not a DICOM file, so its DICOM results have no study to join.",
                              "give patient data to make a new study (--patient-id, --patient-name, "
                              "--patient-birth-date, --patient-sex, --accession-number; a JSON-lines request's "
                              '"patient"), or predict the DICOM original.')
        from osteolens.data.manifest import file_sha256
        from osteolens.io import read_radiograph

        patient.check()
        digest = file_sha256(source)
        reference = build_source_sc(read_radiograph(source).pixels, patient, new_study_uids(digest, patient.patient_id))
        written.append(_save(reference, out_dir / f"{stem}_image.dcm"))
    else:
        reference = _reference(header, source)
    uids = result_uids(reference.StudyInstanceUID, reference.SOPInstanceUID, loaded.digest)
    written.append(_save(build_sr(reference, record, loaded, uids), out_dir / f"{stem}_sr.dcm"))
    if overlay_rgb is not None:
        written.append(_save(build_overlay_sc(reference, overlay_rgb, loaded, uids), out_dir / f"{stem}_sc.dcm"))
    return written


def write_prediction_dicom(
    source: str | os.PathLike[str],
    prediction: Any,
    record: dict[str, Any],
    bundle: Any,
    out_dir: str | os.PathLike[str],
    *,
    patient: Patient | None = None,
    stem: str | None = None,
) -> list[Path]:
    """:func:`write_dicom_results` for a :class:`~osteolens.inference.Prediction`: its Grad-CAM
    overlay (the one ``predict --cam`` writes as PNG) becomes the Secondary Capture; no heat map, no SC."""
    from osteolens.explain import overlay

    rgb = None if prediction.heatmap is None else overlay(prediction.image, prediction.heatmap)
    return write_dicom_results(source, record, bundle, out_dir, overlay_rgb=rgb, patient=patient, stem=stem)


def write_detection_dicom(source: str | os.PathLike[str], spine: Any, overlay_bgr: np.ndarray, bundle: Any,
                          out_dir: str | os.PathLike[str]) -> list[Path]:
    """The DICOM results of a landmark detection on the DICOM ``source``: the morphometry SR (heights,
    angles, Cobb angles with their end vertebrae; :func:`osteolens.dicom_out.morphometry_sr.write_morphometry_sr`,
    naming the detector) and the overlay (corners, Cobb end vertebrae) as a Secondary Capture,
    ``<source stem>_morphometry_sr.dcm`` and ``<source stem>_overlay_sc.dcm``.

    Args:
        source: the DICOM radiograph the corners were detected on.
        spine: its :class:`~osteolens.morphometry.spine.SpineMeasurement`.
        overlay_bgr: the overlay ``uint8 (H, W, 3)`` in OpenCV's BGR order
            (:func:`osteolens.landmarks.measure.measure_prediction`).
        bundle: the loaded :class:`~osteolens.landmarks.bundle.LandmarkBundle`.
        out_dir: the folder (created).

    Raises:
        ConfigError: ``source`` is not DICOM or lacks the UIDs a result needs.
        FileWriteError: ``out_dir`` is not writable.
    """
    from osteolens.dicom_out.morphometry_sr import save_morphometry_sr, source_reference
    from osteolens.dicom_out.sc import build_overlay_sc
    from osteolens.dicom_out.uids import result_uids

    source = Path(source)
    reference = source_reference(source)
    written = [save_morphometry_sr(spine, reference, source, out_dir, f"detected by {bundle.description}")]
    uids = result_uids(reference.StudyInstanceUID, reference.SOPInstanceUID, bundle.digest)
    sc = build_overlay_sc(reference, np.ascontiguousarray(overlay_bgr[..., ::-1]), bundle, uids, kind="vertebral landmarks",
                          derivation="detected vertebral corners, heights and Cobb end vertebrae drawn over the radiograph")
    written.append(_save(sc, Path(out_dir) / f"{source.stem}_overlay_sc.dcm"))
    return written


__all__ = ["Patient", "read_header", "write_detection_dicom", "write_dicom_results", "write_prediction_dicom"]
