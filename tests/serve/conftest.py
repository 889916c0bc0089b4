"""Fixtures of the service tests: a tiny bundle and a radiograph-like PNG."""

from __future__ import annotations

import numpy as np
import pytest
import torch

PREPROCESSING = [{"name": "percentile_normalise", "params": {}}, {"name": "crop_to_content", "params": {}},
                 {"name": "pad_to_square", "params": {}}, {"name": "resize", "params": {"size": 48}}]


@pytest.fixture
def make_predictor(tmp_path):
    """``make_predictor(tabular=(), backend="onnx", views=None) -> Predictor`` over a tiny binary simple_cnn
    bundle (``views=["AP", "LAT"]``: a two-view model)."""
    from osteolens.inference import Predictor, write_bundle
    from osteolens.models import create_model

    def _make(tabular=(), backend="onnx", name="bundle", views=None):
        torch.manual_seed(0)
        models = [create_model("simple_cnn", "binary", 1, tabular=list(tabular), conv_layers=2, filters=4,
                               dense_units=8, views=len(views or [0])).eval() for _ in range(2)]
        path = write_bundle(tmp_path / name, models=models, preprocessing=PREPROCESSING, input_size=(48, 48),
                            views=views,
                            task="binary", labels=["normal", "osteoporosis"], target="label", threshold=0.5,
                            tabular_scaling={"age": {"mean": 60.0, "std": 10.0}} if "age" in tabular else None,
                            metrics={"auroc": {"value": 0.81, "ci": [0.7, 0.9]}}, training_summary={"folds": 2})
        return Predictor(path, backend=backend)

    return _make


def _phantom_like(size=(120, 96), seed=0) -> np.ndarray:
    """A radiograph-like image: dark field, a bright vertebra-like block with trabecular texture."""
    rng = np.random.default_rng(seed)
    image = np.zeros(size, np.float32)
    rows, cols = np.mgrid[0 : size[0], 0 : size[1]]
    body = ((rows - size[0] / 2) / (size[0] * 0.35)) ** 2 + ((cols - size[1] / 2) / (size[1] * 0.3)) ** 2 < 1
    texture = 0.55 + 0.25 * np.sin(rows / 3.0) * np.cos(cols / 4.0) + 0.05 * rng.standard_normal(size)
    image[body] = np.clip(texture[body], 0.2, 0.95)
    return image


@pytest.fixture
def phantom_like():
    """``phantom_like(size=(120, 96), seed=0) -> float32 (H, W)`` radiograph-like image."""
    return _phantom_like


@pytest.fixture
def png_bytes(tmp_path):
    """PNG bytes of a 120 x 96 radiograph-like image."""
    from osteolens.io import write_png

    path = write_png(_phantom_like(), tmp_path / "phantom.png", bits=16)
    return path.read_bytes()
