from __future__ import annotations

import pandas as pd
import pytest

from osteolens.data.manifest import Manifest, normalise_sex
from osteolens.errors import ManifestError


def test_required_columns_named_in_error(tmp_path):
    with pytest.raises(ManifestError, match="patient_id"):
        Manifest(pd.DataFrame({"image": ["a.png"]}), tmp_path, "labels.csv")


def test_empty_patient_and_duplicate_rows_rejected(tmp_path):
    with pytest.raises(ManifestError, match=r"row\(s\) \[1\]"):
        Manifest(pd.DataFrame({"image": ["a.png", "b.png"], "patient_id": ["p", None]}), tmp_path)
    with pytest.raises(ManifestError, match="listed twice"):
        Manifest(pd.DataFrame({"image": ["a.png", "a.png"], "patient_id": ["p", "q"]}), tmp_path)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, "M"), (0, "F"), ("male", "M"), ("Female", "F"), ("M", "M"), (1.0, "M"), (None, None), (float("nan"), None)],
)
def test_sex_spellings(value, expected):
    assert normalise_sex(value) == expected


def test_bad_sex_and_age(tmp_path):
    with pytest.raises(ManifestError, match="sex"):
        Manifest(pd.DataFrame({"image": ["a"], "patient_id": ["p"], "sex": ["x"]}), tmp_path)
    with pytest.raises(ManifestError, match="age"):
        Manifest(pd.DataFrame({"image": ["a"], "patient_id": ["p"], "age": ["old"]}), tmp_path)


def test_write_read_round_trip_keeps_paths_resolvable(tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    (images / "a.png").write_bytes(b"x")
    manifest = Manifest(pd.DataFrame({"image": ["a.png"], "patient_id": [7], "label": ["normal"], "age": ["61"]}), images)
    written = manifest.write(tmp_path / "out" / "manifest.csv")
    again = Manifest.read(written)
    assert again.image_paths()[0].resolve() == (images / "a.png").resolve()
    assert again.frame["patient_id"].tolist() == ["7"]
    assert again.frame["age"].tolist() == [61.0]
    assert again.classes == ["normal"]


def test_hashes(tmp_path):
    (tmp_path / "a.png").write_bytes(b"abc")
    manifest = Manifest(pd.DataFrame({"image": ["a.png"], "patient_id": ["p"]}), tmp_path).with_hashes()
    # sha256("abc"), the FIPS 180-2 test vector
    assert manifest.frame["sha256"][0] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
