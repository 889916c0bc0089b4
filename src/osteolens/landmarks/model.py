"""The detector network: a timm backbone's multi-scale features and a small heatmap head.

The backbone runs with ``features_only``; three of its stages (by default strides 4, 8 and
16) are projected to ``head_channels``, upsampled to the finest stride and summed (a small
feature pyramid), then one 3 x 3 convolution block feeds three 1 x 1 outputs:

* 1 channel: centre heatmap logits (bias -2.19, CenterNet's prior of 0.1);
* 2 channels: sub-cell centre offset;
* 8 channels: corner offsets from the centre (TL, TR, BL, BR as x, y), in output cells.

The architecture is the JSON-safe dict :attr:`LandmarkNet.config`; a bundle rebuilds it from
that dict with no weights and loads its own safetensors (see :mod:`osteolens.landmarks.bundle`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from osteolens.errors import ModelError

ARCHITECTURE_KEYS = ("name", "backbone", "out_indices", "head_channels")
"""Keys of a landmark architecture dict; a bundle may carry no others."""

NAME = "landmark_heatmap"


class LandmarkNet(nn.Module):
    """Centre heatmap + offsets on a timm backbone (see the module docstring).

    Args:
        backbone: a timm model name with ``features_only`` support (e.g. ``tf_efficientnet_lite0``).
        out_indices: the backbone stages to use, finest first.
        head_channels: width of the head.
        weights: ``imagenet`` (packaged, offline, :mod:`osteolens.models.weights`), a local
            weight file, or None (random initialisation).

    Raises:
        ModelError: unknown backbone or unusable weights.
    """

    def __init__(
        self,
        backbone: str = "tf_efficientnet_lite0",
        out_indices: tuple[int, ...] | list[int] = (1, 2, 3),
        head_channels: int = 64,
        weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        import timm

        if not timm.is_model(backbone):
            raise ModelError(f"unknown landmark backbone '{backbone}'. Fix: give a timm model name such as "
                             "tf_efficientnet_lite0.")
        kwargs: dict[str, Any] = dict(features_only=True, out_indices=tuple(out_indices), in_chans=1)
        self.weights_info: dict[str, Any] | None = None
        if weights is not None:
            from osteolens.models.weights import resolve_weights

            resolved = resolve_weights(weights, backbone)
            self.weights_info = {"spec": str(weights), **resolved.to_dict()}
            kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(resolved.path)})
        try:
            self.backbone = timm.create_model(backbone, **kwargs)
        except Exception as exc:  # timm raises RuntimeError / OSError / TypeError for unusable weights or stages
            raise ModelError(f"timm could not build the landmark backbone '{backbone}' with stages "
                             f"{list(out_indices)} ({type(exc).__name__}: {exc}). Fix: pick a backbone with "
                             "features_only support and valid out_indices.") from exc
        self.stride = int(self.backbone.feature_info.reduction()[0])
        self.lateral = nn.ModuleList(nn.Conv2d(c, head_channels, 1) for c in self.backbone.feature_info.channels())
        self.block = nn.Sequential(
            nn.Conv2d(head_channels, head_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(head_channels),
            nn.ReLU(inplace=True),
        )
        self.heatmap = nn.Conv2d(head_channels, 1, 1)
        self.offset = nn.Conv2d(head_channels, 2, 1)
        self.corners = nn.Conv2d(head_channels, 8, 1)
        nn.init.constant_(self.heatmap.bias, -math.log((1 - 0.1) / 0.1))
        self.config = {"name": NAME, "backbone": backbone, "out_indices": [int(i) for i in out_indices],
                       "head_channels": int(head_channels)}

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """``image`` ``(N, 1, H, W)`` normalised -> ``heatmap`` logits ``(N, 1, h, w)``,
        ``offset`` ``(N, 2, h, w)``, ``corners`` ``(N, 8, h, w)`` at ``h = H / stride``."""
        features = self.backbone(image)
        size = features[0].shape[-2:]
        fused = sum(F.interpolate(lat(f), size=size, mode="bilinear", align_corners=False) if k else lat(f)
                    for k, (lat, f) in enumerate(zip(self.lateral, features, strict=True)))
        x = self.block(fused)
        return {"heatmap": self.heatmap(x), "offset": self.offset(x), "corners": self.corners(x)}


def build_from_config(config: dict[str, Any]) -> LandmarkNet:
    """Rebuild a :class:`LandmarkNet` (random weights) from its ``config``.

    Raises:
        ModelError: a key outside :data:`ARCHITECTURE_KEYS` or another network name.
    """
    unknown = sorted(set(config) - set(ARCHITECTURE_KEYS))
    if unknown or config.get("name") != NAME:
        raise ModelError(f"landmark architecture {config!r}: expected name '{NAME}' and only the keys "
                         f"{list(ARCHITECTURE_KEYS)}; got extra {unknown}. Fix: re-export the bundle with osteolens.")
    return LandmarkNet(config["backbone"], config["out_indices"], config["head_channels"], weights=None)


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), normalised by the number of peaks."""
    prob = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    positive = target.eq(1).float()
    pos = (torch.log(prob) * (1 - prob) ** 2 * positive).sum()
    neg = (torch.log(1 - prob) * prob**2 * (1 - target) ** 4 * (1 - positive)).sum()
    return -(pos + neg) / positive.sum().clamp(min=1.0)


def gather(maps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``maps`` ``(N, C, h, w)`` read at flat cell ``index`` ``(N, n)`` -> ``(N, n, C)``."""
    n, c = maps.shape[:2]
    flat = maps.reshape(n, c, -1)
    return flat.gather(2, index[:, None, :].expand(n, c, index.shape[1])).permute(0, 2, 1)


def landmark_loss(outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor],
                  corner_weight: float = 0.5) -> tuple[torch.Tensor, dict[str, float]]:
    """Focal loss on the heatmap + L1 on the offsets at the true centres. Returns the total and its parts."""
    heat = focal_loss(outputs["heatmap"], batch["heatmap"])
    mask = batch["mask"][..., None]
    count = mask.sum().clamp(min=1.0)
    offset = (torch.abs(gather(outputs["offset"], batch["index"]) - batch["offset"]) * mask).sum() / (2 * count)
    corners = (torch.abs(gather(outputs["corners"], batch["index"]) - batch["corners"]) * mask).sum() / (8 * count)
    total = heat + offset + corner_weight * corners
    return total, {"heatmap": heat.item(), "offset": offset.item(), "corners": corners.item()}
