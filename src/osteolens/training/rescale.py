"""Fold-specific standardisation folded into the network, so every fold speaks common units.

Each fold standardises its regression target and numeric covariates with its own training
rows' mean and standard deviation (using the test fold's statistics would leak its labels:
an untrained network would already predict the test mean). The bundle, however, stores one
scaling for all folds. Both maps are affine, so they are absorbed exactly into the first
and last linear layers after training:

* target: the fold predicts ``z_k`` with ``y = m_k + s_k z_k``; in common units
  ``z = (y - m) / s = (m_k - m) / s + (s_k / s) z_k``, so the output layer becomes
  ``W <- (s_k / s) W``, ``b <- (s_k / s) b + (m_k - m) / s``.
* covariate j: the fold saw ``x_k = (a - mu_k) / sd_k = (sd / sd_k) x + (mu - mu_k) / sd_k``
  with ``x`` the common encoding, so column j of the layer that takes the covariates (the
  covariate path of ``fusion: offset``, else the first head layer) is multiplied by
  ``sd / sd_k`` and ``W[:, j] (mu - mu_k) / sd_k`` is added to the bias its output feeds.
  With ``fusion: offset`` the covariate path also feeds the output, so the target's
  ``s_k / s`` multiplies it too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from osteolens.models.net import CoralOutput, OsteoNet


def _first_layer(head: nn.Module) -> tuple[nn.Linear, torch.Tensor]:
    """The first affine layer of the head and the bias vector its output feeds."""
    for module in head:
        if isinstance(module, CoralOutput):
            return module.score, module.bias
        if isinstance(module, nn.Linear):
            return module, module.bias
    raise AssertionError("the head has no linear layer")  # create_model always adds one


@torch.no_grad()
def rescale_covariates(
    net: OsteoNet,
    columns: Sequence[str],
    fold_scaling: Mapping[str, Mapping[str, float]],
    common_scaling: Mapping[str, Mapping[str, float]],
) -> None:
    """Make ``net`` take covariates standardised with ``common_scaling`` (see the module docstring)."""
    if not columns:
        return
    if net.covariate_path is not None:
        layer, bias, offset = net.covariate_path, _output_bias(net), 0
    else:
        layer, bias = _first_layer(net.head)
        offset = layer.in_features - len(columns)
    for j, column in enumerate(columns):
        if column not in fold_scaling:  # sex: encoded the same way in every fold
            continue
        mu_k, sd_k = fold_scaling[column]["mean"], fold_scaling[column]["std"]
        mu, sd = common_scaling[column]["mean"], common_scaling[column]["std"]
        weight = layer.weight[:, offset + j].clone()
        layer.weight[:, offset + j] = weight * (sd / sd_k)
        bias += weight * ((mu - mu_k) / sd_k)  # CoralOutput: one score, shift broadcast to every bias


@torch.no_grad()
def rescale_target(net: OsteoNet, fold_scaling: Mapping[str, float], common_scaling: Mapping[str, float]) -> None:
    """Make a regression ``net`` output the target standardised with ``common_scaling``."""
    out = net.head[-1]
    ratio = fold_scaling["std"] / common_scaling["std"]
    shift = (fold_scaling["mean"] - common_scaling["mean"]) / common_scaling["std"]
    out.weight.mul_(ratio)
    out.bias.mul_(ratio).add_(shift)
    if net.covariate_path is not None:
        net.covariate_path.weight.mul_(ratio)


def _output_bias(net: OsteoNet) -> torch.Tensor:
    last = net.head[-1]
    return last.bias
