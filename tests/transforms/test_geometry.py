from __future__ import annotations

import numpy as np
import pytest

from osteolens.transforms import CropToContent, PadToSquare, Pipeline, Resize, RollingBall, build_transform


def test_crop_to_content_bounding_box():
    image = np.zeros((6, 8), np.float32)
    image[2, 3] = 0.5
    image[4, 5] = 0.2
    image[0, 7] = 1.0  # saturated label: excluded because high=1 is strict
    image[5, 0] = 0.05  # below low
    out = CropToContent()(image)
    np.testing.assert_array_equal(out, image[2:5, 3:6])


def test_crop_to_content_margin_is_clamped():
    image = np.zeros((6, 8), np.float32)
    image[0, 3] = 0.5
    np.testing.assert_array_equal(CropToContent(margin=2)(image), image[0:3, 1:6])


def test_crop_to_content_empty_mask_leaves_image_unchanged():
    image = np.full((4, 5), 0.05, np.float32)
    np.testing.assert_array_equal(CropToContent()(image), image)


def test_pad_to_square_centres_content():
    image = np.ones((2, 5), np.float32)
    out = PadToSquare(value=0.25)(image)
    assert out.shape == (5, 5)
    # 3 rows of padding: 1 above, 2 below.
    assert out[0].tolist() == [0.25] * 5 and out[1:3].tolist() == [[1.0] * 5] * 2 and out[3:].tolist() == [[0.25] * 5] * 2
    tall = PadToSquare()(np.ones((4, 1), np.float32))
    assert tall.shape == (4, 4) and tall[:, 1].tolist() == [1.0] * 4 and tall[:, [0, 2, 3]].sum() == 0


@pytest.mark.parametrize(
    ("params", "shape"),
    [({"size": 4}, (4, 4)), ({"size": [3, 5]}, (3, 5)), ({"factor": 1 / 3}, (3, 4)), ({"factor": 2}, (18, 24))],
)
def test_resize_shapes(params, shape):
    assert Resize(**params)(np.zeros((9, 12), np.float32)).shape == shape


def test_resize_shrinks_by_area_average():
    image = np.arange(36, dtype=np.float32).reshape(6, 6) / 36
    out = Resize(factor=1 / 3)(image)
    expected = image.reshape(2, 3, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_resize_enlarges_bilinearly_within_range():
    out = Resize(size=[4, 4])(np.array([[0.0, 1.0], [0.0, 1.0]], np.float32))
    # OpenCV's half-pixel centres: columns map to 0, 0.25, 0.75, 1.
    np.testing.assert_allclose(out[0], [0.0, 0.25, 0.75, 1.0], atol=1e-6)
    assert (out[0] == out[3]).all()


def _top_left_image() -> np.ndarray:
    image = np.full((60, 90), 0.3, np.float32)
    image[8:14, 10:16] = 0.95
    return image


@pytest.mark.parametrize(
    "transform",
    [
        CropToContent(low=0.2, high=1.0, margin=3),
        PadToSquare(),
        Resize(size=[30, 100]),
        Resize(factor=0.5),
        Resize(factor=1.7),
        RollingBall(radius=15),
        Pipeline.from_config([{"name": "pad_to_square"}, {"name": "resize", "params": {"size": 32}}]),
    ],
    ids=repr,
)
def test_orientation_is_preserved(transform):
    out = transform(_top_left_image())
    row, col = np.unravel_index(np.argmax(out), out.shape)
    assert row < out.shape[0] / 2 and col < out.shape[1] / 2
    assert out[0, 0] < out[row, col]


def test_crop_keeps_the_exact_bright_corner():
    out = build_transform({"name": "crop_to_content", "params": {"low": 0.5}})(_top_left_image())
    assert out.shape == (6, 6) and (out == np.float32(0.95)).all()
