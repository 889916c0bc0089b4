"""Fixtures of the inference tests: tiny random-init models and bundles from osteolens.models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

LABELS = {"binary": ["normal", "osteoporosis"], "multiclass": ["normal", "osteopenia", "osteoporosis"],
          "ordinal": ["normal", "osteopenia", "osteoporosis"], "regression": []}
OUTPUTS = {"binary": 1, "multiclass": 3, "ordinal": 2, "regression": 1}
PREPROCESSING = [{"name": "percentile_normalise", "params": {"low": 0.5, "high": 99.5}},
                 {"name": "crop_to_content", "params": {"low": 0.1, "high": 1.0}},
                 {"name": "pad_to_square", "params": {}},
                 {"name": "resize", "params": {"size": 48}}]


@pytest.fixture
def preprocessing():
    """The pipeline config of the test bundles (crop to content, pad, resize to 48)."""
    return [dict(step) for step in PREPROCESSING]


@pytest.fixture
def create_model():
    """``osteolens.models.create_model``; tests build tiny simple_cnn networks."""
    from osteolens.models import create_model

    return create_model


@pytest.fixture
def make_bundle(tmp_path, create_model):
    """``make_bundle(task="binary", folds=2, tabular=(), fusion="offset", **bundle_fields) -> Path`` of a tiny
    simple_cnn bundle."""

    def _make(task: str = "binary", folds: int = 2, tabular=(), name: str = "bundle", fusion: str = "offset", **fields):
        torch.manual_seed(0)
        models = [create_model("simple_cnn", task, OUTPUTS[task], tabular=list(tabular), conv_layers=2, filters=4,
                               dense_units=8, fusion=fusion).eval() for _ in range(folds)]
        kwargs = dict(models=models, preprocessing=PREPROCESSING, input_size=(48, 48), task=task,
                      labels=LABELS[task], target="label" if task != "regression" else "bmd",
                      tabular_scaling={"age": {"mean": 60.0, "std": 10.0}} if "age" in tabular else None)
        if task == "regression":
            kwargs["target_scaling"] = {"mean": 150.0, "std": 30.0}
        kwargs.update(fields)
        from osteolens.inference import write_bundle

        return write_bundle(tmp_path / name, **kwargs)

    return _make


@pytest.fixture
def radiograph_png(tmp_path):
    """A 90 x 70 PNG: dark background, a bright bone-like block at rows 20-70, columns 10-50."""
    from osteolens.io import write_png

    image = np.zeros((90, 70), np.float32)
    rows, cols = np.mgrid[20:70, 10:50]
    image[20:70, 10:50] = 0.3 + 0.5 * np.sin(rows / 4.0) ** 2 * np.cos(cols / 6.0) ** 2
    path = tmp_path / "knee.png"
    write_png(image, path, bits=16)
    return path
