"""Simulated prediction tables shared by the evaluation tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def binary_frame(n_pat: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = np.repeat(rng.integers(0, 2, n_pat), 2)
    prob = 1 / (1 + np.exp(-(rng.normal(size=2 * n_pat) + 1.6 * y - 0.8)))
    return pd.DataFrame(
        {
            "image": [f"img{i}.png" for i in range(2 * n_pat)],
            "patient_id": np.repeat(np.arange(n_pat), 2).astype(str),
            "fold": np.repeat(np.arange(n_pat) % 4, 2),
            "y_true": np.where(y == 1, "osteoporosis", "normal"),
            "prob": prob,
            "sex": np.repeat(np.where(np.arange(n_pat) % 2, "M", "F"), 2),
            "age": np.repeat(rng.uniform(45, 85, n_pat), 2),
        }
    )


def multiclass_frame(n_pat: int = 60, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    classes = ["normal", "osteopenia", "osteoporosis"]
    y = np.repeat(rng.integers(0, 3, n_pat), 2)
    logits = rng.normal(size=(2 * n_pat, 3))
    logits[np.arange(2 * n_pat), y] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    frame = pd.DataFrame(
        {
            "image": [f"m{i}.png" for i in range(2 * n_pat)],
            "patient_id": np.repeat(np.arange(n_pat), 2).astype(str),
            "fold": np.repeat(np.arange(n_pat) % 3, 2),
            "y_true": [classes[i] for i in y],
        }
    )
    for c in [2, 0, 1]:  # columns deliberately out of order
        frame[f"prob_{classes[c]}"] = probs[:, c]
    return frame


@pytest.fixture
def make_binary():
    """``make_binary(n_pat=60, seed=0)``: 2 images per patient, 4 folds, sex and age."""
    return binary_frame


@pytest.fixture
def make_multiclass():
    """``make_multiclass(n_pat=60, seed=1)``: normal / osteopenia / osteoporosis, 3 folds."""
    return multiclass_frame
