"""Raw outputs to predictions, in NumPy (float32): the one implementation.

The Predictor post-processes ONNX Runtime's outputs here, so a prediction needs no torch;
training's out-of-fold predictions use the same functions through
:func:`osteolens.models.tasks.probabilities` / :func:`~osteolens.models.tasks.regression_values`.

| task | raw outputs ``z`` | prediction |
|---|---|---|
| binary | 1 logit | ``p = sigmoid(z)`` (the second class) |
| multiclass | K logits | ``softmax(z)`` |
| ordinal | K-1 cumulative logits | ``P(y > k) = cummin_k sigmoid(z_k)``; ``P(y = k) = P(y > k-1) - P(y > k)`` |
| regression | 1 standardised value | ``mean + std * z`` |
"""

from __future__ import annotations

import numpy as np

from osteolens.errors import ModelError


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * z))  # = 1 / (1 + exp(-z)), without overflow


def probabilities(task: str, outputs: np.ndarray) -> np.ndarray:
    """Class probabilities from raw outputs ``[N, K]``: ``[N]`` (binary, the positive class) or ``[N, classes]``."""
    z = np.asarray(outputs, dtype=np.float32)
    if task == "binary":
        return _sigmoid(z[:, 0])
    if task == "multiclass":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if task == "ordinal":
        exceed = np.minimum.accumulate(_sigmoid(z), axis=1)  # CORAL keeps them ordered; cummin guarantees it
        n = len(exceed)
        ones, zeros = np.ones((n, 1), exceed.dtype), np.zeros((n, 1), exceed.dtype)
        return np.concatenate([ones, exceed], axis=1) - np.concatenate([exceed, zeros], axis=1)
    raise ModelError(f"task '{task}' has no class probabilities. Fix: use regression_values for regression.")


def regression_values(outputs: np.ndarray, scaling: dict | None) -> np.ndarray:
    """Undo target standardisation: ``mean + std * z`` (identity when ``scaling`` is None)."""
    values = np.asarray(outputs, dtype=np.float32)[:, 0]
    if scaling:
        values = values * np.float32(scaling["std"]) + np.float32(scaling["mean"])
    return values


__all__ = ["probabilities", "regression_values"]
