"""DICOM -> :class:`Radiograph`: decode, Modality LUT, VOI LUT / window, scale to [0, 1].

The grey-scale pipeline follows the DICOM standard (PS3.3 C.11): stored values ->
Modality LUT (RescaleSlope / RescaleIntercept or a Modality LUT Sequence, pydicom's
``apply_modality_lut``) -> VOI LUT Sequence or WindowCenter / WindowWidth (pydicom's
``apply_voi_lut``, first view) -> [0, 1] -> MONOCHROME1 inverted so bone is bright.

Scaling to [0, 1] maps the output range of the last step applied:

* a window: pydicom maps the window onto the modality output range ``[y_min, y_max]``
  (stored range ``[0, 2^BitsStored - 1]``, or signed, passed through the rescale), so
  ``(v - y_min) / (y_max - y_min)``;
* a VOI LUT Sequence: the smallest to the largest LUT entry (robust to the common
  ``LUTDescriptor`` that claims 16 bits for a 12-bit table);
* neither: the modality output range of the full stored range. The scale stays absolute
  (a 10-bit image that uses only 0-600 is not stretched); float pixel data, which has no
  stored range, is min-max scaled.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from osteolens.errors import RadiographReadError
from osteolens.io.codecs import missing_decoder
from osteolens.io.colour import luma
from osteolens.io.dicom_tags import parse_age, parse_laterality, parse_sex, spacing_from, text
from osteolens.io.radiograph import Radiograph, RadiographMeta
from osteolens.io.raster_read import check_size

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_REEXPORT = "re-export or re-copy the file from its source (PACS, modality or archive)."


def read_dicom(data: bytes, path: Path, max_pixels: int) -> Radiograph:
    """Decode one single-frame DICOM image held in ``data`` (the bytes of ``path``).

    Raises:
        RadiographReadError: unreadable header, no or empty pixel data, several frames,
            an image larger than ``max_pixels`` (checked from Rows x Columns before
            decoding), a transfer syntax without an installed decoder, pixel data that
            does not decode (truncated or corrupt), or data that is not one 2-D image.
    """
    from pydicom import dcmread

    try:
        ds = dcmread(BytesIO(data), force=True)
    except Exception as exc:  # pydicom raises many types on a broken header
        raise RadiographReadError(
            path, f"the DICOM header could not be parsed ({type(exc).__name__}: {exc}).", _REEXPORT
        ) from exc
    _check_header(ds, path, max_pixels)
    arr = _decode(ds, path)
    pixels, notes = _to_unit_range(arr, ds, path)
    meta = RadiographMeta(
        patient_id=text(ds, "PatientID"),
        sex=parse_sex(text(ds, "PatientSex")),
        age_years=parse_age(text(ds, "PatientAge")),
        view=text(ds, "ViewPosition"),
        body_part=text(ds, "BodyPartExamined"),
        laterality=parse_laterality(ds),
        modality=text(ds, "Modality"),
        manufacturer=text(ds, "Manufacturer"),
        original_shape=(int(pixels.shape[0]), int(pixels.shape[1])),
        bits_stored=int(ds.BitsStored) if "BitsStored" in ds else None,
        photometric=text(ds, "PhotometricInterpretation"),
        extra=_extra(ds) | notes,
    )
    found = spacing_from(ds)
    return Radiograph(pixels=pixels, spacing_mm=found[0] if found else None, meta=meta)


def _check_header(ds: Dataset, path: Path, max_pixels: int) -> None:
    """Everything that can be refused before a single pixel is decoded."""
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
        raise RadiographReadError(
            path,
            "the DICOM file holds no pixel data (it may be a report, a presentation state or "
            "a truncated image).",
            "pass the image object itself; " + _REEXPORT,
        )
    frames = _int(ds.get("NumberOfFrames")) or 1
    if frames > 1:
        raise RadiographReadError(
            path,
            f"the DICOM file holds {frames} frames; osteolens reads single-frame radiographs.",
            "extract one frame (e.g. `pydicom.dcmread(path).pixel_array[i]`) and save it with "
            "osteolens.io.write_dicom or write_png.",
        )
    rows, cols = _int(ds.get("Rows")), _int(ds.get("Columns"))
    keyword = next(k for k in _PIXEL_KEYWORDS if k in ds)
    if not rows or not cols or not ds[keyword].value:
        raise RadiographReadError(
            path, f"the DICOM pixel data is empty (Rows={rows}, Columns={cols}).", _REEXPORT
        )
    check_size(path, rows, cols, max_pixels)
    samples = _int(ds.get("SamplesPerPixel")) or 1
    if samples not in (1, 3):
        raise RadiographReadError(
            path, f"SamplesPerPixel is {samples}; a radiograph has 1 (grey) or 3 (colour).", _REEXPORT
        )


def _decode(ds: Dataset, path: Path) -> np.ndarray:
    """The stored values as a numpy array, or an error naming the missing decoder."""
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = ds.file_meta
    if "TransferSyntaxUID" not in meta:
        # A data set without file meta (no preamble): pydicom knows how it parsed it.
        implicit, little = ds.original_encoding
        if implicit:
            meta.TransferSyntaxUID = ImplicitVRLittleEndian
        else:
            meta.TransferSyntaxUID = ExplicitVRLittleEndian if little is not False else ExplicitVRBigEndian
    syntax = meta.TransferSyntaxUID
    if "PixelData" in ds:
        problem = missing_decoder(syntax)
        if problem is not None:
            raise RadiographReadError(path, *problem)
    try:
        return ds.pixel_array
    except Exception as exc:  # decoders raise many types on corrupt or truncated data
        raise RadiographReadError(
            path,
            f"the {syntax.name} pixel data could not be decoded ({type(exc).__name__}: {exc}); "
            "the file may be truncated or corrupt.",
            _REEXPORT,
        ) from exc


def _to_unit_range(arr: np.ndarray, ds: Dataset, path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Stored values -> float32 (H, W) in [0, 1], bone bright; plus notes for ``meta.extra``."""
    photometric = (text(ds, "PhotometricInterpretation") or "MONOCHROME2").upper()
    notes: dict[str, Any]
    if photometric == "PALETTE COLOR" and arr.ndim == 2:
        from pydicom.pixels.processing import apply_color_lut

        rgb = apply_color_lut(arr, ds)  # uint8 or uint16 entries, by the LUT descriptor
        grey = luma(rgb) / np.iinfo(rgb.dtype).max
        notes = {"colour": "PALETTE COLOR converted to grey (ITU-R 601 luma)"}
        return np.clip(grey, 0.0, 1.0).astype(np.float32), notes
    if arr.ndim == 3 and arr.shape[-1] == 3:
        bits = _int(ds.get("BitsStored")) or 8
        grey = luma(arr) / (2**bits - 1)
        notes = {"colour": f"{photometric} converted to grey (ITU-R 601 luma)"}
        return np.clip(grey, 0.0, 1.0).astype(np.float32), notes
    if arr.ndim != 2:
        raise RadiographReadError(path, f"the pixel data has shape {arr.shape}, not one 2-D image.", _REEXPORT)
    values, y_range, notes = _apply_luts(arr, ds)
    lo, hi = y_range
    if hi == lo:
        scaled = np.zeros(values.shape, dtype=np.float64)
    else:
        scaled = (np.asarray(values, dtype=np.float64) - lo) / (hi - lo)
    np.clip(scaled, 0.0, 1.0, out=scaled)
    if photometric == "MONOCHROME1":
        # MONOCHROME1: the minimum value is white; invert so bone is bright.
        scaled = 1.0 - scaled
    return scaled.astype(np.float32), notes


