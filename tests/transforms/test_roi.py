from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from osteolens.errors import AnnotationError
from osteolens.transforms import coco_boxes, crop_to_mask_rectangle, crops_from_coco, largest_rectangle_in_mask


def _brute_force_area(mask: np.ndarray) -> int:
    """O(n^4) reference: every (top, bottom, left, right), kept when all True."""
    best = 0
    rows, cols = mask.shape
    for top, bottom in itertools.combinations(range(rows + 1), 2):
        for left, right in itertools.combinations(range(cols + 1), 2):
            area = (bottom - top) * (right - left)
            if area > best and mask[top:bottom, left:right].all():
                best = area
    return best


def test_largest_rectangle_matches_brute_force_on_random_masks():
    rng = np.random.default_rng(42)
    for trial in range(300):
        shape = tuple(rng.integers(1, 9, size=2))
        mask = rng.random(shape) < rng.uniform(0.3, 0.95)
        if not mask.any():
            continue
        top, left, bottom, right = largest_rectangle_in_mask(mask)
        assert mask[top:bottom, left:right].all(), (trial, mask)
        assert (bottom - top) * (right - left) == _brute_force_area(mask), (trial, mask)


def test_largest_rectangle_in_an_ellipse_like_mask():
    y, x = np.mgrid[0:41, 0:61]
    mask = ((y - 20) / 20.5) ** 2 + ((x - 30) / 30.5) ** 2 <= 1
    top, left, bottom, right = largest_rectangle_in_mask(mask)
    assert mask[top:bottom, left:right].all()
    # The largest rectangle inscribed in an ellipse has half its sides / sqrt(2): area 2ab.
    assert abs((bottom - top) * (right - left) - 2 * 20.5 * 30.5) < 0.1 * 2 * 20.5 * 30.5


def test_largest_rectangle_edge_cases():
    assert largest_rectangle_in_mask(np.ones((3, 4), bool)) == (0, 0, 3, 4)
    single = np.zeros((5, 5), bool)
    single[3, 1] = True
    assert largest_rectangle_in_mask(single) == (3, 1, 4, 2)
    with pytest.raises(AnnotationError, match="no True pixel"):
        largest_rectangle_in_mask(np.zeros((3, 3), bool))


def test_crop_to_mask_rectangle():
    pixels = np.arange(30, dtype=np.float32).reshape(5, 6)
    mask = np.zeros((5, 6), bool)
    mask[1:4, 2:5] = True
    mask[0, 0] = True
    np.testing.assert_array_equal(crop_to_mask_rectangle(pixels, mask), pixels[1:4, 2:5])
    with pytest.raises(AnnotationError, match="differs from mask shape"):
        crop_to_mask_rectangle(pixels, mask[:4])


def _coco() -> dict:
    return {
        "images": [{"id": 7, "file_name": "panoramics/p1.jpg", "width": 40, "height": 30}, {"id": 8, "file_name": "p2.jpg"}],
        "annotations": [
            {"id": 1, "image_id": 7, "bbox": [10, 5, 4, 4], "category_id": 1},
            {"id": 2, "image_id": 8, "bbox": [0, 0, 2, 2], "category_id": 1},
            {"id": 3, "image_id": 7, "bbox": [0, 0, 20, 12], "category_id": 1},
        ],
        "categories": [{"id": 1, "name": "mandible"}],
    }


def test_coco_boxes_by_id_or_file_name(tmp_path):
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(_coco()))
    assert coco_boxes(path, 7) == [(10.0, 5.0, 4.0, 4.0), (0.0, 0.0, 20.0, 12.0)]
    assert coco_boxes(_coco(), "p1.jpg") == coco_boxes(_coco(), "panoramics/p1.jpg") == coco_boxes(path, 7)
    with pytest.raises(AnnotationError, match="no image entry matches 'p9.jpg'"):
        coco_boxes(path, "p9.jpg")


def test_crops_from_coco_are_square_and_centred():
    pixels = np.arange(30 * 40, dtype=np.float32).reshape(30, 40)
    small, big = crops_from_coco(_coco(), 7, 8, pixels=pixels)
    # Box centre (12, 7): an 8 x 8 window starting at row 3, column 8.
    np.testing.assert_array_equal(small, pixels[3:11, 8:16])
    # The 20 x 12 box needs a 20-pixel window (rows 0..20 after shifting inside), shrunk to 8.
    assert big.shape == (8, 8)
    import cv2

    np.testing.assert_allclose(big, cv2.resize(pixels[0:20, 0:20], (8, 8), interpolation=cv2.INTER_AREA))


def test_crops_from_coco_pads_a_small_image_with_zeros():
    pixels = np.ones((4, 4), np.float32)
    (crop,) = crops_from_coco(_coco(), 8, 6, pixels=pixels)
    assert crop.shape == (6, 6) and crop.sum() == 16 and crop[0].sum() == 0
