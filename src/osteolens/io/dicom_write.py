"""``write_dicom``: a :class:`Radiograph` as a DX ("For Presentation") or Secondary Capture file.

Written with plain pydicom rather than highdicom: highdicom builds Secondary Capture but
has no DX Image constructor, and its validation costs far more than writing the ~50
attributes below by hand, which matters for the phantom cohort (800 files in seconds).
The attributes follow PS3.3 A.26 (DX IOD: Patient, General Study, General Series,
DX Series, General Equipment, General Image, Image Pixel, DX Anatomy Imaged, DX Image,
DX Detector, VOI LUT, Acquisition Context, SOP Common) and A.8.1 (SC IOD).

Pixel encoding: ``v = round(p * (2^b - 1))`` stored as MONOCHROME2, or ``2^b - 1 - v``
for MONOCHROME1. The file carries RescaleSlope 1 / RescaleIntercept 0 and a
``LINEAR_EXACT`` window of centre ``(2^b - 1) / 2`` and width ``2^b - 1``, which maps the
stored range onto itself, so viewers show the whole range and
:func:`~osteolens.io.read_radiograph` returns ``v / (2^b - 1)`` exactly.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from osteolens.errors import RadiographWriteError
from osteolens.io._files import quantise, unit_array, write_atomic
from osteolens.io.dicom_tags import anatomic_region, format_age
from osteolens.io.radiograph import Radiograph

_DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
#: Dates written when ``uid_seed`` is given, so that the bytes depend on the inputs only.
FIXED_DATE, FIXED_TIME = "20000101", "000000"


def write_dicom(
    radiograph: Radiograph,
    path: str | os.PathLike[str],
    *,
    photometric: str = "MONOCHROME2",
    modality: str = "DX",
    bits_stored: int = 16,
    secondary_capture: bool = False,
    uid_seed: str | None = None,
    patient_orientation: tuple[str, str] | None = None,
) -> Path:
    """Write ``radiograph`` as an uncompressed (explicit VR little endian) DICOM file.

    Patient and acquisition tags come from ``radiograph.meta``: PatientID, PatientSex,
    PatientAge (``age_years`` as ``045Y`` / ``006M`` / ``003W`` / ``003D``), ViewPosition,
    BodyPartExamined, laterality (DX: ImageLaterality, ``U`` when unknown; Secondary
    Capture: the series Laterality), Manufacturer;
    ``spacing_mm`` becomes PixelSpacing (and ImagerPixelSpacing for DX). Reading the file
    back gives the same pixels within ``0.5 / (2^bits_stored - 1)`` and the same metadata
    (ages rounded to whole units of the chosen AS unit).

    Args:
        radiograph: the image (bone bright, [0, 1]) and its metadata.
        path: destination file (written atomically; parent folders are created).
        photometric: ``"MONOCHROME2"`` (stored values bright = bone) or ``"MONOCHROME1"``
            (stored values inverted, as many CR / DX systems write).
        modality: the Modality tag; DX Image Storage requires ``"DX"``, Secondary Capture
            takes any (e.g. ``"OT"``, ``"CR"``).
        bits_stored: 8 to 16 (8 bits allocated up to 8, else 16).
        secondary_capture: write Secondary Capture Image Storage instead of DX.
        uid_seed: when given, Study / Series / SOP Instance UIDs are derived from it
            (``pydicom.uid.generate_uid(entropy_srcs=...)``) together with the patient,
            view and pixel content, and dates are fixed at 2000-01-01, so the same inputs
            and seed give the same bytes. Images of one patient written with one seed
            share the study UID. Without it UIDs are random and dates are now.
        patient_orientation: PatientOrientation, the patient directions of the rows and
            the columns, e.g. ``("L", "F")`` for a frontal view displayed as if facing the
            patient; default ``meta.extra["patient_orientation"]`` (kept from a DICOM that
            was read), else empty. The DX IOD requires it, but osteolens cannot infer it.

    Returns:
        The path written.

    Raises:
        RadiographWriteError: bad pixels, unsupported options, a tag value that DICOM does
            not allow (e.g. a lower-case body part), or an unwritable path.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.uid import ExplicitVRLittleEndian

    path = Path(path)
    photometric = photometric.upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise RadiographWriteError(path, f"photometric {photometric!r} is not a grey-scale interpretation.",
                                   "use MONOCHROME2 or MONOCHROME1.")
    if not 8 <= bits_stored <= 16:
        raise RadiographWriteError(path, f"bits_stored={bits_stored} is outside 8..16.", "use 8 to 16 bits.")
    if not secondary_capture and modality != "DX":
        raise RadiographWriteError(path, f"DX Image Storage requires Modality DX, got {modality!r}.",
                                   "use modality='DX', or secondary_capture=True for another modality.")
    values = quantise(unit_array(radiograph.pixels, path), bits_stored)
    full = 2**bits_stored - 1
    if photometric == "MONOCHROME1":
        values = (full - values).astype(values.dtype)
    pixel_bytes = values.astype(values.dtype.newbyteorder("<"), copy=False).tobytes()
    if len(pixel_bytes) % 2:
        pixel_bytes += b"\x00"  # OB/OW values have even length

    meta = radiograph.meta
    sop_class = _SECONDARY_CAPTURE if secondary_capture else _DX_FOR_PRESENTATION
    uids = _uids(uid_seed, meta.patient_id, meta.view, meta.laterality, modality, sop_class, photometric, pixel_bytes)
    date, time = (FIXED_DATE, FIXED_TIME) if uid_seed is not None else _now()

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uids["instance"]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = time
    ds.AccessionNumber = ""
    ds.Modality = modality
    ds.Manufacturer = _checked(path, "Manufacturer", "LO", meta.manufacturer) or ""
    ds.ReferringPhysicianName = ""
    # Patient
    ds.PatientName = ""
    ds.PatientID = _checked(path, "PatientID", "LO", meta.patient_id) or ""
    ds.PatientBirthDate = ""
    ds.PatientSex = _checked(path, "PatientSex", "CS", _sex(path, meta.sex)) or ""
    age = _age(path, meta.age_years)
    if age is not None:
        ds.PatientAge = age
    # Study, series, image
    ds.StudyInstanceUID = uids["study"]
    ds.SeriesInstanceUID = uids["series"]
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    orientation = patient_orientation or radiograph.meta.extra.get("patient_orientation")
    ds.PatientOrientation = _orientation(path, orientation)
    body_part = _checked(path, "BodyPartExamined", "CS", meta.body_part)
    if body_part is not None:
        ds.BodyPartExamined = body_part
    view = _checked(path, "ViewPosition", "CS", meta.view)
    if view is not None:
        ds.ViewPosition = view
    laterality = _checked(path, "Laterality", "CS", meta.laterality)
    if secondary_capture:
        ds.ConversionType = "WSD"
        if laterality is not None:
            ds.Laterality = laterality
    else:
        _dx_modules(ds, laterality, photometric, body_part)
    # Image Pixel
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = (int(n) for n in values.shape)
    ds.BitsAllocated = 8 if bits_stored <= 8 else 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.WindowCenter = _ds(full / 2)
    ds.WindowWidth = full
    ds.VOILUTFunction = "LINEAR_EXACT"
    if radiograph.spacing_mm is not None:
        spacing = [_ds(float(v)) for v in radiograph.spacing_mm]
        ds.PixelSpacing = spacing
        if not secondary_capture:
            ds.ImagerPixelSpacing = spacing
    ds.PixelData = pixel_bytes
    ds["PixelData"].VR = "OB" if ds.BitsAllocated == 8 else "OW"

    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = uids["instance"]
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = DicomBytesIO()
    try:
        ds.save_as(buffer, enforce_file_format=True)
    except (ValueError, TypeError, AttributeError) as exc:
        raise RadiographWriteError(path, f"pydicom could not encode the data set ({exc}).",
                                   "check the metadata values.") from exc
    return write_atomic(path, buffer.getvalue())


