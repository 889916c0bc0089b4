"""Plain gradient saliency (Simonyan et al. 2014), as the dental seed drew it, for comparison.

``S_ij = max_c |dy / dx_cij|``: how much a tiny change of each input pixel changes the
explained score ``y`` (same targets as Grad-CAM). It is noisy and shows edges more than
regions, which is why the dental seed's "Grad-CAM" (in fact this map) looked speckled;
osteolens offers it beside true Grad-CAM, not instead of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from osteolens.explain.cam import _unit_max


def gradient_saliency(
    models: Sequence[torch.nn.Module],
    images: torch.Tensor,
    targets: Sequence[Any],
    tabular: torch.Tensor | None = None,
) -> np.ndarray:
    """Gradient saliency of a fold ensemble, ``float32 [N, H, W]`` (``[N, V, H, W]`` for
    several views) in [0, 1], each map scaled to maximum 1.

    Args:
        models: the fold models; their maps are averaged.
        images: network input ``[N, C, H, W]`` or ``[N, V, C, H, W]``.
        targets: one pytorch-grad-cam target per image (see ``osteolens.explain.cam.cam_target``).
        tabular: covariates ``[N, T]`` when the model takes them.
    """
    total = np.zeros((*images.shape[:-3], *images.shape[-2:]), dtype=np.float32)
    for model in models:
        with torch.enable_grad():
            x = images.detach().clone().requires_grad_(True)
            outputs = model(x, tabular) if tabular is not None else model(x)
            score = sum(target(output) for target, output in zip(targets, outputs))
            (grad,) = torch.autograd.grad(score.sum(), x)
        total += grad.abs().amax(dim=-3).detach().cpu().numpy()
    return _unit_max(total)