def _apply_luts(arr: np.ndarray, ds: Dataset) -> tuple[np.ndarray, tuple[float, float], dict[str, Any]]:
    """Modality then VOI transform; returns values, the range that maps to [0, 1], notes."""
    from pydicom.pixels.processing import apply_modality_lut, apply_voi, apply_voi_lut

    notes: dict[str, Any] = {}
    values = apply_modality_lut(arr, ds)
    if "ModalityLUTSequence" in ds:
        notes["modality_lut"] = "Modality LUT Sequence"
    elif "RescaleSlope" in ds and "RescaleIntercept" in ds:
        notes["modality_lut"] = f"rescale slope {float(ds.RescaleSlope):g} intercept {float(ds.RescaleIntercept):g}"

    if arr.dtype.kind == "f":
        full = (float(np.nanmin(values)), float(np.nanmax(values)))
        notes["scaling"] = "float pixel data: min-max"
    else:
        y_min, y_max = _modality_output_range(ds)
        full = (min(y_min, y_max), max(y_min, y_max))

    voi = ds.get("VOILUTSequence")
    has_lut = bool(voi) and "LUTData" in voi[0] and "LUTDescriptor" in voi[0]
    has_window = ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None
    if not (has_lut or has_window) or arr.dtype.kind == "f":
        return values, full, notes
    try:
        out = apply_voi_lut(values, ds, index=0, prefer_lut=True)
    except (ValueError, NotImplementedError, TypeError, IndexError) as exc:
        notes["voi"] = f"ignored an invalid VOI LUT / window ({exc})"
        return values, full, notes
    if has_lut:
        # Every LUT entry, through pydicom's own LUT reader (US or OW, unused bits masked).
        descriptor = voi[0].LUTDescriptor
        inputs = np.arange(int(descriptor[0]) or 2**16) + int(descriptor[1])
        lut = np.asarray(apply_voi(inputs, ds), dtype=np.float64)
        notes["voi"] = "VOI LUT Sequence"
        return out, (float(lut.min()), float(lut.max())), notes
    centre, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
    function = text(ds, "VOILUTFunction") or "LINEAR"
    notes["voi"] = f"window centre {centre:g} width {width:g} {function}"
    return out, _modality_output_range(ds), notes


