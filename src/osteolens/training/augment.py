"""Train-time augmentation with ``torchvision.transforms.v2``, applied to training folds only.

Inputs are ``float32`` tensors ``[1, H, W]`` in [0, 1] (after the cached preprocessing).
Flips are off by default: laterality matters on radiographs (a flipped left knee looks like
a right knee, and burnt-in markers flip too).

| preset | what | origin |
|---|---|---|
| ``none`` | nothing | evaluation, or a baseline |
| ``default`` | rotation +-10 deg, affine (translate 5 %, scale 0.9-1.1), brightness / contrast 0.2, gamma 0.8-1.25 | osteolens |
| ``dental`` | either a vertical flip or a 10-30 deg rotation (either sign), each with p 1/2 | dental seed (001), which doubled each training fold that way |
| ``fracture`` | horizontal flip p 0.4, rotation 30 deg, RandAugment(2, 9) | vertebral fracture seed (004) |
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from osteolens.errors import ConfigError


class RandomGamma(v2.Transform):
    """``x -> x ** gamma`` with ``log(gamma)`` uniform in ``[log(low), log(high)]``.

    torchvision has ``adjust_gamma`` but no random gamma transform; this is that wrapper.
    """

    def __init__(self, low: float = 0.8, high: float = 1.25) -> None:
        super().__init__()
        self.low, self.high = float(low), float(high)

    def make_params(self, flat_inputs: list) -> dict:
        lo, hi = torch.log(torch.tensor(self.low)), torch.log(torch.tensor(self.high))
        return {"gamma": float(torch.exp(lo + (hi - lo) * torch.rand(())))}

    def transform(self, inpt, params: dict):
        return TF.adjust_gamma(inpt, params["gamma"])


class RandomSignedRotation(v2.Transform):
    """Rotation by an angle drawn uniformly from ``[low, high]`` degrees with a random sign."""

    def __init__(self, low: float, high: float) -> None:
        super().__init__()
        self.low, self.high = float(low), float(high)

    def make_params(self, flat_inputs: list) -> dict:
        angle = self.low + (self.high - self.low) * float(torch.rand(()))
        return {"angle": angle if torch.rand(()) < 0.5 else -angle}

    def transform(self, inpt, params: dict):
        return TF.rotate(inpt, params["angle"], interpolation=v2.InterpolationMode.BILINEAR)


def _randaugment(num_ops: int, magnitude: int) -> v2.Transform:
    # RandAugment's posterize / equalize need uint8; convert around it and back to float.
    return v2.Compose(
        [
            v2.ToDtype(torch.uint8, scale=True),
            v2.RandAugment(num_ops=num_ops, magnitude=magnitude),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )


def build_augmentation(preset: str) -> v2.Transform | None:
    """The transform for ``preset`` (None for ``none``); see the module table.

    Example:
        >>> aug = build_augmentation("default")
        >>> aug(torch.rand(1, 32, 32)).shape
        torch.Size([1, 32, 32])
    """
    bilinear = v2.InterpolationMode.BILINEAR
    if preset == "none":
        return None
    if preset == "default":
        return v2.Compose(
            [
                v2.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.9, 1.1), interpolation=bilinear),
                v2.ColorJitter(brightness=0.2, contrast=0.2),
                RandomGamma(0.8, 1.25),
            ]
        )
    if preset == "dental":
        return v2.RandomChoice([v2.RandomVerticalFlip(p=1.0), RandomSignedRotation(10, 30)])
    if preset == "fracture":
        return v2.Compose(
            [
                v2.RandomHorizontalFlip(p=0.4),
                v2.RandomRotation(30, interpolation=bilinear),
                _randaugment(2, 9),
            ]
        )
    raise ConfigError(None, f"augmentation preset {preset!r} is unknown.", "use none, default, dental or fracture.")
