"""Read morphometry inputs: a corner-landmark table, or vertebral body masks.

Landmark table (CSV), one row per corner, the layout of the AASCE set in ``shared/data``:

* required: ``image``, ``vertebra``, ``corner`` (``top_left``, ``top_right``,
  ``bottom_left``, ``bottom_right``), ``x``, ``y`` (pixels, x right, y down);
* six-point morphometry: ``corner`` may also be ``top_middle`` and ``bottom_middle``, the
  points of the middle height on the superior and inferior endplates (both, or neither);
* optional, per image: ``view``, ``pixel_spacing_mm`` (or ``pixel_mm``),
  ``image_height`` / ``image_width`` (pixels; the height alone is enough for Cobb angles).

Vertebrae keep the order of their first row (it must be cranial to caudal; the checks say
when it is not). A missing or unknown corner becomes a problem on its vertebra.

Masks, given as

* a folder: files named ``<prefix>_<level>.<ext>`` (``masque_lat_L1.tif``,
  ``spine01_T12.png``) are one vertebra each and are grouped by folder and prefix into
  spines; any other image is a spine on its own: an integer label image (one label per
  vertebra) or a binary mask whose connected parts are the vertebrae;
* a table (CSV) with a ``mask`` column (paths relative to the table) and optional
  ``image``, ``vertebra``, ``view``, ``pixel_spacing_mm``: masks that share an ``image``
  form one spine (e.g. the ``labels.csv`` of ``osteolens.phantom``).

The view is taken from a ``view`` column, else from a token of the file prefix (``lat``,
``profil``, ``ap``, ``face`` ...), else from the caller's default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from osteolens.errors import AnnotationError, ManifestError
from osteolens.io import Radiograph
from osteolens.io.header import read_header
from osteolens.io.reader import DEFAULT_MAX_PIXELS
from osteolens.morphometry.masks import cranial_directions, mask_centroid, outline_from_mask, split_label_image
from osteolens.morphometry.spine import level_index
from osteolens.morphometry.vertebra import CORNERS, normalise_view

MASK_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg", ".npy")
_LEVEL_SUFFIX = re.compile(r"^(?P<prefix>.*?)[_\-. ]?(?P<level>[CTLS]\d{1,2})$", re.I)
_SPACING_COLUMNS = ("pixel_spacing_mm", "pixel_mm")
POINTS = (*CORNERS, "top_middle", "bottom_middle")
"""Point names of a landmark table: the four corners, optionally the two endplate midpoints."""


@dataclass
class SpineInput:
    """One spine to measure, as read from landmarks or masks.

    Attributes:
        key: identifier (the image name, or folder/prefix of the masks).
        names: vertebra names, cranial first.
        corners: ``(n, 4, 2)`` pixel corners, NaN where missing.
        view: ``"lateral"``, ``"AP"`` or None (use the caller's default).
        pixel_mm: spacing from the input (column), or None.
        image_path: the radiograph, when found.
        image_shape: ``(rows, columns)`` when known.
        image_height: the image height in pixels (an ``image_height`` column), when known.
        midpoints: ``(n, 2, 2)`` middle-height points (masks, six-point tables; NaN where
            not given), else None.
        outlines: mask outlines (for drawing), else empty.
        problems: problems found while reading, by vertebra index.
        warning: a caution about the whole spine (``SpineMeasurement.warning``), else None.
        radiograph: the radiograph, when the caller has read it already (a detector has):
            its pixels, shape and spacing are used instead of reading ``image_path`` again.
    """

    key: str
    names: list[str]
    corners: np.ndarray
    view: str | None = None
    pixel_mm: float | None = None
    image_path: Path | None = None
    image_shape: tuple[int, int] | None = None
    image_height: float | None = None
    midpoints: np.ndarray | None = None
    outlines: list[np.ndarray] = field(default_factory=list)
    problems: dict[int, list[str]] = field(default_factory=dict)
    warning: str | None = None
    radiograph: Radiograph | None = None


def _first_value(frame: pd.DataFrame, columns: tuple[str, ...]) -> object | None:
    for column in columns:
        if column in frame.columns:
            values = frame[column].dropna()
            if len(values):
                return values.iloc[0]
    return None


def find_image(name: str, table_dir: Path, images_dir: Path | None) -> Path | None:
    """The radiograph a table row names: absolute, beside the table, or in ``images_dir``."""
    path = Path(name)
    candidates = [path] if path.is_absolute() else [table_dir / path]
    if images_dir is not None:
        candidates += [images_dir / path, images_dir / path.name]
    return next((c for c in candidates if c.is_file()), None)


def _positive(path: Path, image: object, column: str, value: object) -> float | None:
    """``value`` as a finite positive number (None stays None); a ManifestError naming the row otherwise."""
    if value is None:
        return None
    number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    if not np.isfinite(number) or number <= 0:
        raise ManifestError(path, f"image {image}: {column} is '{value}', not a positive number.",
                            f"give {column} in pixels (height, width) or mm per pixel (spacing), or leave it empty.")
    return float(number)


def read_landmarks(path: str | Path, images_dir: str | Path | None = None) -> list[SpineInput]:
    """Read a corner-landmark CSV into one :class:`SpineInput` per image.

    Raises:
        ManifestError: the file cannot be read or lacks a required column.
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise ManifestError(path, f"cannot read the landmark table ({exc}).", "give a CSV file.") from exc
    missing = [c for c in ("image", "vertebra", "corner", "x", "y") if c not in frame.columns]
    if missing:
        raise ManifestError(
            path, f"missing column(s) {', '.join(missing)}.", "use columns image, vertebra, corner, x, y (one row per corner)."
        )
    xy = np.column_stack([pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float) for c in ("x", "y")])
    corner_names = frame["corner"].astype(str).str.strip().str.lower().to_numpy()
    corner_index = pd.Series(corner_names).map({c: k for k, c in enumerate(POINTS)}).fillna(-1).to_numpy(dtype=int)
    vertebrae = frame["vertebra"].astype(str).to_numpy()
    images = Path(images_dir) if images_dir is not None else None
    spines = []
    for image, positions in frame.groupby("image", sort=False).indices.items():
        rows = frame.iloc[positions]
        codes, uniques = pd.factorize(vertebrae[positions])  # first-appearance order
        names = [str(n) for n in uniques]
        slot = corner_index[positions]
        problems: dict[int, list[str]] = {}
        for k in np.flatnonzero(slot < 0):
            problems.setdefault(int(codes[k]), []).append(
                f"unknown_corner: {frame['corner'].iloc[positions[k]]!r} is not one of {', '.join(POINTS)}"
            )
        known = slot >= 0
        repeated = known & pd.Series(codes * len(POINTS) + slot).duplicated().to_numpy()
        for k in np.flatnonzero(repeated):
            problems.setdefault(int(codes[k]), []).append(f"duplicate_corner: {POINTS[slot[k]]} given twice, the first kept")
        use = known & ~repeated
        points = np.full((len(names), len(POINTS), 2), np.nan)
        points[codes[use], slot[use]] = xy[positions[use]]
        corners, middles = points[:, :4], points[:, 4:]
        given = np.isfinite(middles).all(axis=2)
        for i in np.flatnonzero(given.any(axis=1) & ~given.all(axis=1)):
            problems.setdefault(int(i), []).append("incomplete_middle: give both top_middle and bottom_middle; ignored")
        view = _first_value(rows, ("view",))
        spacing = _positive(path, image, "pixel spacing", _first_value(rows, _SPACING_COLUMNS))
        height = _positive(path, image, "image_height", _first_value(rows, ("image_height",)))
        width = _positive(path, image, "image_width", _first_value(rows, ("image_width",)))
        shape = (int(height), int(width)) if height is not None and width is not None else None
        spines.append(
            SpineInput(
                key=str(image),
                names=names,
                corners=corners,
                view=normalise_view(str(view)) if view is not None else None,
                pixel_mm=spacing,
                image_path=find_image(str(image), path.parent, images),
                image_shape=shape,
                image_height=height,
                midpoints=middles if given.all(axis=1).any() else None,
                problems=problems,
            )
        )
    return spines


