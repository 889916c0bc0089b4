"""What the node accepts (SOP classes, transfer syntaxes) and the check of a received dataset.

The C-STORE handler calls :func:`check_received` on the bytes as sent (no pixel decoding, a few
milliseconds): a dataset that pydicom cannot parse, that lacks the UIDs its results need, whose
pixel data is cut short, or that does not match its C-STORE request is refused with a failure
status instead of being queued.
"""

from __future__ import annotations

from io import BytesIO
from typing import NamedTuple

from pydicom.uid import (
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
    RLETransferSyntaxes,
    UncompressedTransferSyntaxes,
)

#: Storage SOP classes of plain radiographs (PS3.4 B.5).
STORAGE_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.1": "Computed Radiography Image Storage",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
}

#: C-STORE failure statuses (PS3.4 B.2.3).
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC210

_REQUIRED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Rows", "Columns")


class Verdict(NamedTuple):
    """What the C-STORE handler answers and does with a dataset.

    Attributes:
        status: the C-STORE status (0x0000: success).
        reason: why it failed, naming no patient data ("" on success).
        queue: True when the image is to be predicted; False for a failure, and for an
            osteolens result (Manufacturer "osteolens") sent back by a PACS routing rule, which
            is accepted and left alone so that a node never predicts its own heat maps.
    """

    status: int
    reason: str = ""
    queue: bool = False


def transfer_syntaxes() -> list[str]:
    """The transfer syntaxes offered: uncompressed ones, and every compressed one that the
    installed pydicom plugins (pylibjpeg, pyjpegls ...) decode."""
    from pydicom.pixels import get_decoder

    offered = [str(uid) for uid in UncompressedTransferSyntaxes]
    for uid in (*JPEGTransferSyntaxes, *JPEGLSTransferSyntaxes, *JPEG2000TransferSyntaxes, *RLETransferSyntaxes):
        try:
            if get_decoder(uid).is_available:
                offered.append(str(uid))
        except NotImplementedError:  # no decoder exists at all (JPEG 2000 Part 2)
            continue
    return offered


def check_received(data: bytes, sop_class: str, sop_instance: str) -> Verdict:
    """Check a received dataset in the DICOM file format.

    Args:
        data: the file (preamble, file meta and dataset) as the handler got it.
        sop_class: the C-STORE request's Affected SOP Class UID.
        sop_instance: its Affected SOP Instance UID.

    Returns:
        The :class:`Verdict`.
    """
    from pydicom import dcmread
    from pydicom.encaps import parse_fragments

    try:
        dataset = dcmread(BytesIO(data))
        missing = [keyword for keyword in _REQUIRED if not dataset.get(keyword)]
    except Exception as exc:  # noqa: BLE001  (any parser error means the same to the sender)
        return Verdict(CANNOT_UNDERSTAND, f"the dataset cannot be parsed ({type(exc).__name__})")
    if missing:
        return Verdict(CANNOT_UNDERSTAND, f"the dataset lacks {', '.join(missing)}")
    if dataset.SOPInstanceUID != sop_instance or dataset.SOPClassUID != sop_class:
        return Verdict(DOES_NOT_MATCH_SOP_CLASS, "the dataset's SOP Class / Instance UID differ from the C-STORE request's")
    if str(dataset.get("Manufacturer", "")) == "osteolens":
        return Verdict(0x0000, "an osteolens result, not predicted")
    if "PixelData" not in dataset:
        return Verdict(CANNOT_UNDERSTAND, "the dataset has no pixel data or it is cut short")
    pixels = dataset.PixelData
    frames = int(dataset.get("NumberOfFrames") or 1)
    if dataset.file_meta.TransferSyntaxUID.is_encapsulated:
        try:
            fragments = parse_fragments(pixels)[0]
        except Exception:  # noqa: BLE001
            fragments = 0
        if fragments < 2:  # the basic offset table item, then at least one fragment
            return Verdict(CANNOT_UNDERSTAND, "the encapsulated pixel data is cut short")
        return Verdict(0x0000, "", queue=True)
    bits = int(dataset.get("BitsAllocated") or 0)
    expected = dataset.Rows * dataset.Columns * int(dataset.get("SamplesPerPixel") or 1) * frames * bits // 8
    if bits == 0 or len(pixels) < expected:
        return Verdict(CANNOT_UNDERSTAND, f"the pixel data holds {len(pixels)} bytes, {expected} expected (cut short)")
    return Verdict(0x0000, "", queue=True)
