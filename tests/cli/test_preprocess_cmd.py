from __future__ import annotations

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from osteolens.cli.main import app
from osteolens.cli.preprocess_cmd import preprocess_manifest
from osteolens.data.manifest import Manifest
from osteolens.io import read_radiograph, write_png
from osteolens.transforms import Pipeline, PreprocessCache

runner = CliRunner()
PIPELINE = """steps:
  - name: percentile_normalise
  - name: pad_to_square
  - name: resize
    params: {size: 24}
"""


def _dataset(root):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(3):
        write_png(rng.random((30, 20 + i), dtype=np.float32), root / "imgs" / f"p{i}.png")
        rows.append({"image": f"imgs/p{i}.png", "patient_id": f"P{i}", "label": "normal", "mask": f"imgs/p{i}.png"})
    (root / "imgs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    rows.append({"image": "imgs/broken.png", "patient_id": "P9", "label": "osteoporosis", "mask": None})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    (root / "pipe.yaml").write_text(PIPELINE)


def test_preprocess_writes_good_files_and_lists_the_bad_one(tmp_path, monkeypatch):
    _dataset(tmp_path)
    monkeypatch.chdir(tmp_path)  # relative paths on the command line
    out = tmp_path / "out"
    result = runner.invoke(app, ["preprocess", "manifest.csv", "--pipeline", "pipe.yaml", "--out", "out"])
    assert result.exit_code == 0, result.output
    assert "broken.png" in result.output and "1 item(s) failed" in result.output
    failures = pd.read_csv(out / "failures.csv")
    assert [p.endswith("broken.png") for p in failures["path"]] == [True]
    manifest = Manifest.read(out / "manifest.csv")
    assert len(manifest) == 3 and list(manifest.frame["patient_id"]) == ["P0", "P1", "P2"]
    assert list(manifest.frame["image"]) == [f"images/imgs/p{i}.png" for i in range(3)]
    assert [manifest.resolve(m).resolve() for m in manifest.frame["mask"]] == [tmp_path / "imgs" / f"p{i}.png" for i in range(3)]
    pipe = Pipeline.from_yaml(tmp_path / "pipe.yaml")
    assert Pipeline.from_json(out / "pipeline.json") == pipe
    for path, source in zip(manifest.image_paths(), manifest.frame["source_image"], strict=True):
        assert path.is_file() and path.suffix == ".png"
        written = read_radiograph(path).pixels
        expected = pipe(read_radiograph(source).pixels)
        assert written.shape == (24, 24)
        assert np.abs(written - expected).max() <= 0.5 / 65535 + 1e-6  # 16-bit PNG rounding


def test_npy_format_and_cache_reuse(tmp_path):
    _dataset(tmp_path)
    source = Manifest.read(tmp_path / "manifest.csv")
    pipe = Pipeline.from_yaml(tmp_path / "pipe.yaml")
    cache = PreprocessCache(tmp_path / "cache")
    first = preprocess_manifest(source, pipe, tmp_path / "a", fmt="npy", cache=cache)
    second = preprocess_manifest(source, pipe, tmp_path / "b", fmt="npy", cache=cache)
    assert (first.cache_hits, second.cache_hits) == (0, 3)
    assert len(first.failures) == len(second.failures) == 1
    for a, b in zip(first.manifest.image_paths(), second.manifest.image_paths(), strict=True):
        assert a.suffix == ".npy"
        np.testing.assert_array_equal(np.load(a), np.load(b))
    np.testing.assert_array_equal(np.load(first.manifest.image_paths()[0]), pipe(read_radiograph(tmp_path / "imgs" / "p0.png").pixels))


def test_bad_pipeline_is_an_error_exit(tmp_path):
    _dataset(tmp_path)
    (tmp_path / "bad.yaml").write_text("- name: sharpen\n")
    result = runner.invoke(
        app, ["preprocess", str(tmp_path / "manifest.csv"), "--pipeline", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code != 0
    assert "sharpen" in str(result.exception) or "sharpen" in result.output


def test_same_stem_different_suffix_get_distinct_outputs(tmp_path):
    rng = np.random.default_rng(1)
    write_png(rng.random((8, 8), dtype=np.float32), tmp_path / "a.png")
    write_png(rng.random((8, 8), dtype=np.float32), tmp_path / "a.tif.png")
    (tmp_path / "a.tiff").write_bytes((tmp_path / "a.tif.png").read_bytes())
    frame = pd.DataFrame({"image": ["a.png", "a.tiff"], "patient_id": ["1", "2"]})
    manifest = Manifest(frame, tmp_path)
    result = preprocess_manifest(manifest, Pipeline(), tmp_path / "out", fmt="npy")
    paths = result.manifest.image_paths()
    assert not result.failures and len(set(paths)) == 2
    np.testing.assert_array_equal(np.load(paths[1]), read_radiograph(tmp_path / "a.tif.png").pixels)
