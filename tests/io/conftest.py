"""Builders of small DICOM files for the io tests (pydicom only, no osteolens code)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid


def grey_dataset(values: np.ndarray, *, bits_stored: int = 12, signed: bool = False, **tags: Any) -> Dataset:
    """A minimal single-frame grey Secondary Capture data set holding ``values`` uncompressed."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = uid = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, uid
    ds.Modality = "OT"
    ds.PatientID = "T1"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = values.shape
    ds.BitsAllocated = 16 if bits_stored > 8 else 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    dtype = {(16, False): "<u2", (16, True): "<i2", (8, False): "u1", (8, True): "i1"}[(ds.BitsAllocated, signed)]
    ds.PixelData = np.ascontiguousarray(values.astype(dtype)).tobytes()
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    return ds


@pytest.fixture
def save_dicom(tmp_path: Path) -> Callable[..., Path]:
    """``save_dicom(name, values, **grey_dataset_kwargs) -> path`` of a written file."""

    def _save(name: str, values: np.ndarray, **kwargs: Any) -> Path:
        path = tmp_path / name
        grey_dataset(values, **kwargs).save_as(path, enforce_file_format=True)
        return path

    return _save