def _modality_output_range(ds: Dataset) -> tuple[float, float]:
    """``(y_min, y_max)`` exactly as pydicom's ``apply_windowing`` computes its output range."""
    if ds.get("ModalityLUTSequence"):
        y_min, y_max = 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    elif int(ds.get("PixelRepresentation", 0)) == 0:
        y_min, y_max = 0.0, float(2 ** int(ds.BitsStored) - 1)
    else:
        y_min, y_max = float(-(2 ** (int(ds.BitsStored) - 1))), float(2 ** (int(ds.BitsStored) - 1) - 1)
    if ds.get("RescaleSlope") is not None and ds.get("RescaleIntercept") is not None:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        y_min, y_max = y_min * slope + intercept, y_max * slope + intercept
    return y_min, y_max


def _first(value: Any) -> float:
    """First value of a possibly multi-valued DS."""
    if not isinstance(value, (str, bytes)) and hasattr(value, "__getitem__"):
        value = value[0]
    return float(value)


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _extra(ds: Dataset) -> dict[str, Any]:
    """Identifiers worth keeping (JSON-ready strings), e.g. to pair views of one study."""
    out: dict[str, Any] = {"format": "DICOM"}
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax is not None:
        out["transfer_syntax"] = syntax.name
    for keyword, key in (
        ("SOPClassUID", "sop_class_uid"),
        ("StudyInstanceUID", "study_instance_uid"),
        ("SeriesInstanceUID", "series_instance_uid"),
        ("SOPInstanceUID", "sop_instance_uid"),
    ):
        value = text(ds, keyword)
        if value is not None:
            out[key] = value
    orientation = ds.get("PatientOrientation")
    if orientation:
        out["patient_orientation"] = [str(v) for v in orientation] if not isinstance(orientation, str) else orientation.split("\\")
    found = spacing_from(ds)
    if found is not None:
        out["spacing_source"] = found[1]
    return out
