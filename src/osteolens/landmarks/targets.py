"""Training targets from corner landmarks: a centre heatmap, sub-pixel and corner offsets.

Coordinates: input pixels ``(x, y)``, pixel centres at integers. An output cell ``(i, j)`` of
a map at stride ``s`` is centred on input point ``((j + 0.5) s - 0.5, (i + 0.5) s - 0.5)``, so
input ``x`` is output ``u = (x + 0.5) / s - 0.5`` (:func:`to_output`).

For each vertebra with centre ``c`` (the mean of its four corners) at output ``(u, v)``:

* heatmap: a Gaussian of standard deviation ``sigma`` output cells peaking at exactly 1 on
  the cell ``(round(v), round(u))`` (CenterNet's target: the focal loss needs exact ones);
* ``offset``: ``(u - round(u), v - round(v))``, the sub-cell position of the centre;
* ``corners``: ``(corner - c) / s`` for the four corners TL, TR, BL, BR (8 numbers, output
  cells), read at the centre's cell.

:func:`osteolens.landmarks.decode.decode` inverts this exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from osteolens.errors import AnnotationError


@dataclass
class Targets:
    """The targets of one image.

    Attributes:
        heatmap: ``(1, h, w)`` float32 centre heatmap in [0, 1].
        index: ``(n,)`` int64 flat index ``i * w + j`` of each vertebra's centre cell.
        mask: ``(n,)`` float32, 1 where the vertebra's centre lies inside the map.
        offset: ``(n, 2)`` float32 sub-cell centre offsets.
        corners: ``(n, 8)`` float32 corner offsets from the centre, output cells.
    """

    heatmap: np.ndarray
    index: np.ndarray
    mask: np.ndarray
    offset: np.ndarray
    corners: np.ndarray


def to_output(points: np.ndarray, stride: int) -> np.ndarray:
    """Input pixel coordinates to output-map coordinates (see the module docstring)."""
    return (np.asarray(points, dtype=float) + 0.5) / stride - 0.5


def to_input(points: np.ndarray, stride: int) -> np.ndarray:
    """Output-map coordinates to input pixel coordinates (inverse of :func:`to_output`)."""
    return (np.asarray(points, dtype=float) + 0.5) * stride - 0.5


def encode(corners: np.ndarray, out_shape: tuple[int, int], stride: int, sigma: float = 1.5) -> Targets:
    """Targets for ``(n, 4, 2)`` corners (input pixels) on an ``out_shape = (h, w)`` map.

    Raises:
        AnnotationError: corners not of shape ``(n, 4, 2)`` or not finite.
    """
    quads = np.asarray(corners, dtype=float)
    if quads.ndim != 3 or quads.shape[1:] != (4, 2) or not np.isfinite(quads).all():
        raise AnnotationError(f"landmark targets need finite (n, 4, 2) corners, got shape {quads.shape}.")
    h, w = out_shape
    centre = to_output(quads.mean(axis=1), stride)
    cell = np.round(centre).astype(np.int64)
    inside = (cell[:, 0] >= 0) & (cell[:, 0] < w) & (cell[:, 1] >= 0) & (cell[:, 1] < h)
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
    heatmap = np.zeros((h, w), np.float32)
    for (j, i), ok in zip(cell, inside, strict=True):
        if ok:
            np.maximum(heatmap, np.exp(-((rows - i) ** 2 + (cols - j) ** 2) / (2 * sigma**2)), out=heatmap)
    clipped = np.clip(cell, 0, [w - 1, h - 1])
    relative = (quads - quads.mean(axis=1, keepdims=True)) / stride
    return Targets(
        heatmap=heatmap[None],
        index=(clipped[:, 1] * w + clipped[:, 0]).astype(np.int64),
        mask=inside.astype(np.float32),
        offset=(centre - cell).astype(np.float32),
        corners=relative.reshape(len(quads), 8).astype(np.float32),
    )
