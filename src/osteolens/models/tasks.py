"""Prediction tasks: output size, loss, and the mapping from raw outputs to predictions.

| task | outputs | loss | prediction |
|---|---|---|---|
| ``binary`` | 1 logit | binary cross-entropy | ``p = sigmoid(z)`` for the second class |
| ``multiclass`` | K logits | cross-entropy | ``softmax(z)`` |
| ``ordinal`` | K-1 cumulative logits | CORAL: sum over k of BCE(z_k, [y > k]) | ``P(y > k) = sigmoid(z_k)``; ``P(y = k) = P(y > k-1) - P(y > k)`` |
| ``regression`` | 1 value | mean squared error | ``y = mean + std * z`` (the target is standardised) |

The ordinal head is CORAL (Cao, Mirjalili & Raschka 2020): one shared linear score and K-1
ordered biases, so the cumulative probabilities are rank-consistent, which suits the WHO
order normal < osteopenia < osteoporosis. Class weights ``w[y]`` multiply each sample's loss
and the batch loss is ``sum(w_i l_i) / sum(w_i)`` (PyTorch's convention for weighted
cross-entropy), the same for every classification task.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from osteolens.errors import ModelError

TASKS = ("binary", "multiclass", "ordinal", "regression")


def check_task(task: str) -> str:
    """Return ``task`` or raise ModelError naming the valid ones."""
    if task not in TASKS:
        raise ModelError(f"unknown task '{task}'. Fix: use one of {', '.join(TASKS)}.")
    return task


def num_outputs(task: str, n_classes: int = 0) -> int:
    """Number of raw outputs of the network for ``task`` with ``n_classes`` classes."""
    check_task(task)
    if task == "regression":
        return 1
    if n_classes < 2:
        raise ModelError(f"task '{task}' needs at least 2 classes, got {n_classes}. Fix: check the label column.")
    if task == "binary":
        if n_classes != 2:
            raise ModelError(f"task 'binary' needs exactly 2 classes, got {n_classes}. Fix: use task multiclass or ordinal.")
        return 1
    return n_classes if task == "multiclass" else n_classes - 1


def class_weights(labels: Sequence[int] | np.ndarray, n_classes: int) -> np.ndarray:
    """Balanced class weights ``N / (K * n_k)`` (scikit-learn's "balanced"); absent classes get 0."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=n_classes).astype(float)
    weights = np.zeros(n_classes)
    present = counts > 0
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


def loss(task: str, outputs: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Training loss of a batch.

    Args:
        task: one of :data:`TASKS`.
        outputs: raw network outputs ``[N, num_outputs]``.
        targets: class indices (long) for classification, the standardised value for regression.
        weights: optional per-class weights ``[K]`` (classification only).
    """
    outputs = outputs.float()
    if task == "regression":
        return F.mse_loss(outputs[:, 0], targets.float())
    if task == "binary":
        per_sample = F.binary_cross_entropy_with_logits(outputs[:, 0], targets.float(), reduction="none")
    elif task == "multiclass":
        per_sample = F.cross_entropy(outputs, targets.long(), reduction="none")
    elif task == "ordinal":
        thresholds = torch.arange(outputs.shape[1], device=outputs.device)
        levels = (targets.long()[:, None] > thresholds[None, :]).float()
        per_sample = F.binary_cross_entropy_with_logits(outputs, levels, reduction="none").sum(dim=1)
    else:
        check_task(task)
        raise AssertionError  # unreachable: check_task raised
    if weights is None:
        return per_sample.mean()
    w = weights.to(per_sample.device, per_sample.dtype)[targets.long()]
    return (w * per_sample).sum() / w.sum().clamp_min(1e-12)


def probabilities(task: str, outputs: torch.Tensor) -> torch.Tensor:
    """Class probabilities from raw outputs: ``[N]`` for binary (second class), ``[N, K]`` otherwise
    (:func:`osteolens.inference.outputs.probabilities` on the tensor's values; no gradient).

    Not defined for regression (raises ModelError).
    """
    from osteolens.inference import outputs as post

    return torch.from_numpy(post.probabilities(task, outputs.detach().float().cpu().numpy()))


def regression_values(outputs: torch.Tensor, scaling: dict | None) -> torch.Tensor:
    """Undo target standardisation: ``mean + std * z`` (identity when ``scaling`` is None;
    :func:`osteolens.inference.outputs.regression_values`)."""
    from osteolens.inference import outputs as post

    return torch.from_numpy(post.regression_values(outputs.detach().float().cpu().numpy(), scaling))