"""Reading radiographs from DICOM and raster files, writing PNG and DICOM.

Public API: :func:`read_radiograph`, :func:`write_png`, :func:`write_dicom`,
:func:`pixel_hash`, and the :class:`Radiograph` / :class:`RadiographMeta` types.
"""

from __future__ import annotations

from osteolens.io.dicom_write import write_dicom
from osteolens.io.hashing import pixel_hash
from osteolens.io.png_write import write_png
from osteolens.io.radiograph import Radiograph, RadiographMeta
from osteolens.io.reader import DEFAULT_MAX_PIXELS, read_radiograph

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "Radiograph",
    "RadiographMeta",
    "pixel_hash",
    "read_radiograph",
    "write_dicom",
    "write_png",
]
