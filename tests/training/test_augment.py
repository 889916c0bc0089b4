"""Augmentation presets keep the image contract (shape, float32, [0, 1]) and are seeded by torch."""

from __future__ import annotations

import pytest
import torch

from osteolens.errors import ConfigError
from osteolens.training.augment import RandomGamma, build_augmentation


@pytest.mark.parametrize("preset", ["default", "dental", "fracture"])
def test_presets_keep_the_image_contract(preset):
    aug = build_augmentation(preset)
    torch.manual_seed(0)
    image = torch.rand(1, 48, 40)
    out = aug(image)
    assert out.shape == image.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    torch.manual_seed(1)
    first = aug(image)
    torch.manual_seed(1)
    assert torch.equal(first, aug(image))  # reproducible from the global seed (resume relies on it)


def test_none_and_unknown_presets():
    assert build_augmentation("none") is None
    with pytest.raises(ConfigError, match="dental"):
        build_augmentation("mixup")


def test_random_gamma_is_a_power_law():
    torch.manual_seed(3)
    gamma = RandomGamma(0.5, 2.0)
    image = torch.tensor([[[0.25, 0.5, 1.0]]])
    out = gamma(image)
    g = torch.log(out[0, 0, 0]) / torch.log(torch.tensor(0.25))
    assert 0.5 <= float(g) <= 2.0
    torch.testing.assert_close(out, image**g)
