"""Decode network outputs into vertebrae: cranio-caudal order, ordered corners, confidence.

1. Peaks of the centre heatmap: cells equal to the maximum of their 3 x 3 neighbourhood.
2. The ``n`` highest peaks are the vertebrae (when the map has fewer peaks, the next highest
   cells fill in, with their low values as confidence); each vertebra's confidence is its
   peak value, so a vertebra the network hardly sees is kept and flagged, not hidden.
3. Centre = peak cell + sub-cell offset; corners = centre + corner offsets read at the peak.
4. Anatomical order: vertebrae sorted by the height of their corners' centre (cranial
   first), so level ``k`` is
   the ``k``-th from the top; within each vertebra the endplates and sides are swapped when
   the superior endplate lies below the inferior one or the right side left of the left,
   so corners are always TL, TR, BL, BR.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter

from osteolens.landmarks.targets import to_input
from osteolens.morphometry.vertebra import BL, BR, TL, TR

LOW_CONFIDENCE = 0.3
"""Peak heatmap value below which a vertebra is flagged ``low_confidence``."""


@dataclass
class Detection:
    """Vertebrae found in one image.

    Attributes:
        corners: ``(n, 4, 2)`` corners ``(x, y)`` in pixels, cranial vertebra first, corners
            TL, TR, BL, BR.
        confidence: ``(n,)`` peak heatmap value of each vertebra, in [0, 1].
    """

    corners: np.ndarray
    confidence: np.ndarray

    @property
    def low_confidence(self) -> np.ndarray:
        """``(n,)`` bool: vertebrae whose confidence is below :data:`LOW_CONFIDENCE`."""
        return self.confidence < LOW_CONFIDENCE

    def scaled(self, scale_x: float, scale_y: float) -> Detection:
        """The same detection in an image resized by ``1/scale`` per axis (pixel-centre convention):
        ``x' = (x + 0.5) * scale_x - 0.5``."""
        from osteolens.landmarks.preprocess import to_original

        return Detection(to_original(self.corners, (scale_x, scale_y)), self.confidence.copy())


def order_corners(quads: np.ndarray) -> np.ndarray:
    """``(n, 4, 2)`` corners with endplates and sides swapped where needed so each vertebra
    reads TL, TR, BL, BR (top above bottom, left of right, in the image).

    >>> order_corners(np.array([[[1, 1], [0, 1], [1, 0], [0, 0]]], float)).tolist()
    [[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]]
    """
    out = np.array(quads, dtype=float, copy=True)
    upside_down = out[:, [TL, TR], 1].mean(axis=1) > out[:, [BL, BR], 1].mean(axis=1)
    out[upside_down] = out[upside_down][:, [BL, BR, TL, TR]]
    mirrored = out[:, [TL, BL], 0].mean(axis=1) > out[:, [TR, BR], 0].mean(axis=1)
    out[mirrored] = out[mirrored][:, [TR, TL, BR, BL]]
    return out


def decode(heatmap: np.ndarray, offset: np.ndarray, corners: np.ndarray, stride: int, n: int = 17) -> Detection:
    """The ``n`` vertebrae of one image from its output maps.

    Args:
        heatmap: ``(h, w)`` centre probabilities (after the sigmoid).
        offset: ``(2, h, w)`` sub-cell centre offsets.
        corners: ``(8, h, w)`` corner offsets from the centre, output cells.
        stride: input pixels per output cell.
        n: number of vertebrae.

    Returns:
        The vertebrae in input pixels, cranial first.
    """
    heat = np.asarray(heatmap, dtype=float)
    h, w = heat.shape
    peaks = np.where(heat == maximum_filter(heat, size=3, mode="constant", cval=-np.inf), heat, heat - 2.0)
    flat = np.argsort(-peaks, axis=None, kind="stable")[:n]
    rows, cols = np.divmod(flat, w)
    centre = np.stack([cols + offset[0, rows, cols], rows + offset[1, rows, cols]], axis=1)
    quads = centre[:, None, :] + corners[:, rows, cols].T.reshape(-1, 4, 2)
    order = np.argsort(quads.mean(axis=1)[:, 1], kind="stable")  # by the corners' centre, as morphometry checks
    return Detection(order_corners(to_input(quads[order], stride)), heat[rows, cols][order])
