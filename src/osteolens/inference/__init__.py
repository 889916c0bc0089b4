"""Serve a trained model: the bundle (safetensors + JSON), the Predictor, ONNX export and runtime.

Example:
    >>> from osteolens.inference import Predictor  # doctest: +SKIP
    >>> Predictor("runs/knee/bundle").predict("knee.png", cam=True).label  # doctest: +SKIP
    'osteoporosis'
"""

from __future__ import annotations

from osteolens import lazy_exports

# Imported on first use: reading or writing a bundle does not load torch's inference stack.
__all__ = lazy_exports(__name__, {
    "bundle": ["FORMAT_VERSION", "Bundle", "add_cam_onnx", "add_onnx", "load_bundle", "write_bundle"],
    "predictor": ["BACKENDS", "Prediction", "Predictor"],
    "runtime": ["export_checked", "export_onnx"],
})
