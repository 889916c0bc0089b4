"""Extraction over a manifest: ROI modes, failures, outputs, sidecar, CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from skimage.exposure import equalize_hist
from typer.testing import CliRunner

from osteolens.data.manifest import Manifest
from osteolens.features import ExtractionConfig, build_feature_family, extract_features, load_feature_table
from osteolens.io import read_radiograph, write_png
from osteolens.transforms.roi import largest_rectangle_in_mask

FAMILIES = ["fourier", "variogram", "lbp"]


@pytest.fixture
def dataset(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(4):
        image = rng.random((60, 50))
        mask = np.zeros((60, 50))
        mask[10 + i : 50, 8 : 40 - i] = 1.0
        mask[10 + i : 20, 8:15] = 0.0  # a notch, so the rectangle is not the bounding box
        write_png(image, tmp_path / f"img{i}.png", bits=8)
        write_png(mask, tmp_path / f"mask{i}.png", bits=8)
        rows.append({"image": f"img{i}.png", "mask": f"mask{i}.png", "patient_id": f"P{i // 2}", "label": "ab"[i % 2], "bmd": 100.0 + i, "sex": "MF"[i % 2], "vertebra": f"L{i + 1}"})
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    rows.append({"image": "broken.png", "mask": "mask0.png", "patient_id": "P9", "label": "a", "bmd": 90.0, "sex": "M", "vertebra": "L1"})
    frame = pd.DataFrame(rows)
    frame.to_csv(tmp_path / "manifest.csv", index=False)
    return tmp_path


def test_rectangle_roi_matches_manual_pipeline_and_failures_are_listed(dataset):
    manifest = Manifest.read(dataset / "manifest.csv")
    result = extract_features(manifest, ExtractionConfig(families=FAMILIES, roi="auto"))
    assert result.roi == "rectangle"
    assert len(result.table) == 4
    assert [p.endswith("broken.png") for p, _ in result.failures] == [True]
    assert "broken.png" in result.failures[0][0] and result.failures[0][1]
    assert result.feature_columns[:2] == ["fourier_rms", "fourier_fms"]
    assert "variogram_isv" in result.feature_columns and "lbp_P8_R1_9" in result.feature_columns
    assert list(result.table.columns[:7]) == ["image", "mask", "patient_id", "label", "bmd", "sex", "vertebra"]

    pixels = read_radiograph(dataset / "img1.png").pixels
    mask = read_radiograph(dataset / "mask1.png").pixels > 0.5
    top, left, bottom, right = largest_rectangle_in_mask(mask)
    roi = equalize_hist(pixels[top:bottom, left:right].astype(np.float64), nbins=256)
    expected = build_feature_family("fourier").compute(roi)
    row = result.table.set_index("image").loc["img1.png"]
    assert row["fourier_rms"] == pytest.approx(expected["fourier_rms"], rel=1e-12)
    assert row["fourier_fms"] == pytest.approx(expected["fourier_fms"], rel=1e-12)


def test_mask_roi_uses_the_mask_and_none_uses_the_image(dataset):
    manifest = Manifest.read(dataset / "manifest.csv").subset([True] * 4 + [False])
    lbp_mask = extract_features(manifest, ExtractionConfig(families=["lbp"], roi="mask", equalise=False))
    lbp_none = extract_features(manifest, ExtractionConfig(families=["lbp"], roi="none", equalise=False))
    pixels = read_radiograph(dataset / "img0.png").pixels
    mask = read_radiograph(dataset / "mask0.png").pixels > 0.5
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    expected = build_feature_family("lbp").compute(pixels[box], mask[box])
    assert lbp_mask.table.loc[0, "lbp_P8_R1_0"] == pytest.approx(expected["lbp_P8_R1_0"])
    assert lbp_none.table.loc[0, "lbp_P8_R1_0"] == pytest.approx(build_feature_family("lbp").compute(pixels)["lbp_P8_R1_0"])


def test_outputs_and_sidecar(dataset):
    manifest = Manifest.read(dataset / "manifest.csv")
    result = extract_features(manifest, ExtractionConfig(families=["fourier"], roi="rectangle", max_size=16))
    written = result.write(dataset / "out" / "features.parquet", csv=True, excel=True, manifest_source="manifest.csv")
    names = sorted(p.name for p in written)
    assert names == ["features.csv", "features.failures.csv", "features.json", "features.parquet", "features.xlsx"]
    table, sidecar = load_feature_table(dataset / "out" / "features.parquet")
    pd.testing.assert_frame_equal(table, result.table, check_dtype=False)
    assert pd.read_excel(dataset / "out" / "features.xlsx")["fourier_rms"].tolist() == pytest.approx(table["fourier_rms"].tolist())
    assert sidecar["feature_columns"] == ["fourier_rms", "fourier_fms"]
    assert sidecar["config"]["families"] == [{"name": "fourier", "params": {"scale": 255.0, "quantise": True, "log_base": "e", "eps": 1e-6}}]
    assert sidecar["config"]["max_size"] == 16 and sidecar["roi_used"] == "rectangle"
    assert sidecar["n_failed"] == 1 and sidecar["failures"][0]["path"].endswith("broken.png")
    assert {"numpy", "pyradiomics-bhklab", "PyWavelets", "scikit-image", "SimpleITK"} <= set(sidecar["versions"])


@pytest.mark.slow
def test_two_workers_give_the_same_table(dataset):
    manifest = Manifest.read(dataset / "manifest.csv")
    config = ExtractionConfig(families=FAMILIES, roi="rectangle")
    one = extract_features(manifest, config, jobs=1)
    two = extract_features(manifest, config, jobs=2)
    pd.testing.assert_frame_equal(one.table, two.table)
    assert one.failures == two.failures


def test_cli_extract(dataset):
    from osteolens.cli.main import app

    out = dataset / "cli" / "features.parquet"
    result = CliRunner().invoke(app, ["features", "extract", str(dataset / "manifest.csv"), "--families", "fourier,variogram_fixed", "--roi", "none", "--out", str(out), "--csv"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out.with_suffix(".csv"))
    assert len(table) == 4 and "variogram_fixed_isv" in table.columns
    assert json.loads(out.with_suffix(".json").read_text())["roi_used"] == "none"
    assert out.with_name("features.failures.csv").is_file()


def test_roi_needing_masks_without_mask_column_is_a_config_error(dataset):
    from osteolens.errors import ConfigError

    frame = pd.read_csv(dataset / "manifest.csv").drop(columns=["mask"])
    with pytest.raises(ConfigError, match="needs a 'mask' column"):
        extract_features(Manifest(frame, dataset), ExtractionConfig(families=["fourier"], roi="rectangle"))


def test_box_roi_crops_the_box(dataset):
    frame = pd.read_csv(dataset / "manifest.csv").drop(columns=["mask"]).iloc[:2]
    frame = frame.assign(box_x=[5, 10], box_y=[8, 3], box_width=[20, 30], box_height=[25, 40])
    result = extract_features(Manifest(frame, dataset), ExtractionConfig(families=["fourier"], roi="auto", equalise=False))
    assert result.roi == "box" and not result.failures
    pixels = read_radiograph(dataset / "img1.png").pixels
    expected = build_feature_family("fourier").compute(pixels[3:43, 10:40])
    assert result.table.loc[1, "fourier_rms"] == pytest.approx(expected["fourier_rms"], rel=1e-12)
