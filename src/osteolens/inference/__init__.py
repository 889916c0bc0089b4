"""Serve a trained model: the bundle (safetensors + JSON), the Predictor, ONNX export and runtime.

Example:
    >>> from osteolens.inference import Predictor  # doctest: +SKIP
    >>> Predictor("runs/knee/bundle").predict("knee.png", cam=True).label  # doctest: +SKIP
    'osteoporosis'
"""

from __future__ import annotations

from osteolens.inference.bundle import FORMAT_VERSION, Bundle, add_onnx, load_bundle, write_bundle
from osteolens.inference.predictor import BACKENDS, Prediction, Predictor
from osteolens.inference.runtime import export_checked, export_onnx

__all__ = [
    "BACKENDS",
    "FORMAT_VERSION",
    "Bundle",
    "Prediction",
    "Predictor",
    "add_onnx",
    "export_checked",
    "export_onnx",
    "load_bundle",
    "write_bundle",
]
