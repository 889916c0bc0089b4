"""Malformed label tables: encodings, missing columns, non-numeric values, NULs, damaged files, formulas."""

from __future__ import annotations

import io
import zipfile

import openpyxl
import pytest

from osteolens.data import Manifest, open_dataset
from osteolens.errors import ManifestError

TEXT = "image,patient_id,label,age,sex\nimages/a.png,Jérôme,normal,61,F\nimages/b.png,p2,osteoporosis,70.5,M\n"
EXPECTED = {"image": ["images/a.png", "images/b.png"], "patient_id": ["Jérôme", "p2"],
            "label": ["normal", "osteoporosis"], "age": [61.0, 70.5], "sex": ["F", "M"]}


def _write(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "data",
    [TEXT.encode(), b"\xef\xbb\xbf" + TEXT.encode(), TEXT.encode("utf-16"), TEXT.replace(",", "\t").encode("utf-16"),
     TEXT.replace(",", ";").encode("utf-16-be").join([b"\xfe\xff", b""])],
    ids=["utf8", "utf8-bom", "utf16-bom", "utf16-bom-tab", "utf16be-bom-semicolon"],
)
def test_utf8_and_utf16_with_bom_read_the_same_table(tmp_path, data):
    assert open_dataset(_write(tmp_path, "labels.csv", data)).frame.to_dict("list") == EXPECTED


def test_latin1_is_refused_with_the_encoding_fix(tmp_path):
    path = _write(tmp_path, "labels.csv", TEXT.encode("latin-1"))
    with pytest.raises(ManifestError, match=r"labels.csv: is not valid utf-8 text \(line 2, byte 45: invalid continuation byte\). Fix: .*'CSV UTF-8'"):
        open_dataset(path)
    with pytest.raises(ManifestError, match="labels.csv: cannot be read as a manifest \\(UnicodeDecodeError"):
        Manifest.read(path)


@pytest.mark.parametrize("text", [TEXT.replace("normal", "nor\0mal"), TEXT.replace("label", "la\0bel")], ids=["cell", "header"])
def test_embedded_nul_bytes_are_refused(tmp_path, text):
    with pytest.raises(ManifestError, match="contains NUL bytes"):
        open_dataset(_write(tmp_path, "labels.csv", text.encode()))


def test_utf16_without_bom_is_refused_for_its_nul_bytes(tmp_path):
    with pytest.raises(ManifestError, match="UTF-16 text without a byte-order mark"):
        open_dataset(_write(tmp_path, "labels.csv", TEXT.encode("utf-16-le")))


def test_missing_column_and_non_numeric_value(tmp_path):
    with pytest.raises(ManifestError, match=r"column 'image' not found; the table has \['file', 'patient_id'"):
        open_dataset(_write(tmp_path, "a.csv", TEXT.replace("image,", "file,", 1).encode()))
    with pytest.raises(ManifestError, match=r"non-numeric age in row\(s\) \[1\]"):
        open_dataset(_write(tmp_path, "b.csv", TEXT.replace("70.5", "seventy").encode()))
    with pytest.raises(ManifestError, match=r"missing column\(s\) \['patient_id'\]"):
        Manifest.read(_write(tmp_path, "c.csv", TEXT.replace("patient_id", "pid").encode()))


def test_ragged_and_binary_tables_are_manifest_errors(tmp_path):
    ragged = TEXT + "images/c.png,p3,normal,50,F,extra,cells\n"
    with pytest.raises(ManifestError, match="cannot be read as a CSV table \\(ParserError: .*line 4"):
        open_dataset(_write(tmp_path, "ragged.csv", ragged.encode()))
    with pytest.raises(ManifestError, match="cannot be read as a manifest \\(ParserError"):
        Manifest.read(tmp_path / "ragged.csv")


def _workbook(rows: list[list[object]], cached: dict[str, str] | None = None) -> bytes:
    """An .xlsx written by openpyxl (formulas without results), with ``cached`` results
    patched into the sheet's XML as Excel would store them."""
    book = openpyxl.Workbook()
    for row in rows:
        book.active.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    if not cached:
        return buffer.getvalue()
    out = io.BytesIO()
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                for formula, value in cached.items():
                    data = data.replace(f"<f>{formula}</f><v />".encode(), f"<f>{formula}</f><v>{value}</v>".encode())
            dst.writestr(item, data)
    return out.getvalue()


ROWS = [["image", "patient_id", "label", "age"], ["images/a.png", "p1", "normal", 61],
        ["images/b.png", "p2", "osteoporosis", "=SUM(60,1)"]]


def test_formulas_without_saved_results_are_refused(tmp_path):
    with pytest.raises(ManifestError, match=r"labels.xlsx: cell\(s\) D3 hold a formula without a saved result"):
        open_dataset(_write(tmp_path, "labels.xlsx", _workbook(ROWS)))


def test_formulas_with_saved_results_read_their_values(tmp_path):
    manifest = open_dataset(_write(tmp_path, "labels.xlsx", _workbook(ROWS, {"SUM(60,1)": "61"})))
    assert manifest.frame["age"].tolist() == [61.0, 61.0]
    assert manifest.frame["patient_id"].tolist() == ["p1", "p2"]


@pytest.mark.parametrize("cut", [0, 30, 200, -100])
def test_damaged_workbooks_are_manifest_errors(tmp_path, cut):
    data = _workbook(ROWS, {"SUM(60,1)": "61"})
    damaged = data[:cut] if cut > 0 else data[:cut] if cut < 0 else b"not a zip file"
    with pytest.raises(ManifestError, match="labels.xlsx: cannot be read as an Excel workbook"):
        open_dataset(_write(tmp_path, "labels.xlsx", damaged))
