"""The Manifest: one row per image, validated.

Columns (only ``image`` and ``patient_id`` are required):

| column | meaning |
|---|---|
| ``image`` | path of the radiograph, absolute or relative to the manifest's ``root`` |
| ``patient_id`` | the grouping key: images of one patient never cross folds |
| ``label`` | class name (string) for classification |
| any numeric column | a regression target (``bmd``, ``boneage_months``, ...) |
| ``sex`` | ``M`` / ``F`` (normalised from male=1/0, Male/Female, ...) |
| ``age`` | years |
| ``view``, ``site``, ``study`` | acquisition view (AP / LAT ...), centre, study id that pairs views |
| ``mask`` | optional path of a mask image, relative like ``image`` |
| ``sha256`` | hash of the file bytes (filled by :meth:`Manifest.with_hashes`) |
| ``fold`` | assigned fold, ``-1`` for the external test set (filled by ``data.splits``) |
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from osteolens.errors import ManifestError

REQUIRED_COLUMNS = ("image", "patient_id")
STANDARD_COLUMNS = ("image", "patient_id", "label", "sex", "age", "view", "site", "study", "mask", "sha256", "fold")
#: Columns a prediction table carries over from the manifest, for subgroups and baselines.
COVARIATE_COLUMNS = ("sex", "age", "view", "vertebra", "site", "study")
_SEX_MAP = {
    "m": "M", "male": "M", "1": "M", "true": "M", "man": "M", "h": "M",
    "f": "F", "female": "F", "0": "F", "false": "F", "woman": "F",
    "o": "O", "other": "O",
}


def normalise_sex(value: object) -> str | None:
    """Map the many spellings of sex (``1``/``0`` as the RSNA ``male`` column, ``Male``, ``f``) to M/F/O."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    key = str(value).strip().lower()
    if key.endswith(".0"):
        key = key[:-2]
    if key in ("", "nan", "none"):
        return None
    if key not in _SEX_MAP:
        raise ManifestError(None, f"unknown sex value {value!r}.", "use M/F, male/female or 1/0.")
    return _SEX_MAP[key]


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Manifest:
    """A validated table of images.

    Args:
        frame: one row per image (see the module docstring for columns).
        root: folder that relative ``image`` / ``mask`` paths are relative to.
        source: where the manifest came from, for error messages.
    """

    frame: pd.DataFrame
    root: Path
    source: str | Path | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.frame = self.frame.reset_index(drop=True)
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Check the schema; raise :class:`ManifestError` naming the column and the fix."""
        missing = [c for c in REQUIRED_COLUMNS if c not in self.frame.columns]
        if missing:
            raise ManifestError(
                self.source,
                f"missing column(s) {missing}; found {list(self.frame.columns)}.",
                "add an 'image' column (file path) and a 'patient_id' column, or name them with --image-col / --patient-col.",
            )
        if self.frame["image"].isna().any():
            rows = list(self.frame.index[self.frame["image"].isna()][:5])
            raise ManifestError(self.source, f"empty 'image' value in row(s) {rows}.", "fill in or drop those rows.")
        self.frame["image"] = self.frame["image"].astype(str)
        pid = self.frame["patient_id"]
        if pid.isna().any():
            rows = list(self.frame.index[pid.isna()][:5])
            raise ManifestError(
                self.source, f"empty 'patient_id' in row(s) {rows}.", "give every image a patient id (the file stem if one image per patient)."
            )
        self.frame["patient_id"] = pid.astype(str)
        dup = self.frame["image"].duplicated()
        if dup.any():
            raise ManifestError(
                self.source, f"image path(s) listed twice: {list(self.frame['image'][dup][:5])}.", "keep one row per image."
            )
        if "sex" in self.frame.columns:
            self.frame["sex"] = self.frame["sex"].map(normalise_sex).astype(object)
        if "age" in self.frame.columns:
            age = pd.to_numeric(self.frame["age"], errors="coerce")
            bad = age.isna() & self.frame["age"].notna()
            if bad.any():
                raise ManifestError(self.source, f"non-numeric age in row(s) {list(self.frame.index[bad][:5])}.", "give age in years as a number.")
            self.frame["age"] = age
        if "label" in self.frame.columns:
            self.frame["label"] = self.frame["label"].map(lambda v: None if pd.isna(v) else str(v)).astype(object)

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.frame)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.frame.to_dict("records"))

    def resolve(self, relative: str | Path) -> Path:
        """Absolute path of an ``image`` or ``mask`` value."""
        path = Path(relative)
        return path if path.is_absolute() else self.root / path

    def image_paths(self) -> list[Path]:
        """Absolute paths of every image, in row order."""
        return [self.resolve(p) for p in self.frame["image"]]

    @property
    def classes(self) -> list[str]:
        """Sorted class names (empty when there is no label column)."""
        if "label" not in self.frame.columns:
            return []
        return sorted(self.frame["label"].dropna().unique().tolist())

    def numeric_targets(self) -> list[str]:
        """Numeric columns that may serve as regression targets (not fold / age)."""
        skip = {"fold", "age"}
        return [c for c in self.frame.columns if c not in skip and pd.api.types.is_numeric_dtype(self.frame[c])]

    def subset(self, mask: pd.Series | list[bool]) -> Manifest:
        """A new manifest with the selected rows."""
        return Manifest(self.frame[list(mask) if isinstance(mask, list) else mask].copy(), self.root, self.source)

    def with_hashes(self) -> Manifest:
        """Fill the ``sha256`` column from the files (missing files get None)."""
        frame = self.frame.copy()
        frame["sha256"] = [file_sha256(p) if p.is_file() else None for p in self.image_paths()]
        return Manifest(frame, self.root, self.source)

    # ------------------------------------------------------------------ files
    @classmethod
    def read(cls, path: str | Path) -> Manifest:
        """Read a manifest written by :meth:`write` (CSV or Parquet); paths are relative to its folder."""
        path = Path(path)
        if not path.is_file():
            raise ManifestError(path, "manifest not found.", "check the path, or build one with 'osteolens data check'.")
        try:
            frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype={"patient_id": str})
        except Exception as exc:  # any parser failure on a damaged file
            raise ManifestError(path, f"cannot be read as a manifest ({type(exc).__name__}: {exc}).",
                                "rebuild it with 'osteolens data check', or save it as UTF-8 CSV.") from exc
        root = frame.attrs.get("root") if path.suffix == ".parquet" else None
        return cls(frame, Path(root) if root else path.parent, path)

    def write(self, path: str | Path) -> Path:
        """Write as CSV (or Parquet by suffix) with image paths made relative to the file's folder when possible."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        frame = self.frame.copy()
        for column in ("image", "mask"):
            if column in frame.columns:
                frame[column] = [_relative_to(self.resolve(v), path.parent) if isinstance(v, str) else v for v in frame[column]]
        from osteolens.io._files import write_atomic  # a killed run never leaves half a manifest

        return write_atomic(path, frame.to_parquet(index=False) if path.suffix == ".parquet" else frame.to_csv(index=False))


def _relative_to(path: Path, base: Path) -> str:
    import os

    try:
        return os.path.relpath(path.resolve(), base.resolve())
    except ValueError:  # another drive on Windows
        return str(path.resolve())
