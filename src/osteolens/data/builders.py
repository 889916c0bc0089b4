"""Build a Manifest from what researchers actually have: class folders, a CSV or an Excel sheet.

Examples:
    Class folders (dental, knee and fracture seeds)::

        root/normal/N1.png, root/osteoporosis/OS3.png  ->  label = folder name

    CSV (bone-age seed: ``id,boneage,male``)::

        from_table("train.csv", image_template="images/{id}.png", patient_col="id")

    Semicolon CSV (biplanar seed: ``file_name;label``)::

        from_table("labels.csv", image_col="file_name")
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pandas as pd

from osteolens.data.manifest import Manifest
from osteolens.errors import ManifestError

IMAGE_SUFFIXES = (".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def is_image_file(path: Path) -> bool:
    """True for files with a radiograph suffix, or DICOM files without a suffix (``DICM`` at byte 128)."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return True
    if path.suffix == "" and path.is_file():
        with path.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    return False


def list_images(folder: Path) -> list[Path]:
    """Every image file under ``folder`` (recursive), sorted, hidden files skipped."""
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".") and is_image_file(p)
    )


def patient_from_name(name: str, pattern: str | None) -> str:
    """Patient id from a file name: the stem, or the first group of ``pattern`` (a regex).

    >>> patient_from_name("3052769_2.png", r"^(\\d+)_")
    '3052769'
    """
    stem = Path(name).stem
    if pattern is None:
        return stem
    match = re.search(pattern, Path(name).name)
    if match is None:
        raise ManifestError(name, f"patient pattern {pattern!r} does not match the file name.", "fix --patient-pattern or give a patient column.")
    return match.group(1) if match.groups() else match.group(0)


def from_class_folders(root: str | Path, *, patient_pattern: str | None = None) -> Manifest:
    """One row per image in ``root/<class>/...``; label = the first-level folder name.

    Args:
        root: folder with one subfolder per class.
        patient_pattern: regex whose first group is the patient id in the file name
            (default: the file stem, one image per patient).
    """
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(root, "class-folder root is not a directory.", "point at the folder that holds one subfolder per class.")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ManifestError(root, "no class subfolders found.", "put the images in one subfolder per class, e.g. normal/ and osteoporosis/.")
    rows = []
    for folder in classes:
        for path in list_images(folder):
            rows.append(
                {
                    "image": str(path.relative_to(root)),
                    "patient_id": patient_from_name(path.name, patient_pattern),
                    "label": folder.name,
                }
            )
    if not rows:
        raise ManifestError(root, "the class folders hold no images.", f"supported suffixes: {', '.join(IMAGE_SUFFIXES)}.")
    return Manifest(pd.DataFrame(rows), root, root)