def _dx_modules(ds: Any, laterality: str | None, photometric: str, body_part: str | None) -> None:
    """Attributes the DX IOD requires beyond the common ones (PS3.3 C.8.11)."""
    from pydicom.dataset import Dataset
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageLaterality = laterality or "U"
    ds.PixelIntensityRelationship = "LIN"
    ds.PixelIntensityRelationshipSign = 1
    ds.PresentationLUTShape = "INVERSE" if photometric == "MONOCHROME1" else "IDENTITY"
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation = "NO"
    ds.DetectorType = ""
    ds.AcquisitionContextSequence = []
    region = anatomic_region(body_part)
    item = Dataset()
    if region is not None:
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = region
    ds.AnatomicRegionSequence = [item] if region is not None else []  # type 2: empty if unknown
    ds.PositionerType = ""


def _uids(seed: str | None, *parts: Any) -> dict[str, str]:
    """Study, series and instance UIDs: random, or derived from the seed and the content."""
    from pydicom.uid import generate_uid

    if seed is None:
        return {"study": generate_uid(), "series": generate_uid(), "instance": generate_uid()}
    patient, view, laterality, modality, sop_class, photometric, pixel_bytes = parts
    patient = patient or ""
    content = hashlib.sha256(pixel_bytes).hexdigest()
    return {
        "study": generate_uid(entropy_srcs=[seed, "study", patient]),
        "series": generate_uid(entropy_srcs=[seed, "series", patient, modality, sop_class]),
        "instance": generate_uid(
            entropy_srcs=[seed, "instance", patient, view or "", laterality or "", photometric, sop_class, content]
        ),
    }


