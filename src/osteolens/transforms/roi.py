"""Regions of interest: square crops around COCO boxes (dental seed) and the largest
axis-aligned rectangle inside a mask (biplanar seed).

These are functions, not pipeline steps: they need annotations beside the pixels.
Rectangles are ``(top, left, bottom, right)`` with bottom / right exclusive, so
``pixels[top:bottom, left:right]`` is the region.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from osteolens.errors import AnnotationError


def largest_rectangle_in_mask(mask: np.ndarray) -> tuple[int, int, int, int]:
    """The largest-area axis-aligned rectangle made only of True pixels.

    The "maximal rectangle" method, O(H * W): sweep the rows top to bottom keeping, per
    column, the height of the run of True pixels ending at the current row; the best
    rectangle whose bottom edge is on that row is the largest rectangle under this
    histogram, found with one pass of a stack of increasing heights (each column is pushed
    and popped once). It replaces the biplanar seed's O(n^2) search over pairs of contour
    points, which also missed rectangles whose corners are not contour points.
    Written by hand because neither scikit-image nor OpenCV offers it.

    Args:
        mask: 2-D boolean (or 0/1) array.

    Returns:
        ``(top, left, bottom, right)``, bottom and right exclusive. Ties go to the first
        rectangle met (lowest bottom row, then leftmost).

    Raises:
        AnnotationError: the mask is not 2-D or has no True pixel.

    Example:
        >>> m = np.array([[0, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 1]], bool)
        >>> largest_rectangle_in_mask(m)
        (0, 1, 3, 3)
    """
    mask = np.asarray(mask).astype(bool)
    if mask.ndim != 2:
        raise AnnotationError(f"largest_rectangle_in_mask: expected a 2-D mask, got shape {mask.shape}.")
    if not mask.any():
        raise AnnotationError("largest_rectangle_in_mask: the mask has no True pixel. Fix: check the mask file and its threshold.")
    # Work inside the mask's bounding box: same answer, less sweeping.
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    r0, c0 = int(rows[0]), int(cols[0])
    sub = mask[r0 : int(rows[-1]) + 1, c0 : int(cols[-1]) + 1]
    width = sub.shape[1]
    heights = np.zeros(width, dtype=np.int64)
    best_area, best = 0, (0, 0, 0, 0)
    for row in range(sub.shape[0]):
        heights = np.where(sub[row], heights + 1, 0)
        hist = heights.tolist() + [0]  # the sentinel 0 empties the stack at the end
        stack: list[int] = []  # column indices with increasing heights
        for col, h in enumerate(hist):
            while stack and hist[stack[-1]] >= h:
                top_col = stack.pop()
                height = hist[top_col]
                left = stack[-1] + 1 if stack else 0
                area = height * (col - left)
                if area > best_area:
                    best_area, best = area, (row + 1 - height, left, row + 1, col)
            stack.append(col)
    top, left, bottom, right = best
    return top + r0, left + c0, bottom + r0, right + c0


def crop_to_mask_rectangle(pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Crop ``pixels`` to :func:`largest_rectangle_in_mask` of ``mask`` (same shape), the
    biplanar seed's vertebral-body ROI that holds only trabecular bone.
    """
    if np.shape(pixels) != np.shape(mask):
        raise AnnotationError(
            f"crop_to_mask_rectangle: image shape {np.shape(pixels)} differs from mask shape {np.shape(mask)}. "
            "Fix: use the mask drawn on this image, at its resolution."
        )
    top, left, bottom, right = largest_rectangle_in_mask(mask)
    return np.asarray(pixels)[top:bottom, left:right]


def _load_coco(coco: str | Path | dict[str, Any]) -> dict[str, Any]:
    if isinstance(coco, dict):
        return coco
    path = Path(coco)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise AnnotationError(f"{path}: cannot read the COCO file ({exc}).") from exc
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path}: not valid JSON ({exc}). Fix: export the annotations as COCO JSON.") from exc
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise AnnotationError(f"{path}: a COCO file needs top-level 'images' and 'annotations' lists.")
    return data


def coco_boxes(coco: str | Path | dict[str, Any], image: int | str) -> list[tuple[float, float, float, float]]:
    """The ``[x, y, w, h]`` boxes (pixels, x to the right, y down) of one image of a COCO file.

    Args:
        coco: path of a COCO JSON file, or the parsed dictionary.
        image: the image's COCO ``id`` (int) or its ``file_name`` (the full name or its base name).
    """
    data = _load_coco(coco)
    images = data.get("images", [])
    if isinstance(image, int | np.integer):
        matches = [im for im in images if im.get("id") == image]
    else:
        wanted = str(image)
        matches = [im for im in images if im.get("file_name") == wanted]
        if not matches:
            matches = [im for im in images if Path(str(im.get("file_name", ""))).name == Path(wanted).name]
    if len(matches) != 1:
        found = "no" if not matches else f"{len(matches)}"
        raise AnnotationError(f"COCO annotations: {found} image entry matches {image!r}. Fix: pass the image id or its exact file_name.")
    image_id = matches[0]["id"]
    boxes = []
    for ann in data.get("annotations", []):
        if ann.get("image_id") == image_id:
            bbox = ann.get("bbox")
            if not isinstance(bbox, list | tuple) or len(bbox) != 4 or bbox[2] <= 0 or bbox[3] <= 0:
                raise AnnotationError(f"COCO annotation {ann.get('id')!r}: bbox must be [x, y, w, h] with w, h > 0, got {bbox!r}.")
            boxes.append(tuple(float(v) for v in bbox))
    return boxes


def square_window(box: tuple[float, float, float, float], size: int, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """The square ``(top, left, bottom, right)`` window for one ``[x, y, w, h]`` box.

    Its side is ``size``, or the box's longer side when the box is bigger; it is centred on
    the box and shifted to lie inside the image when the image is large enough.
    """
    x, y, w, h = box
    side = max(int(size), int(np.ceil(max(w, h))))
    cx, cy = x + w / 2.0, y + h / 2.0
    top, left = int(round(cy - side / 2.0)), int(round(cx - side / 2.0))
    height, width = shape
    top = min(max(top, 0), max(height - side, 0)) if height >= side else (height - side) // 2
    left = min(max(left, 0), max(width - side, 0)) if width >= side else (width - side) // 2
    return top, left, top + side, left + side


def crops_from_coco(
    coco: str | Path | dict[str, Any], image: int | str, size: int = 600, *, pixels: np.ndarray
) -> list[np.ndarray]:
    """Square ``size`` x ``size`` crops around every COCO box of one image (dental seed: 600).

    Each window is :func:`square_window`; a window larger than ``size`` (a big box) is
    shrunk to ``size`` with area averaging; parts outside a small image are zero.

    Args:
        coco: COCO JSON path or dictionary.
        image: COCO image id or file name.
        size: side of the returned crops in pixels.
        pixels: the image, ``(H, W)``.
    """
    import cv2

    pixels = np.asarray(pixels, dtype=np.float32)
    crops = []
    for box in coco_boxes(coco, image):
        top, left, bottom, right = square_window(box, size, pixels.shape)
        side = bottom - top
        crop = np.zeros((side, side), dtype=np.float32)
        src_top, src_left = max(top, 0), max(left, 0)
        src_bottom, src_right = min(bottom, pixels.shape[0]), min(right, pixels.shape[1])
        crop[src_top - top : src_bottom - top, src_left - left : src_right - left] = pixels[src_top:src_bottom, src_left:src_right]
        if side != size:
            crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
        crops.append(crop)
    return crops
