"""Reading corner tables and mask folders / tables into spines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from osteolens.errors import ManifestError
from osteolens.morphometry import read_landmarks, read_masks

CORNER_NAMES = ("top_left", "top_right", "bottom_left", "bottom_right")


def _rows(image, vertebra, quad, **extra):
    return [{"image": image, "vertebra": vertebra, "corner": c, "x": x, "y": y, **extra} for c, (x, y) in zip(CORNER_NAMES, quad, strict=True)]


def test_read_landmarks_keeps_order_and_reports_bad_rows(tmp_path):
    box = np.array([[10, 10], [50, 10], [10, 35], [50, 35]], dtype=float)
    rows = _rows("a.png", "L2", box + [0, 40], view="LAT", pixel_spacing_mm=0.2, image_height=200, image_width=100)
    rows += _rows("a.png", "L1", box)
    rows = rows[:-1]  # L1 loses its bottom-right corner
    rows.append({"image": "a.png", "vertebra": "L1", "corner": "middle", "x": 1, "y": 1})
    rows.append({"image": "a.png", "vertebra": "L2", "corner": "top_left", "x": 99, "y": 99})
    rows += _rows("b.png", "T1", box)
    pd.DataFrame(rows).to_csv(tmp_path / "marks.csv", index=False)
    Image.fromarray(np.zeros((200, 100), np.uint8)).save(tmp_path / "a.png")

    spines = read_landmarks(tmp_path / "marks.csv")
    assert [s.key for s in spines] == ["a.png", "b.png"]
    a = spines[0]
    assert a.names == ["L2", "L1"]  # file order, checked later
    assert a.view == "lateral" and a.pixel_mm == 0.2 and a.image_shape == (200, 100)
    assert a.image_path == tmp_path / "a.png" and spines[1].image_path is None
    assert np.isnan(a.corners[1, 3]).all() and a.corners[0, 0].tolist() == [10.0, 50.0]
    assert any(p.startswith("unknown_corner") for p in a.problems[1])
    assert any(p.startswith("duplicate_corner") for p in a.problems[0])


def test_read_landmarks_needs_columns(tmp_path):
    pd.DataFrame({"image": ["a"], "x": [1], "y": [2]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ManifestError, match="vertebra, corner"):
        read_landmarks(tmp_path / "bad.csv")


def _block(shape, top, left, height, width, value=255):
    mask = np.zeros(shape, np.uint8)
    mask[top : top + height, left : left + width] = value
    return mask


def test_read_mask_folder(tmp_path):
    spec = tmp_path / "spec01"
    spec.mkdir()
    for k, level in enumerate(("L1", "L2", "L3")):
        Image.fromarray(_block((200, 120), 20 + 50 * k, 30, 40, 60)).save(spec / f"masque_lat_{level}.png")
    Image.fromarray(_block((200, 120), 20, 30, 40, 60)).save(spec / "masque_face_L1.png")
    labels = np.zeros((120, 80), np.uint8)
    labels[70:100, 10:60] = 2
    labels[20:50, 10:60] = 1
    Image.fromarray(labels).save(tmp_path / "labelled.png")
    blobs = _block((120, 80), 10, 10, 30, 50) | _block((120, 80), 60, 12, 30, 50)
    Image.fromarray(blobs).save(tmp_path / "blobs.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")

    spines, failures = read_masks(tmp_path)
    by_key = {s.key: s for s in spines}
    assert [f[0] for f in failures] == [str(tmp_path / "broken.png")]
    lateral = by_key["spec01/masque_lat"]
    assert lateral.view == "lateral" and lateral.names == ["L1", "L2", "L3"]
    # block edges are pixel edges: rows 20..59 -> y from 19.5 to 59.5
    np.testing.assert_allclose(lateral.corners[0], [[29.5, 19.5], [89.5, 19.5], [29.5, 59.5], [89.5, 59.5]], atol=0.05)
    assert by_key["spec01/masque_face"].view == "AP"
    assert by_key["labelled"].names == ["label1", "label2"]
    assert by_key["blobs"].names == ["#0", "#1"]
    assert by_key["blobs"].corners[1, 0, 1] == pytest.approx(59.5, abs=0.05)


def test_read_mask_table(tmp_path):
    (tmp_path / "m").mkdir()
    Image.fromarray(_block((100, 100), 20, 20, 50, 60)).save(tmp_path / "m" / "v1.png")
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(tmp_path / "m" / "empty.png")
    pd.DataFrame(
        {
            "mask": ["m/v1.png", "m/empty.png"],
            "image": ["img1.png", "img2.png"],
            "vertebra": ["L1", "L2"],
            "view": ["LAT", "LAT"],
            "pixel_spacing_mm": [0.4, 0.4],
        }
    ).to_csv(tmp_path / "masks.csv", index=False)
    spines, failures = read_masks(tmp_path / "masks.csv")
    assert failures == []
    good, empty = spines
    assert good.pixel_mm == 0.4 and good.view == "lateral" and good.names == ["L1"]
    assert np.isnan(empty.corners).all() and empty.problems[0][0].startswith("bad_mask")


def test_read_masks_bad_path(tmp_path):
    with pytest.raises(ManifestError, match="no such"):
        read_masks(tmp_path / "nothing")


def test_six_point_landmarks_give_the_middle_height(tmp_path):
    from osteolens.morphometry import measure_inputs

    box = [(10, 10), (50, 10), (10, 40), (50, 40)]  # 30 px tall at the walls
    rows = _rows("a.png", "L1", box) + [
        {"image": "a.png", "vertebra": "L1", "corner": "top_middle", "x": 30, "y": 16},
        {"image": "a.png", "vertebra": "L1", "corner": "bottom_middle", "x": 30, "y": 34},
    ]
    rows += _rows("a.png", "L2", np.array(box) + [0, 40])
    rows.append({"image": "a.png", "vertebra": "L2", "corner": "top_middle", "x": 30, "y": 52})  # alone
    pd.DataFrame(rows).to_csv(tmp_path / "six.csv", index=False)
    (spine,) = read_landmarks(tmp_path / "six.csv")
    assert spine.midpoints.shape == (2, 2, 2)
    assert any(p.startswith("incomplete_middle") for p in spine.problems[1])
    table = measure_inputs([spine], pixel_mm=0.5).vertebra_table().set_index("vertebra")
    assert table.loc["L1", "middle_height_mm"] == pytest.approx(9.0)  # 18 px: biconcave
    assert (table.loc["L1", "genant_grade"], table.loc["L1", "fracture_type"]) == (2, "biconcave")  # exactly 40 %
    assert table.loc["L2", "middle_height_mm"] == pytest.approx(15.0)  # falls back to the endplate midpoints


def test_read_image_table(tmp_path):
    from osteolens.morphometry.inputs import read_image_table

    table = tmp_path / "labels.csv"
    pd.DataFrame(
        {"image": ["images/a.png", "b.png"], "pixel_spacing_mm": [0.2, None], "image_height": [1024, 980]}
    ).to_csv(table, index=False)
    spacing, height = read_image_table(table)
    assert spacing == {"images/a.png": 0.2, "a.png": 0.2}
    assert height == {"images/a.png": 1024.0, "a.png": 1024.0, "b.png": 980.0}
    pd.DataFrame({"image": ["a.png"], "image_height": [5]}).to_csv(table, index=False)
    assert read_image_table(table) == ({}, {"a.png": 5.0})
    pd.DataFrame({"image": ["a.png"], "patient_id": ["p"]}).to_csv(table, index=False)
    with pytest.raises(ManifestError, match="image_height"):
        read_image_table(table)


def test_read_image_header(tmp_path):
    import tifffile

    from osteolens.errors import RadiographReadError
    from osteolens.io import Radiograph, read_radiograph, write_dicom
    from osteolens.morphometry.inputs import read_image_header

    write_dicom(Radiograph(np.zeros((30, 20), np.float32), spacing_mm=(0.25, 0.125)), tmp_path / "a.dcm")
    assert read_image_header(tmp_path / "a.dcm") == ((30, 20), (0.25, 0.125))
    Image.fromarray(np.zeros((30, 20), np.uint8)).save(tmp_path / "a.png")
    assert read_image_header(tmp_path / "a.png") == ((30, 20), None)
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((30, 20, 3), np.uint8))
    assert read_image_header(tmp_path / "a.tif") == ((30, 20), None)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to display: read_radiograph gives 20 x 30
    Image.fromarray(np.zeros((30, 20), np.uint8)).save(tmp_path / "turned.jpg", exif=exif)
    assert read_image_header(tmp_path / "turned.jpg") == ((20, 30), None)
    assert read_radiograph(tmp_path / "turned.jpg").shape == (20, 30)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(10))
    with pytest.raises(RadiographReadError, match="bad.png"):
        read_image_header(tmp_path / "bad.png")
    with pytest.raises(RadiographReadError, match="missing.png"):
        read_image_header(tmp_path / "missing.png")