def read_table(path: str | Path, sheet: str | int | None = None) -> pd.DataFrame:
    """Read CSV (separator sniffed: ``,``, ``;``, tab) or Excel (``.xlsx``/``.xls``) into a DataFrame.

    CSV text is UTF-8, or UTF-16 / UTF-8 with a byte-order mark. Raises :class:`ManifestError`
    for anything unreadable: another encoding, NUL bytes, formula cells without a saved
    result, a damaged file.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(path, "label table not found.", "check the path.")
    excel = path.suffix.lower() in (".xlsx", ".xlsm", ".xls")
    try:
        if excel:
            frame = pd.read_excel(path, sheet_name=sheet if sheet is not None else 0)
            cells = _formulas_without_values(path, sheet) if path.suffix.lower() != ".xls" else []
            if cells:
                raise ManifestError(path, f"cell(s) {', '.join(cells[:5])} hold a formula without a saved result, which reads as empty.",
                                    "open and save the workbook in Excel or LibreOffice (that stores the results), or paste values.")
            return frame
        raw = path.read_bytes()
        encoding = _text_encoding(raw[:3])
        if encoding != "utf-16" and b"\x00" in raw:
            raise ManifestError(path, "contains NUL bytes: it is binary, damaged, or UTF-16 text without a byte-order mark.",
                                "save the table as UTF-8 CSV (Excel: 'CSV UTF-8').")
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ManifestError(path, f"is not valid {exc.encoding} text (line {line}, byte {exc.start}: {exc.reason}).",
                                "save the table as UTF-8 (Excel: 'CSV UTF-8') or UTF-16 with a byte-order mark.") from exc
        try:
            sep = csv.Sniffer().sniff(text[:8192], delimiters=",;\t").delimiter
        except csv.Error:
            sep = ","
        return pd.read_csv(io.StringIO(text), sep=sep)
    except ManifestError:
        raise
    except Exception as exc:  # any parser failure on a damaged or foreign file
        kind = "an Excel workbook" if excel else "a CSV table"
        raise ManifestError(path, f"cannot be read as {kind} ({type(exc).__name__}: {exc}).",
                            "re-export the table from its source as CSV (UTF-8) or .xlsx.") from exc


def _formulas_without_values(path: Path, sheet: str | int | None) -> list[str]:
    """Cells of an .xlsx sheet holding a formula but no cached result (a workbook written by a
    script and never opened in a spreadsheet program): pandas would read them as empty."""
    import openpyxl

    books = [openpyxl.load_workbook(path, read_only=True, data_only=flag) for flag in (False, True)]
    try:
        formulas, values = (book[sheet] if isinstance(sheet, str) else book.worksheets[sheet or 0] for book in books)
        return [
            f.coordinate
            for row_f, row_v in zip(formulas.iter_rows(), values.iter_rows(), strict=False)
            for f, v in zip(row_f, row_v, strict=False)
            if isinstance(f.value, str) and f.value.startswith("=") and v.value is None
        ]
    finally:
        for book in books:
            book.close()


def _text_encoding(head: bytes) -> str:
    """``utf-16`` or ``utf-8-sig`` when ``head`` starts with that byte-order mark, else ``utf-8``."""
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "utf-16"
    return "utf-8-sig" if head == b"\xef\xbb\xbf" else "utf-8"


def from_table(
    path: str | Path,
    *,
    image_col: str | None = "image",
    image_template: str | None = None,
    patient_col: str | None = None,
    patient_pattern: str | None = None,
    label_col: str | None = None,
    sex_col: str | None = None,
    age_col: str | None = None,
    image_root: str | Path | None = None,
    sheet: str | int | None = None,
) -> Manifest:
    """A Manifest from a CSV or Excel label table.

    Args:
        path: the table.
        image_col: column holding the image path (relative to ``image_root``).
        image_template: instead of ``image_col``, a format string over the row's columns,
            e.g. ``"images/{id}.png"`` for the RSNA bone-age table.
        patient_col: column with the patient id; default: from the file name
            (``patient_pattern`` regex, or the stem).
        label_col: column renamed to ``label`` (class).
        sex_col, age_col: columns renamed to ``sex`` / ``age`` (``male`` 1/0 becomes M/F).
        image_root: folder that image paths are relative to (default: the table's folder).
        sheet: Excel sheet name or index.
    """
    path = Path(path)
    frame = read_table(path, sheet)
    frame.columns = [str(c).strip() for c in frame.columns]
    root = Path(image_root) if image_root is not None else path.parent

    if image_template is not None:
        try:
            frame["image"] = [image_template.format(**row) for row in frame.to_dict("records")]
        except KeyError as exc:
            raise ManifestError(path, f"image template {image_template!r} names column {exc} which the table lacks.", f"columns are {list(frame.columns)}.") from None
    elif image_col is not None and image_col != "image":
        _need(frame, image_col, path, "--image-col")
        frame = frame.rename(columns={image_col: "image"})
    _need(frame, "image", path, "--image-col or --image-template")

    if patient_col is not None:
        _need(frame, patient_col, path, "--patient-col")
        frame["patient_id"] = frame[patient_col].astype(str)
    elif "patient_id" not in frame.columns:
        frame["patient_id"] = [patient_from_name(str(v), patient_pattern) for v in frame["image"]]

    renames = {}
    for column, standard, flag in ((label_col, "label", "--label-col"), (sex_col, "sex", "--sex-col"), (age_col, "age", "--age-col")):
        if column is not None and column != standard:
            _need(frame, column, path, flag)
            renames[column] = standard
    if renames:
        frame = frame.rename(columns=renames)
    if "sex" not in frame.columns:
        for alias in ("male", "gender", "Sex", "Gender"):
            if alias in frame.columns:
                frame = frame.rename(columns={alias: "sex"})
                break
    return Manifest(frame, root, path)


def _need(frame: pd.DataFrame, column: str, path: Path, flag: str) -> None:
    if column not in frame.columns:
        raise ManifestError(path, f"column {column!r} not found; the table has {list(frame.columns)}.", f"name the right column with {flag}.")


def open_dataset(path: str | Path, **table_options: object) -> Manifest:
    """A Manifest from whatever ``path`` is: a class-folder root, or a CSV / Excel label table.

    ``table_options`` go to :func:`from_table` (ignored for class folders). A table that
    already has ``image`` and ``patient_id`` columns (a manifest written by osteolens) is
    read as it is.
    """
    path = Path(path)
    if path.is_dir():
        return from_class_folders(path, patient_pattern=table_options.get("patient_pattern"))  # type: ignore[arg-type]
    options = {k: v for k, v in table_options.items() if v is not None}
    return from_table(path, **options)  # type: ignore[arg-type]