def _now() -> tuple[str, str]:
    now = datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S")


def _ds(value: float) -> str:
    """A decimal string of at most 16 characters (VR DS)."""
    from pydicom.valuerep import format_number_as_ds

    return format_number_as_ds(value)


def _orientation(path: Path, value: Any) -> list[str] | str:
    """Two CS values (e.g. ``["L", "F"]``), or empty when unknown."""
    if not value:
        return ""
    values = [str(v) for v in (value.split("\\") if isinstance(value, str) else value)]
    if len(values) != 2 or not all(v and set(v) <= set("LRAPHF") for v in values):
        raise RadiographWriteError(path, f"patient_orientation {value!r} is not two directions such as ('L', 'F').",
                                   "use two strings of the letters L, R, A, P, H, F.")
    return values


def _sex(path: Path, sex: str | None) -> str | None:
    if sex is not None and sex not in ("M", "F", "O"):
        raise RadiographWriteError(path, f"meta.sex {sex!r} is not a DICOM PatientSex.", "use 'M', 'F', 'O' or None.")
    return sex


def _age(path: Path, years: float | None) -> str | None:
    try:
        return format_age(years)
    except ValueError as exc:
        raise RadiographWriteError(path, f"meta.age_years: {exc}.", "use an age between 0 and 999 years, or None.") from exc


def _checked(path: Path, keyword: str, vr: str, value: str | None) -> str | None:
    """``value`` if DICOM allows it for ``vr`` (e.g. CS: upper case, 16 characters), else an error."""
    from pydicom.config import RAISE
    from pydicom.valuerep import validate_value

    if value is None:
        return None
    try:
        validate_value(vr, value, RAISE)
    except ValueError as exc:
        raise RadiographWriteError(path, f"{keyword} {value!r} is not a valid DICOM {vr} value ({exc}).",
                                   "use upper-case letters, digits, spaces and '_' (16 characters at most) for "
                                   "codes such as body part and view; 64 characters for IDs.") from exc
    return value
