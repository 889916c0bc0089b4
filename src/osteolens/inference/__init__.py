"""Serve a trained model: the bundle (safetensors + JSON), the Predictor, ONNX export and runtime.

Example:
    >>> from osteolens.inference import Predictor  # doctest: +SKIP
    >>> Predictor("runs/knee/bundle").predict("knee.png", cam=True).label  # doctest: +SKIP
    'osteoporosis'
"""

from __future__ import annotations

from osteolens.inference.bundle import FORMAT_VERSION, Bundle, load_bundle, write_bundle

__all__ = ["FORMAT_VERSION", "Bundle", "load_bundle", "write_bundle"]
