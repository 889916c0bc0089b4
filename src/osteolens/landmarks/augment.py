"""Train-time augmentation that moves the landmarks with the image.

One affine matrix per sample (rotation, isotropic scale, translation about the image centre,
and optionally a horizontal flip) warps the image with OpenCV and maps the points with the
same matrix, in the pixel-centre convention of ``cv2.warpAffine`` (a point ``p`` goes to
``M @ [p, 1]``). A flip exchanges the image's left and right, so the corners are relabelled
(TL <-> TR, BL <-> BR) and stay TL, TR, BL, BR. Intensity: brightness, contrast and gamma
jitter on the [0, 1] image.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from osteolens.morphometry.vertebra import BL, BR, TL, TR

_FLIP_ORDER = [TR, TL, BR, BL]


@dataclass(frozen=True)
class AugmentSettings:
    """Ranges of the random augmentation (0 turns a part off).

    Attributes:
        rotate_deg: rotation drawn from ``[-rotate_deg, rotate_deg]``.
        scale: scale drawn from ``[1 - scale, 1 + scale]``.
        translate: shift drawn from ``[-translate, translate]`` times the image size, per axis.
        hflip: probability of a horizontal flip.
        brightness: added offset drawn from ``[-brightness, brightness]``.
        contrast: contrast factor drawn from ``[1 - contrast, 1 + contrast]``.
        gamma: ``log`` of the gamma drawn from ``[-gamma, gamma]``.
    """

    rotate_deg: float = 8.0
    scale: float = 0.1
    translate: float = 0.05
    hflip: float = 0.5
    brightness: float = 0.1
    contrast: float = 0.2
    gamma: float = 0.3


def random_matrix(rng: np.random.Generator, shape: tuple[int, int], settings: AugmentSettings) -> tuple[np.ndarray, bool]:
    """A random ``2 x 3`` affine matrix for an image of ``shape = (h, w)`` and whether it flips."""
    h, w = shape
    centre = ((w - 1) / 2, (h - 1) / 2)
    angle = rng.uniform(-settings.rotate_deg, settings.rotate_deg)
    scale = rng.uniform(1 - settings.scale, 1 + settings.scale)
    matrix = cv2.getRotationMatrix2D(centre, angle, scale)
    matrix[:, 2] += rng.uniform(-settings.translate, settings.translate, 2) * (w, h)
    flip = bool(rng.random() < settings.hflip)
    if flip:
        matrix = np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0]]) @ np.vstack([matrix, [0.0, 0.0, 1.0]])
    return matrix, flip


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``(..., 2)`` points mapped by a ``2 x 3`` affine matrix."""
    points = np.asarray(points, dtype=float)
    return points @ matrix[:, :2].T + matrix[:, 2]


def inverse(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a ``2 x 3`` affine matrix."""
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def warp(image: np.ndarray, corners: np.ndarray, matrix: np.ndarray, flip: bool = False,
         fill: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``image`` ``(h, w)`` and its ``(n, 4, 2)`` corners with ``matrix`` (same output size).

    ``flip``: the matrix mirrors the image, so the corners are relabelled to stay TL, TR, BL, BR.
    """
    h, w = image.shape
    out = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=float(fill))
    moved = transform_points(corners, matrix)
    return out, moved[:, _FLIP_ORDER] if flip else moved


def jitter_intensity(image: np.ndarray, rng: np.random.Generator, settings: AugmentSettings) -> np.ndarray:
    """Brightness, contrast and gamma jitter of a [0, 1] image (clipped to [0, 1])."""
    gamma = float(np.exp(rng.uniform(-settings.gamma, settings.gamma)))
    contrast = rng.uniform(1 - settings.contrast, 1 + settings.contrast)
    shift = rng.uniform(-settings.brightness, settings.brightness)
    out = np.clip(image, 0.0, 1.0) ** gamma
    return np.clip((out - 0.5) * contrast + 0.5 + shift, 0.0, 1.0).astype(np.float32)
