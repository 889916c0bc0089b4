"""The in-memory radiograph: pixels as the radiologist sees them, plus what we know about them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class RadiographMeta:
    """Acquisition and patient facts read from the file (None when unknown).

    ``age_years`` is decimal years (DICOM ``PatientAge`` ``045Y`` -> 45.0, ``006M`` -> 0.5).
    ``sex`` is ``"M"``, ``"F"`` or ``"O"``. ``source`` is the file path as given and
    ``sha256`` the hash of the file's bytes.
    """

    patient_id: str | None = None
    sex: str | None = None
    age_years: float | None = None
    view: str | None = None
    body_part: str | None = None
    laterality: str | None = None
    modality: str | None = None
    manufacturer: str | None = None
    source: str | None = None
    sha256: str | None = None
    original_shape: tuple[int, int] | None = None
    bits_stored: int | None = None
    photometric: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        out = asdict(self)
        if out["original_shape"] is not None:
            out["original_shape"] = list(out["original_shape"])
        return out


@dataclass
class Radiograph:
    """A 2-D radiograph.

    Attributes:
        pixels: ``float32`` array ``(H, W)`` in [0, 1]; row 0 is the top of the image and
            bone is bright (MONOCHROME1 already inverted).
        spacing_mm: (row, column) pixel spacing in millimetres, or None when unknown.
        meta: acquisition and patient facts.
    """

    pixels: np.ndarray
    spacing_mm: tuple[float, float] | None = None
    meta: RadiographMeta = field(default_factory=RadiographMeta)

    def __post_init__(self) -> None:
        if self.pixels.ndim != 2:
            raise ValueError(f"Radiograph pixels must be 2-D (H, W), got shape {self.pixels.shape}")
        if self.pixels.dtype != np.float32:
            self.pixels = self.pixels.astype(np.float32)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns)."""
        return (int(self.pixels.shape[0]), int(self.pixels.shape[1]))