def read_image_table(path: str | Path) -> tuple[dict[str, float], dict[str, float]]:
    """Pixel spacing and image height by image from a manifest or labels table.

    The table (CSV or Parquet) has an ``image`` column and ``pixel_spacing_mm`` (or
    ``pixel_mm``), ``image_height`` (pixels) or both. Keys are the ``image`` values as
    written and their file names, so a spine keyed ``images/a.png`` finds a row ``a.png``
    and the other way round.

    Returns:
        ``(spacing_by_image, height_by_image)``, each empty when its column is absent.

    Raises:
        ManifestError: unreadable, no ``image`` column, or neither value column.
    """
    path = Path(path)
    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise ManifestError(path, f"cannot read the manifest ({exc}).", "give a CSV or Parquet manifest.") from exc
    spacing_column = next((c for c in _SPACING_COLUMNS if c in frame.columns), None)
    height_column = "image_height" if "image_height" in frame.columns else None
    if "image" not in frame.columns or (spacing_column is None and height_column is None):
        raise ManifestError(
            path,
            "needs an 'image' column and a 'pixel_spacing_mm' or 'image_height' column.",
            "add the pixel spacing (mm) or the image height (pixels) per image.",
        )
    tables: list[dict[str, float]] = []
    for column in (spacing_column, height_column):
        table: dict[str, float] = {}
        if column is not None:
            values = pd.to_numeric(frame[column], errors="coerce")
            for image, value in zip(frame["image"], values, strict=True):
                if pd.notna(image) and pd.notna(value):
                    table.setdefault(str(image), float(value))
                    table.setdefault(Path(str(image)).name, float(value))
        tables.append(table)
    return tables[0], tables[1]


