"""The written cohort: layout, labels, reproducibility, DICOM round trip, CLI."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from osteolens.data.manifest import Manifest
from osteolens.errors import ConfigError
from osteolens.io import read_radiograph
from osteolens.phantom import COLUMNS, generate_cohort, genant_grade, who_class


def _folder_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    return generate_cohort(tmp_path_factory.mktemp("phantom") / "a", specimens=3, seed=7, size=64)


def test_layout_and_columns(cohort: Manifest) -> None:
    root = cohort.root
    frame = pd.read_csv(root / "labels.csv", dtype={"patient_id": str})
    assert list(frame.columns) == list(COLUMNS)
    assert len(frame) == 3 * 4 * 2
    assert frame["image"].iloc[0] == "dicom/S0001_L1_AP.dcm"
    assert frame["image_png"].iloc[1] == "png/S0001_L1_LAT.png"
    assert frame["mask"].iloc[2] == "masks/S0001_L2_AP.png"
    assert set(frame["patient_id"]) == {"S0001", "S0002", "S0003"}
    assert (frame["study"] == frame["patient_id"]).all()
    for column in ("image", "image_png", "mask"):
        assert all((root / p).is_file() for p in frame[column])
    assert Manifest.read(root / "labels.csv").classes  # readable as a manifest with labels


def test_labels_are_consistent(cohort: Manifest) -> None:
    frame = cohort.frame
    assert np.allclose(frame["t_score"], (frame["bmd"] - 170.0) / 32.0, atol=2e-3)
    assert [who_class(t) for t in frame["t_score"]] == list(frame["label"])
    assert [genant_grade(x) for x in frame["height_loss"]] == list(frame["fracture_grade"])
    heights = frame[["anterior_height_mm", "middle_height_mm", "posterior_height_mm"]].min(axis=1)
    assert np.allclose(1.0 - heights / frame["reference_height_mm"], frame["height_loss"], atol=1e-3)
    assert ((frame["fracture_grade"] == 0) == (frame["fracture_type"] == "none")).all()
    # Both views of a vertebra share its labels but not the acquisition.
    pairs = frame.groupby(["patient_id", "vertebra"])
    assert (pairs["bmd"].nunique() == 1).all() and (pairs["soft_tissue_mm"].nunique() == 2).all()


def test_same_seed_same_bytes_other_seed_differs(cohort: Manifest, tmp_path: Path) -> None:
    again = generate_cohort(tmp_path / "b", specimens=3, seed=7, size=64, jobs=2)
    assert _folder_digest(again.root) == _folder_digest(cohort.root)
    other = generate_cohort(tmp_path / "c", specimens=3, seed=8, size=64)
    a, c = _folder_digest(cohort.root), _folder_digest(other.root)
    changed = [name for name in a if name.startswith(("png/", "dicom/")) and a[name] != c[name]]
    assert len(changed) == 2 * 24


def test_dicom_reads_back_bone_bright_equal_to_png(cohort: Manifest) -> None:
    frame = cohort.frame
    assert set(frame["photometric"]) == {"MONOCHROME1", "MONOCHROME2"}
    for row in frame.itertuples():
        dicom = read_radiograph(cohort.resolve(row.image))
        png = read_radiograph(cohort.resolve(row.image_png))
        assert dicom.meta.photometric == row.photometric
        assert np.abs(dicom.pixels - png.pixels).max() <= 1.0 / 65535
        assert dicom.spacing_mm == pytest.approx((row.pixel_spacing_mm, row.pixel_spacing_mm))
        assert dicom.meta.patient_id == row.patient_id and dicom.meta.sex == row.sex
        assert dicom.meta.view == row.view
        mask = read_radiograph(cohort.resolve(row.mask)).pixels > 0.5
        # bone bright: the vertebral body is brighter than the background in every file
        assert dicom.pixels[mask].mean() > dicom.pixels[~mask].mean()


def test_png_only_and_bad_format(tmp_path: Path) -> None:
    manifest = generate_cohort(tmp_path / "p", specimens=1, seed=0, size=64, formats="png")
    assert manifest.frame["image"].str.startswith("png/").all()
    assert not (tmp_path / "p" / "dicom").exists()
    with pytest.raises(ConfigError, match="jpeg"):
        generate_cohort(tmp_path / "q", specimens=1, formats=("jpeg",))


def test_cli_writes_cohort_and_prints_classes(tmp_path: Path) -> None:
    from osteolens.cli.main import app

    result = CliRunner().invoke(app, ["phantom", "--specimens", "2", "--out", str(tmp_path / "cli"), "--seed", "3", "--size", "64", "--format", "png"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "cli" / "labels.csv")
    assert len(frame) == 16
    assert "osteoporosis" in result.output and "normal" in result.output


def test_cli_help_has_an_example() -> None:
    from osteolens.cli.main import app

    result = CliRunner().invoke(app, ["phantom", "--help"])
    assert result.exit_code == 0
    assert "Example: osteolens phantom" in result.output
