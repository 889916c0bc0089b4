"""Malformed landmark and image tables: encodings, missing columns, non-numeric values, NULs."""

from __future__ import annotations

import math

import pytest

from osteolens.errors import ManifestError, OsteolensError
from osteolens.morphometry import read_landmarks
from osteolens.morphometry.inputs import read_image_table

CORNERS = (("top_left", 10, 10), ("top_right", 50, 12), ("bottom_left", 10, 40), ("bottom_right", 50, 42))
ROWS = ["image,vertebra,corner,x,y,image_height,pixel_spacing_mm"] + [
    f"Jérôme.png,{level},{corner},{x},{y + dy},512,0.2" for level, dy in (("L1", 0), ("L2", 40)) for corner, x, y in CORNERS
]
TEXT = "\n".join(ROWS) + "\n"


def _table(tmp_path, data: bytes, name: str = "landmarks.csv"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_a_clean_table_reads_its_values(tmp_path):
    [spine] = read_landmarks(_table(tmp_path, TEXT.encode()))
    assert (spine.key, spine.names, spine.image_height, spine.pixel_mm) == ("Jérôme.png", ["L1", "L2"], 512.0, 0.2)
    assert spine.corners[1].tolist() == [[10, 50], [50, 52], [10, 80], [50, 82]]
    assert read_image_table(_table(tmp_path, TEXT.encode())) == ({"Jérôme.png": 0.2}, {"Jérôme.png": 512.0})


@pytest.mark.parametrize("codec", ["latin-1", "utf-16"])
def test_other_encodings_are_manifest_errors_naming_the_file(tmp_path, codec):
    path = _table(tmp_path, TEXT.encode(codec))
    for reader in (read_landmarks, read_image_table):
        with pytest.raises(ManifestError, match=r"landmarks.csv: cannot read the .*codec can't decode"):
            reader(path)


@pytest.mark.parametrize("text", [TEXT.replace(",corner,", ",kind,"), TEXT.replace("vertebra", "verte\0bra")],
                         ids=["renamed", "nul-in-header"])
def test_a_missing_column_is_named(tmp_path, text):
    with pytest.raises(ManifestError, match=r"missing column\(s\) (corner|vertebra)\. Fix: use columns image"):
        read_landmarks(_table(tmp_path, text.encode()))


def test_a_non_numeric_coordinate_leaves_that_corner_missing(tmp_path):
    [spine] = read_landmarks(_table(tmp_path, TEXT.replace(",50,12,", ",abc,12,").encode()))
    assert math.isnan(spine.corners[0, 1, 0]) and spine.corners[0, 1, 1] == 12.0
    assert spine.corners[0, 0].tolist() == [10, 10] and spine.corners[1].tolist() == [[10, 50], [50, 52], [10, 80], [50, 82]]


def test_non_numeric_image_values_are_dropped_from_the_image_table(tmp_path):
    spacing, height = read_image_table(_table(tmp_path, TEXT.replace(",512,", ",tall,").encode()))
    assert spacing == {"Jérôme.png": 0.2} and height == {}


@pytest.mark.parametrize(("text", "column"), [(TEXT.replace(",512,", ",tall,"), "image_height"),
                                              (TEXT.replace(",512,", ",inf,"), "image_height"),
                                              (TEXT.replace(",0.2\n", ",x\n"), "pixel spacing")], ids=["height", "inf", "spacing"])
def test_non_numeric_image_values_name_the_image_and_column(tmp_path, text, column):
    with pytest.raises(ManifestError, match=f"image Jérôme.png: {column} is '.*', not a positive number"):
        read_landmarks(_table(tmp_path, text.encode()))