def read_image_header(path: str | Path) -> tuple[tuple[int, int], tuple[float, float] | None]:
    """``(rows, columns)`` as displayed and the DICOM pixel spacing of a radiograph, without
    decoding pixels (:func:`osteolens.io.header.read_header`; raster files have no spacing).

    Raises:
        RadiographReadError: the file is missing, not an image, or its header is unreadable.
    """
    header = read_header(Path(path))
    return (header.rows, header.cols), header.spacing_mm


def read_mask(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read one mask or label image as a 2-D integer array.

    The size is checked from the header (``.npy``: its array header; images: their format
    header) before anything is decoded, so a damaged or hostile file cannot claim gigabytes.

    Raises:
        AnnotationError: the file cannot be read, is over ``max_pixels`` or is not a 2-D image.
    """
    path = Path(path)
    fix = "Fix: give a PNG, TIFF or .npy mask."
    try:
        if path.suffix.lower() == ".npy":
            lazy = np.load(path, mmap_mode="r", allow_pickle=False)
            _check_mask_size(path, int(np.prod(lazy.shape[:2])) if lazy.ndim >= 2 else lazy.size, max_pixels)
            array = np.asarray(lazy)
        else:
            header = read_header(path)
            _check_mask_size(path, header.pixels * header.frames, max_pixels)
            if header.format == "TIFF":
                import tifffile

                array = tifffile.imread(path)
            else:
                from PIL import Image

                with Image.open(path) as image:
                    array = np.asarray(image)
    except AnnotationError:
        raise
    except Exception as exc:  # decoders raise many types (zlib, struct, SyntaxError, ...) on damaged files
        raise AnnotationError(f"{path}: cannot read the mask ({type(exc).__name__}: {exc}). {fix}") from exc
    array = np.squeeze(array)
    if array.ndim == 3:  # colour-saved mask: any channel on is foreground
        array = array.max(axis=-1)
    if array.ndim != 2:
        raise AnnotationError(f"{path}: a mask must be a 2-D image, got shape {array.shape}.")
    return array


def _check_mask_size(path: Path, pixels: int, max_pixels: int) -> None:
    if pixels > max_pixels:
        raise AnnotationError(
            f"{path}: the mask claims {pixels:,} pixels, more than the limit of {max_pixels:,} (damaged or hostile "
            "file). Fix: re-export the mask, or pass a larger max_pixels to read_mask if it is genuine."
        )


def _view_hint(prefix: str) -> str | None:
    for token in re.split(r"[_\-. /]+", prefix.lower()):
        try:
            return normalise_view(token)
        except AnnotationError:
            continue
    return None


def _components(array: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Vertebrae of a mask file without a level in its name: labels, or connected parts."""
    values = np.unique(array[array != 0])
    if len(values) > 1:
        return [(f"label{value}", mask) for value, mask in split_label_image(array)]
    count, labels, stats, _ = cv2.connectedComponentsWithStats((array != 0).astype(np.uint8), connectivity=8)
    if count < 2:
        raise AnnotationError("the mask is empty (no foreground pixel).")
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = [k + 1 for k in range(count - 1) if areas[k] >= 0.05 * areas.max()]
    parts = split_label_image(np.where(np.isin(labels, keep), labels, 0))
    return [(f"#{i}", mask) for i, (_, mask) in enumerate(parts)]


def spine_from_masks(
    key: str, masks: list[tuple[str, np.ndarray]], *, view: str | None = None
) -> SpineInput:
    """Corners of a spine's vertebrae from their masks, each in its own frame.

    Masks are ordered cranial first by level name when all names are levels, else kept in
    the given order; each vertebra's cranial direction comes from its neighbours'
    centroids, then :func:`outline_from_mask` finds its corners. An empty mask becomes a
    vertebra with a problem instead of an exception.
    """
    names = [name for name, _ in masks]
    order = list(range(len(masks)))
    if all(level_index(n) is not None for n in names):
        order.sort(key=lambda i: level_index(names[i]))  # type: ignore[arg-type,return-value]
    names = [names[i] for i in order]
    problems: dict[int, list[str]] = {}
    centroids = np.full((len(masks), 2), np.nan)
    for k, i in enumerate(order):
        try:
            centroids[k] = mask_centroid(masks[i][1])
        except AnnotationError as exc:
            problems[k] = [f"bad_mask: {exc}"]
    good = [k for k in range(len(masks)) if k not in problems]
    ups = cranial_directions(centroids[good])
    corners = np.full((len(masks), 4, 2), np.nan)
    midpoints = np.full((len(masks), 2, 2), np.nan)
    outlines: list[np.ndarray] = [np.empty((0, 2))] * len(masks)
    for up, k in zip(ups, good, strict=True):
        outline = outline_from_mask(masks[order[k]][1], up)
        corners[k], midpoints[k], outlines[k] = outline.corners, outline.midpoints, outline.contour
    shape = masks[0][1].shape if masks else None
    return SpineInput(
        key=key,
        names=names,
        corners=corners,
        view=view,
        image_shape=(int(shape[0]), int(shape[1])) if shape else None,
        midpoints=midpoints,
        outlines=outlines,
        problems=problems,
    )


def read_masks(
    path: str | Path, images_dir: str | Path | None = None
) -> tuple[list[SpineInput], list[tuple[str, str]]]:
    """Read vertebral masks from a folder or a mask table into spines.

    Returns:
        The spines, and ``(path, reason)`` for every file that could not be read.

    Raises:
        ManifestError: the path is neither a folder nor a readable table with a ``mask`` column.
    """
    path = Path(path)
    images = Path(images_dir) if images_dir is not None else None
    failures: list[tuple[str, str]] = []
    groups: dict[str, dict] = {}

    def add(key: str, name: str, file: Path, view: str | None, spacing: float | None, image: Path | None) -> None:
        group = groups.setdefault(key, {"masks": [], "view": view, "spacing": spacing, "image": image})
        try:
            group["masks"].append((name, read_mask(file)))
        except AnnotationError as exc:
            failures.append((str(file), str(exc)))

    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.suffix.lower() in MASK_SUFFIXES and p.is_file()):
            rel = file.relative_to(path).with_suffix("")
            match = _LEVEL_SUFFIX.match(rel.name)
            if match:
                key = str(rel.parent / match.group("prefix")) if match.group("prefix") else str(rel.parent)
                add(key, match.group("level").upper(), file, _view_hint(match.group("prefix")), None, None)
                continue
            try:
                parts = _components(read_mask(file))
            except AnnotationError as exc:
                failures.append((str(file), str(exc)))
                continue
            groups[str(rel)] = {"masks": parts, "view": _view_hint(rel.name), "spacing": None, "image": None}
    elif path.is_file():
        try:
            table = pd.read_csv(path)
        except (OSError, ValueError) as exc:
            raise ManifestError(path, f"cannot read the mask table ({exc}).", "give a folder of masks or a CSV.") from exc
        if "mask" not in table.columns:
            raise ManifestError(path, "no 'mask' column.", "list one mask file per row in a 'mask' column.")
        for i, row in enumerate(table.to_dict("records")):
            file = Path(str(row["mask"]))
            file = file if file.is_absolute() else path.parent / file
            image = str(row.get("image") or row["mask"])
            spacing = next((row[c] for c in _SPACING_COLUMNS if c in row and pd.notna(row[c])), None)
            view = normalise_view(str(row["view"])) if pd.notna(row.get("view")) else None
            name = str(row["vertebra"]) if pd.notna(row.get("vertebra")) else f"#{i}"
            add(image, name, file, view, float(spacing) if spacing is not None else None, find_image(image, path.parent, images))
    else:
        raise ManifestError(path, "no such folder or file.", "give a folder of masks or a mask table (CSV).")
    spines = []
    for key, group in groups.items():
        if not group["masks"]:
            continue
        spine = spine_from_masks(key, group["masks"], view=group["view"])
        spine.pixel_mm = group["spacing"]
        spine.image_path = group["image"]
        spines.append(spine)
    return spines, failures
