"""Secondary Captures: the Grad-CAM overlay (RGB, "NOT FOR DIAGNOSTIC USE" burned in) and, for a
non-DICOM input, the radiograph itself as the first image of a new study."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np

from osteolens.dicom_out.uids import ResultUIDs

NOT_FOR_DIAGNOSIS = "NOT FOR DIAGNOSTIC USE"
SERIES_NUMBER = 991


def burn_in(rgb: np.ndarray, text: str = NOT_FOR_DIAGNOSIS) -> np.ndarray:
    """A copy of ``rgb`` with ``text`` in white on a black band across the top.

    The font scales with the width so the text spans about 60 % of it.

    Example:
        >>> band = burn_in(np.full((100, 200, 3), 128, np.uint8))
        >>> int(band[:, :, 0].max()), int(band[-1, -1, 0])
        (255, 128)
    """
    import cv2

    image = np.ascontiguousarray(rgb, dtype=np.uint8).copy()
    height, width = image.shape[:2]
    font = cv2.FONT_HERSHEY_SIMPLEX
    (text_width, _), _ = cv2.getTextSize(text, font, 1.0, 2)
    scale = max(0.2, 0.6 * width / text_width)
    thickness = max(1, round(2 * scale))
    (text_width, text_height), baseline = cv2.getTextSize(text, font, scale, thickness)
    band = min(height, text_height + baseline + 2 * max(2, text_height // 3))
    image[:band] = 0
    origin = ((width - text_width) // 2, (band + text_height) // 2)
    cv2.putText(image, text, origin, font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return image


def _orientation(reference: Any) -> Any:
    value = reference.get("PatientOrientation")
    return list(value) if value is not None and not isinstance(value, str) else (value or "")


def build_overlay_sc(reference: Any, overlay_rgb: np.ndarray, bundle: Any, uids: ResultUIDs, *, kind: str = "Grad-CAM",
                     derivation: str = "Grad-CAM heat map (jet, alpha 0.4) blended over the radiograph") -> Any:
    """``highdicom.sc.SCImage`` of the overlay in the reference radiograph's study, in a new series.

    ``kind`` names the overlay in the series description and comments (``Grad-CAM``, or
    ``vertebral landmarks`` for a detector's corners and Cobb angles); ``derivation`` says how it was made."""
    from highdicom.sc import SCImage
    from pydicom.dataset import Dataset

    from osteolens import __version__

    sc = SCImage.from_ref_dataset(
        ref_dataset=reference, pixel_array=burn_in(overlay_rgb), photometric_interpretation="RGB",
        bits_allocated=8, coordinate_system="PATIENT",
        # highdicom takes only single-letter directions here; the reference's own value is set below.
        patient_orientation=("L", "F"), series_instance_uid=uids.sc_series, series_number=SERIES_NUMBER,
        sop_instance_uid=uids.sc_instance, instance_number=1, manufacturer="osteolens",
        series_description=f"osteolens {bundle.name} {kind}"[:64], software_versions=__version__,
    )
    sc.PatientOrientation = _orientation(reference)  # type 2C: empty when unknown
    laterality = reference.get("Laterality") or reference.get("ImageLaterality") or ""
    sc.Laterality = laterality if laterality in ("R", "L") else ""  # type 2C
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.BurnedInAnnotation = "YES"
    sc.ImageComments = f"{NOT_FOR_DIAGNOSIS}. {kind} overlay of model {bundle.name} (sha256 {bundle.digest[:16]})."
    sc.DerivationDescription = derivation
    source = Dataset()
    source.ReferencedSOPClassUID = reference.SOPClassUID
    source.ReferencedSOPInstanceUID = reference.SOPInstanceUID
    sc.SourceImageSequence = [source]
    return sc


def build_source_sc(pixels: np.ndarray, patient: Any, uids: dict[str, str]) -> Any:
    """The radiograph ``(H, W)`` in [0, 1] as an 8-bit MONOCHROME2 Secondary Capture opening a new study."""
    from highdicom.sc import SCImage

    from osteolens import __version__

    now = datetime.now()
    grey = np.clip(np.rint(np.asarray(pixels, np.float32) * 255.0), 0, 255).astype(np.uint8)
    sc = SCImage(
        pixel_array=grey, photometric_interpretation="MONOCHROME2", bits_allocated=8, coordinate_system="PATIENT",
        patient_orientation=("L", "F"), study_instance_uid=uids["study"], series_instance_uid=uids["series"],
        series_number=1, sop_instance_uid=uids["instance"], instance_number=1, manufacturer="osteolens",
        patient_id=patient.patient_id, patient_name=patient.name, patient_birth_date=patient.birth_date,
        patient_sex=patient.sex or None, accession_number=patient.accession_number, study_id="",
        study_date=now.date(), study_time=now.time().replace(microsecond=0), referring_physician_name="",
        series_description="radiograph converted by osteolens", software_versions=__version__,
    )
    sc.PatientOrientation = sc.Laterality = ""  # type 2C, unknown for a raster file
    sc.ConversionType = "WSD"
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.BurnedInAnnotation = "NO"
    return sc
