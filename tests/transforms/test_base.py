from __future__ import annotations

import numpy as np
import pytest

from osteolens.errors import TransformError
from osteolens.transforms import available_transforms, build_transform

EXPECTED = {
    "percentile_normalise", "equalise_histogram", "clahe", "rolling_ball",
    "crop_to_content", "pad_to_square", "resize", "invert",
}
# Parameters that every transform can be built with (resize needs one of size / factor).
EXAMPLE_PARAMS = {"resize": {"factor": 0.5}, "rolling_ball": {"radius": 8}}


def _image() -> np.ndarray:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:40, 0:52]
    return (0.3 + 0.2 * np.sin(x / 7.0) * np.cos(y / 9.0) + 0.1 * rng.random((40, 52))).astype(np.float32)


def test_all_contract_names_registered():
    assert EXPECTED <= set(available_transforms())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_round_trip_gives_identical_output(name):
    transform = build_transform({"name": name, "params": EXAMPLE_PARAMS.get(name, {})})
    config = transform.to_config()
    assert config["name"] == name and set(config) == {"name", "params"}
    rebuilt = build_transform(config)
    assert rebuilt == transform and rebuilt.to_config() == config
    out = transform(_image())
    assert out.dtype == np.float32 and out.ndim == 2
    np.testing.assert_array_equal(out, rebuilt(_image()))


def test_unknown_name_lists_valid_choices():
    with pytest.raises(TransformError, match="unknown transform 'sharpen'.*percentile_normalise"):
        build_transform({"name": "sharpen"})


def test_unknown_parameter_names_the_transform_and_valid_ones():
    with pytest.raises(TransformError, match=r"'percentile_normalise'.*\['lo'\].*\['low', 'high'\]"):
        build_transform({"name": "percentile_normalise", "params": {"lo": 1}})


@pytest.mark.parametrize(
    "config",
    [
        {"name": "percentile_normalise", "params": {"low": 90, "high": 10}},
        {"name": "resize", "params": {}},
        {"name": "resize", "params": {"size": 10, "factor": 0.5}},
        {"name": "resize", "params": {"size": [1, 2, 3]}},
        {"name": "rolling_ball", "params": {"radius": -3}},
        {"name": "rolling_ball", "params": {"exact": "yes"}},
        {"name": "clahe", "params": {"clip_limit": "high"}},
        {"name": "crop_to_content", "params": {"margin": -1}},
        {"name": "invert", "params": {"x": 1}},
        {"nom": "invert"},
        {"name": "invert", "parameters": {}},
    ],
)
def test_bad_configs_raise_transform_error(config):
    with pytest.raises(TransformError):
        build_transform(config)


def test_input_must_be_2d():
    with pytest.raises(TransformError, match="invert: expected a 2-D"):
        build_transform({"name": "invert"})(np.zeros((2, 2, 3), np.float32))


def test_output_is_float32_for_float64_input():
    out = build_transform({"name": "invert"})(np.zeros((2, 3)))
    assert out.dtype == np.float32 and out.tolist() == [[1.0] * 3] * 2
