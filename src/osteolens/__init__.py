"""osteolens: bone-health AI on plain radiographs.

Read radiographs (``osteolens.io``), preprocess them (``osteolens.transforms``), build
validated manifests and patient-grouped folds (``osteolens.data``), generate a synthetic
phantom cohort (``osteolens.phantom``), and measure, train, evaluate and serve models.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
