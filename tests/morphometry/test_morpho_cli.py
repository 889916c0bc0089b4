"""``osteolens morphometry``: tables, Cobb file, overlays and problems, from landmarks or masks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from osteolens.cli.main import app
from osteolens.errors import ConfigError
from osteolens.morphometry import cobb_angles

runner = CliRunner()


@pytest.mark.realdata
def test_aasce_landmarks_with_overlays(aasce, tmp_path):
    root, labels, landmarks = aasce
    with_png = labels[[(root / image).is_file() for image in labels["image"]]]
    chosen = pd.concat([with_png[with_png["qc_flags"].isna()].head(2), with_png[with_png["qc_flags"].notna()].head(1)])
    subset = landmarks[landmarks["image"].isin(chosen["image"])]
    subset.to_csv(tmp_path / "marks.csv", index=False)

    out = tmp_path / "out" / "results.csv"
    result = runner.invoke(
        app,
        ["morphometry", "--landmarks", str(tmp_path / "marks.csv"), "--images", str(root), "--view", "AP",
         "--out", str(out), "--plot", str(tmp_path / "plots")],
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert len(table) == 3 * 17
    assert table["anterior_height_px"].isna().all() and table["left_height_px"].notna().all()
    flagged = chosen[chosen["qc_flags"].notna()]["image"].iloc[0]
    assert table.loc[table["spine"] == flagged, "problems"].notna().any()
    assert table.loc[table["spine"] != flagged, "problems"].isna().all()

    cobb = pd.read_csv(tmp_path / "out" / "cobb.csv")
    assert sorted(cobb["spine"]) == sorted(chosen["image"])
    assert cobb.loc[cobb["spine"] == flagged, "note"].str.contains("annotation problem").all()
    assert cobb.loc[cobb["spine"] != flagged, "note"].isna().all()
    for row in chosen[chosen["qc_flags"].isna()].itertuples():
        points = landmarks[landmarks["image"] == row.image].sort_values("point_index")[["x", "y"]].to_numpy()
        expected = cobb_angles(points, image_height=row.out_height).as_array()
        got = cobb.loc[cobb["spine"] == row.image, ["pt", "mt", "tl"]].to_numpy()[0]
        np.testing.assert_allclose(got, expected, atol=1e-6)
        # output pixels are nearly square, so these are the published angles to a fraction of a degree
        np.testing.assert_allclose(got, [row.cobb_pt, row.cobb_mt, row.cobb_tl], atol=0.5)

    pngs = sorted((tmp_path / "plots").glob("*.png"))
    assert len(pngs) == 3
    for png in pngs:
        image = np.asarray(Image.open(png))
        source = chosen[chosen["image"].str.contains(png.stem.split("_", 1)[1])].iloc[0]
        assert image.shape == (source.out_height, source.out_width, 3)
        assert (image[..., 0] != image[..., 2]).any()  # coloured drawing on the grey radiograph


def _lateral_table(path):
    """Three lateral vertebrae (0.2 mm pixels); L2 has a 36 % anterior wedge; L3 misses a corner."""
    rows = []
    for k, (level, ha) in enumerate((("L1", 125.0), ("L2", 80.0), ("L3", 125.0))):
        top = 50 + 150 * k
        quad = [(40, top + 125 - ha), (200, top), (40, top + 125), (200, top + 125)]
        for corner, (x, y) in zip(("top_left", "top_right", "bottom_left", "bottom_right"), quad, strict=True):
            if level == "L3" and corner == "bottom_right":
                continue
            rows.append({"image": "spine.png", "vertebra": level, "corner": corner, "x": x, "y": y})
    pd.DataFrame(rows).to_csv(path, index=False)


def test_lateral_grades_and_incomplete_annotation(tmp_path):
    _lateral_table(tmp_path / "lat.csv")
    out = tmp_path / "res.csv"
    result = runner.invoke(
        app,
        ["morphometry", "--landmarks", str(tmp_path / "lat.csv"), "--pixel-mm", "0.2", "--anterior", "left",
         "--out", str(out), "--plot", str(tmp_path / "plots")],
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out).set_index("vertebra")
    assert table.loc["L1", "anterior_height_mm"] == pytest.approx(25.0)
    assert table.loc["L2", "anterior_height_mm"] == pytest.approx(16.0)
    assert table.loc["L2", "posterior_height_mm"] == pytest.approx(25.0)
    assert (table.loc["L2", "genant_grade"], table.loc["L2", "fracture_type"]) == (2, "wedge")
    assert table.loc["L2", "height_loss"] == pytest.approx(0.36)
    assert np.isnan(table.loc["L3", "anterior_height_mm"])
    assert "missing_corner" in table.loc["L3", "problems"]
    assert "missing_corner" in result.output
    assert not (tmp_path / "cobb.csv").exists()  # lateral only: no Cobb table
    overlay = np.asarray(Image.open(tmp_path / "plots" / "spine.png"))
    red = (overlay[..., 0] > 200) & (overlay[..., 1] < 60) & (overlay[..., 2] < 60)
    assert red.sum() > 100  # the worst vertebra's frame and caption


def test_masks_folder(tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    for k, (level, ha) in enumerate((("L1", 50), ("L2", 30))):
        mask = np.zeros((160, 100), np.uint8)
        top = 10 + 70 * k
        for col in range(20, 80):  # anterior wall (left) lower for L2
            h = ha + (50 - ha) * (col - 20) / 59
            mask[int(round(top + 50 - h)) : top + 50, col] = 255
        Image.fromarray(mask).save(masks / f"case_lat_{level}.png")
    out = tmp_path / "res.csv"
    result = runner.invoke(app, ["morphometry", "--masks", str(masks), "--pixel-mm", "0.5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out).set_index("vertebra")
    assert table.loc["L1", "view"] == "lateral"
    assert table.loc["L1", "anterior_height_mm"] == pytest.approx(25.0, abs=0.5)
    assert table.loc["L2", "anterior_height_mm"] == pytest.approx(15.0, abs=0.5)
    assert table.loc["L2", "genant_grade"] == 3  # 40 % lower anterior wall


def test_needs_exactly_one_input(tmp_path):
    result = runner.invoke(app, ["morphometry", "--out", str(tmp_path / "r.csv")])
    assert isinstance(result.exception, ConfigError)


def test_pixel_spacing_from_the_dicom_header(tmp_path):
    from osteolens.io import Radiograph, write_dicom

    write_dicom(Radiograph(np.zeros((500, 260), np.float32), spacing_mm=(0.25, 0.125)), tmp_path / "spine.dcm")
    _lateral_table(tmp_path / "lat.csv")
    table = pd.read_csv(tmp_path / "lat.csv")
    table["image"] = "spine.dcm"
    table.to_csv(tmp_path / "lat.csv", index=False)
    out = tmp_path / "res.csv"
    result = runner.invoke(app, ["morphometry", "--landmarks", str(tmp_path / "lat.csv"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    row = pd.read_csv(out).set_index("vertebra").loc["L1"]
    assert (row["pixel_mm_row"], row["pixel_mm_col"]) == (0.25, 0.125)
    assert row["anterior_height_mm"] == pytest.approx(125 * 0.25)  # a vertical wall: rows
    assert pd.isna(row["problems"])  # inside the 500 x 260 image: no problem


def test_pixel_spacing_from_a_manifest(tmp_path):
    _lateral_table(tmp_path / "lat.csv")
    pd.DataFrame({"image": ["scans/spine.png"], "patient_id": ["p1"], "pixel_spacing_mm": [0.15]}).to_csv(
        tmp_path / "manifest.csv", index=False
    )
    out = tmp_path / "res.csv"
    result = runner.invoke(
        app, ["morphometry", "--landmarks", str(tmp_path / "lat.csv"), "--manifest", str(tmp_path / "manifest.csv"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    row = pd.read_csv(out).set_index("vertebra").loc["L1"]
    assert row["pixel_mm_row"] == 0.15 and row["anterior_height_mm"] == pytest.approx(125 * 0.15)


def _cobb(tmp_path, marks, *options):
    out = tmp_path / "res.csv"
    result = runner.invoke(app, ["morphometry", "--landmarks", str(marks), "--out", str(out), *options])
    assert result.exit_code == 0, result.output
    return pd.read_csv(tmp_path / "cobb.csv").iloc[0]


def test_cobb_image_height_from_option_column_or_manifest(tmp_path, s_spine_table):
    from osteolens.morphometry.spine import HEIGHT_FALLBACK_NOTE

    marks = s_spine_table(tmp_path / "marks.csv")  # names s.png, which is not there
    row = _cobb(tmp_path, marks)
    assert row["tl"] == 0.0 and (row["tl_upper"], row["tl_lower"]) == ("T1", "T1")  # the fallback branch
    assert row["note"] == HEIGHT_FALLBACK_NOTE

    expected = [50.0, 35.0, 19.0]  # by hand: differences of the tilts (conftest.S_TILTS)
    row = _cobb(tmp_path, marks, "--image-height", "800")
    assert row[["pt", "mt", "tl"]].to_numpy(float) == pytest.approx(expected, abs=1e-5)
    assert (row["tl_upper"], row["tl_lower"]) == ("T12", "L5") and pd.isna(row["note"])

    row = _cobb(tmp_path, s_spine_table(tmp_path / "h.csv", image_height=800))  # a column, no width
    assert row["tl"] == pytest.approx(19.0, abs=1e-5) and pd.isna(row["note"])
    row = _cobb(tmp_path, s_spine_table(tmp_path / "h.csv", image_height=800), "--image-height", "700")
    assert row["tl"] == 0.0 and pd.isna(row["note"])  # the option wins, and the height is known

    labels = tmp_path / "labels.csv"
    pd.DataFrame({"image": ["images/s.png"], "image_height": [800]}).to_csv(labels, index=False)
    row = _cobb(tmp_path, marks, "--manifest", str(labels))  # matched by file name
    assert row["tl"] == pytest.approx(19.0, abs=1e-5) and pd.isna(row["note"])


def test_cobb_image_height_from_the_header_without_decoding(tmp_path, s_spine_table, monkeypatch):
    from osteolens.io import Radiograph, write_dicom
    from osteolens.morphometry import batch

    def no_decoding(path):
        raise AssertionError(f"{path} was decoded")

    monkeypatch.setattr(batch, "read_radiograph", no_decoding)
    Image.fromarray(np.zeros((800, 400), np.uint8)).save(tmp_path / "s.png")
    row = _cobb(tmp_path, s_spine_table(tmp_path / "marks.csv"))
    assert row["tl"] == pytest.approx(19.0, abs=1e-5) and pd.isna(row["note"])

    write_dicom(Radiograph(np.zeros((800, 400), np.float32), spacing_mm=(0.2, 0.2)), tmp_path / "s.dcm")
    row = _cobb(tmp_path, s_spine_table(tmp_path / "marks.csv", image="s.dcm"))
    assert row["tl"] == pytest.approx(19.0, abs=1e-5) and pd.isna(row["note"])
    vertebra = pd.read_csv(tmp_path / "res.csv").iloc[0]
    assert vertebra["pixel_mm_row"] == 0.2 and vertebra["middle_height_mm"] == pytest.approx(20 * 0.2)
