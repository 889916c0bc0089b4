"""Registry: every family rebuilds from {"name", "params"} and computes the same numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from osteolens.errors import ConfigError, TransformError
from osteolens.features import border_mask, build_feature_family, feature_family_names

ALL = ["cnn", "fourier", "fractal", "lbp", "radiomics", "variogram", "variogram_fixed", "wavelet"]


def test_every_family_is_registered():
    assert feature_family_names() == ALL


@pytest.mark.parametrize("name", ["fourier", "fractal", "lbp", "variogram", "variogram_fixed"])
def test_rebuild_from_json_gives_same_features(name):
    rng = np.random.default_rng(1)
    image = rng.random((40, 48))
    family = build_feature_family(name)
    spec = json.loads(json.dumps(family.to_config()))
    again = build_feature_family(spec)
    assert again.to_config() == family.to_config()
    assert again.compute(image) == family.compute(image)


def test_params_are_stored_untouched():
    family = build_feature_family({"name": "variogram", "params": {"fraction": 0.5, "seed": 7}})
    assert family.params["fraction"] == 0.5 and family.params["seed"] == 7 and family.params["lags"] == [1, 2, 3, 4, 5, 6]


def test_unknown_family_and_bad_params_name_the_problem():
    with pytest.raises(ConfigError, match="unknown feature family 'nope'.*fourier"):
        build_feature_family("nope")
    with pytest.raises(ConfigError, match="bad parameters for 'fourier'"):
        build_feature_family({"name": "fourier", "params": {"bogus": 1}})


def test_default_mask_is_whole_image_minus_one_pixel_border():
    mask = border_mask((5, 6))
    assert mask.sum() == 3 * 4
    assert not mask[0].any() and not mask[-1].any() and not mask[:, 0].any() and not mask[:, -1].any()


def test_bad_inputs_raise_transform_errors():
    family = build_feature_family("fourier")
    with pytest.raises(TransformError, match="2-D"):
        family.compute(np.zeros((3, 4, 4)))
    with pytest.raises(TransformError, match="mask shape"):
        family.compute(np.zeros((4, 4)), np.ones((3, 3), bool))
    with pytest.raises(TransformError, match="empty"):
        build_feature_family("lbp").compute(np.zeros((4, 4)), np.zeros((4, 4), bool))
