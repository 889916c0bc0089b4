from __future__ import annotations

import pytest

from osteolens.data.builders import from_class_folders, from_table, open_dataset, patient_from_name
from osteolens.errors import ManifestError


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_class_folders(tmp_path):
    for name in ("normal/N1.png", "normal/N2.jpg", "osteoporosis/OS1.png", "osteoporosis/notes.txt"):
        _touch(tmp_path / name)
    manifest = from_class_folders(tmp_path)
    assert sorted(manifest.frame["image"]) == ["normal/N1.png", "normal/N2.jpg", "osteoporosis/OS1.png"]
    assert dict(zip(manifest.frame["patient_id"], manifest.frame["label"])) == {"N1": "normal", "N2": "normal", "OS1": "osteoporosis"}


def test_class_folders_patient_pattern(tmp_path):
    _touch(tmp_path / "normal" / "3052769_1.png")
    _touch(tmp_path / "normal" / "3052769_2.png")
    manifest = from_class_folders(tmp_path, patient_pattern=r"^(\d+)_")
    assert manifest.frame["patient_id"].tolist() == ["3052769", "3052769"]


def test_empty_root_errors(tmp_path):
    with pytest.raises(ManifestError, match="no class subfolders"):
        from_class_folders(tmp_path)
    with pytest.raises(ManifestError, match="does not match"):
        patient_from_name("abc.png", r"^(\d+)_")


def test_bone_age_csv_with_template(tmp_path):
    (tmp_path / "train.csv").write_text("id,boneage,male\n1377,180,False\n1378,12,True\n")
    manifest = from_table(tmp_path / "train.csv", image_template="images/{id}.png", patient_col="id")
    assert manifest.frame["image"].tolist() == ["images/1377.png", "images/1378.png"]
    assert manifest.frame["sex"].tolist() == ["F", "M"]
    assert manifest.frame["boneage"].tolist() == [180, 12]
    assert "boneage" in manifest.numeric_targets()


def test_biplanar_semicolon_csv(tmp_path):
    (tmp_path / "labels.csv").write_text("file_name;label\nL1_face.dcm;1\nL2_face.dcm;0\n")
    manifest = from_table(tmp_path / "labels.csv", image_col="file_name")
    assert manifest.frame["patient_id"].tolist() == ["L1_face", "L2_face"]
    assert manifest.frame["label"].tolist() == ["1", "0"]


def test_excel(tmp_path):
    import pandas as pd

    pd.DataFrame({"Patient Id": ["N1"], "path": ["N1.png"], "Diagnosis": ["normal"], "Age": [40]}).to_excel(tmp_path / "s.xlsx", index=False)
    manifest = open_dataset(tmp_path / "s.xlsx", image_col="path", patient_col="Patient Id", label_col="Diagnosis", age_col="Age")
    assert manifest.frame.loc[0, ["image", "patient_id", "label", "age"]].tolist() == ["N1.png", "N1", "normal", 40]


def test_missing_column_names_the_flag(tmp_path):
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ManifestError, match="--image-col"):
        from_table(tmp_path / "t.csv")
