from __future__ import annotations

import json

import numpy as np
import pytest

from osteolens.errors import ConfigError, TransformError
from osteolens.transforms import Pipeline, build_transform

CONFIG = [
    {"name": "percentile_normalise", "params": {"low": 0.5, "high": 99.5}},
    {"name": "crop_to_content", "params": {"low": 0.1, "high": 1.0, "margin": 2}},
    {"name": "pad_to_square", "params": {"value": 0.0}},
    {"name": "rolling_ball", "params": {"radius": 10}},
    {"name": "clahe"},
    {"name": "resize", "params": {"size": 32}},
]


def _image() -> np.ndarray:
    rng = np.random.default_rng(3)
    image = np.zeros((50, 70), np.float32)
    image[5:45, 10:60] = 0.4 + 0.3 * rng.random((40, 50))
    return image


def test_from_config_runs_steps_in_order():
    pipe = Pipeline.from_config(CONFIG)
    assert [s.name for s in pipe] == [c["name"] for c in CONFIG]
    out = pipe(_image())
    expected = _image()
    for step in CONFIG:
        expected = build_transform(step)(expected)
    assert out.shape == (32, 32) and out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_round_trip_through_text_and_files_replays_exactly(tmp_path, fmt):
    pipe = Pipeline.from_config(CONFIG)
    text = getattr(pipe, f"to_{fmt}")()
    path = tmp_path / f"pipe.{fmt}"
    getattr(pipe, f"to_{fmt}")(path)
    loader = getattr(Pipeline, f"from_{fmt}")
    for source in (text, path, str(path)):
        again = loader(source)
        assert again == pipe and again.fingerprint() == pipe.fingerprint()
        np.testing.assert_array_equal(again(_image()), pipe(_image()))
    assert Pipeline.from_file(path) == pipe


def test_config_holds_every_parameter_with_defaults_filled_in():
    config = Pipeline.from_config([{"name": "clahe"}]).to_config()
    assert config == [{"name": "clahe", "params": {"clip_limit": 0.01, "kernel_size": None}}]
    json.dumps(config)  # JSON-ready


def test_fingerprint_is_canonical_and_changes_with_parameters():
    a = Pipeline.from_config([{"name": "resize", "params": {"size": 32}}])
    b = Pipeline.from_config([{"name": "resize", "params": {"size": 32, "factor": None}}])
    c = Pipeline.from_config([{"name": "resize", "params": {"size": 33}}])
    d = Pipeline.from_config([{"name": "percentile_normalise", "params": {"low": 1, "high": 99}}])
    e = Pipeline.from_config([{"name": "percentile_normalise", "params": {"low": 1.0, "high": 99.0}}])
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert d.fingerprint() == e.fingerprint()
    assert len(a.fingerprint()) == 64
    # Order matters.
    ab = Pipeline.from_config([{"name": "invert"}, {"name": "pad_to_square"}])
    ba = Pipeline.from_config([{"name": "pad_to_square"}, {"name": "invert"}])
    assert ab.fingerprint() != ba.fingerprint()


def test_accepts_a_bare_list_and_an_empty_pipeline_is_identity():
    pipe = Pipeline.from_yaml("- name: invert\n")
    assert [s.name for s in pipe] == ["invert"]
    image = _image()
    np.testing.assert_array_equal(Pipeline()(image), image)


def test_errors_name_the_step_and_file(tmp_path):
    with pytest.raises(TransformError, match="pipeline step 1: unknown transform 'blur'"):
        Pipeline.from_config([{"name": "invert"}, {"name": "blur"}])
    path = tmp_path / "bad.yaml"
    path.write_text("steps:\n  - name: resize\n    params: {size: 0}\n")
    with pytest.raises(TransformError, match="bad.yaml: pipeline step 0"):
        Pipeline.from_yaml(path)
    with pytest.raises(ConfigError, match="missing.json"):
        Pipeline.from_json(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        Pipeline.from_json("{steps: ")
    with pytest.raises(TransformError, match="must be a list of steps"):
        Pipeline.from_config({"name": "invert"})
