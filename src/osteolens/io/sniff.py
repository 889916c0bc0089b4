"""Recognise a file's format from its first bytes, never from its extension.

A file named ``scan.png`` that really holds DICOM is read as DICOM; a file with random
bytes is rejected whatever it is called.
"""

from __future__ import annotations

# Magic numbers of the formats osteolens reads (each format's specification).
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),  # BigTIFF
    (b"MM\x00+", "TIFF"),
    (b"BM", "BMP"),
)

#: How many leading bytes :func:`sniff_format` needs.
SNIFF_BYTES = 136

# Groups a DICOM data set without the 128-byte preamble may start with (little endian):
# file meta (0002), identifying (0008), patient (0010); only used as a fallback.
_RAW_DICOM_GROUPS = (b"\x02\x00", b"\x08\x00", b"\x10\x00")


def sniff_format(head: bytes) -> str | None:
    """Name the format of a file from its leading bytes.

    Args:
        head: at least the first :data:`SNIFF_BYTES` bytes of the file (fewer if the
            file is shorter).

    Returns:
        ``"DICOM"``, ``"PNG"``, ``"JPEG"``, ``"TIFF"``, ``"BMP"`` or None when the bytes
        match none of them.

    Example:
        >>> sniff_format(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(8))
        'PNG'
        >>> sniff_format(bytes(128) + b"DICM")
        'DICOM'
        >>> sniff_format(b"hello") is None
        True
    """
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "DICOM"
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if _looks_like_raw_dicom(head):
        return "DICOM"
    return None


def _looks_like_raw_dicom(head: bytes) -> bool:
    """A preamble-less DICOM data set: a known group tag followed by an explicit VR."""
    if len(head) < 8 or head[:2] not in _RAW_DICOM_GROUPS:
        return False
    vr = head[4:6]
    # Explicit VR: two upper-case letters; implicit VR: a 4-byte length, plausible if small.
    if vr.isalpha() and vr.isupper():
        return True
    length = int.from_bytes(head[4:8], "little")
    return 0 < length < 1024
