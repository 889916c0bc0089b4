"""Decode network outputs into vertebrae: counted levels, cranio-caudal order, ordered corners, confidence.

1. Candidates: the ``n + SPARE`` highest peaks of the centre heatmap (cells equal to the
   maximum of their 3 x 3 neighbourhood; when the map has too few peaks the next highest
   cells fill in, with their low values).
2. Centre = peak cell + sub-cell offset; corners = centre + corner offsets read at the peak.
   Candidates are sorted by the height of their corners' centre (cranial first).
3. Counting (:func:`count_levels`): the ``n`` strongest candidates, moved up or down the
   spine when the network's estimate of each one's place in the spine (``level``) says the
   set starts a vertebra too high or too low. A peak on C7 or the sacrum is then dropped
   because the levels do not fit, not because it happens to be weaker than a true vertebra;
   without level information (a flat map) the choice is the ``n`` strongest peaks.
4. Each vertebra's confidence is its peak value, so a vertebra the network hardly sees is
   kept and flagged, not hidden.
5. Within each vertebra the endplates and sides are swapped when the superior endplate
   lies below the inferior one or the right side left of the left, so corners are always
   TL, TR, BL, BR.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter

from osteolens.landmarks.targets import to_input
from osteolens.morphometry.vertebra import BL, BR, TL, TR

LOW_CONFIDENCE = 0.3
"""Peak heatmap value below which a vertebra is flagged ``low_confidence``."""

SPARE = 6
"""Candidate peaks beyond ``n`` that the counting may take in (C7, the sacrum, a missed vertebra)."""

MAX_SHIFT = 2
"""Most vertebrae by which the counting moves the strongest peaks' set up or down the spine."""


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


def count_levels(level: np.ndarray, heat: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` candidates (already in cranio-caudal order) that are levels ``0 .. n-1``.

    Start from the ``n`` strongest peaks. Their offset from the levels they would get is the
    median of ``(n - 1) * level_k - k`` (robust to a few wrong level estimates and to estimates
    shrunk towards the middle of the spine). At ``-0.5`` or below the set starts one vertebra
    too high (e.g. C7 as T1): its top member is dropped and the strongest candidate below it
    added; at ``+0.5`` or above, the reverse. At most :data:`MAX_SHIFT` such steps.

    >>> count_levels(np.array([-0.5, 0.0, 0.5, 1.0]), np.array([1.0, 0.9, 0.9, 0.5]), 3).tolist()
    [1, 2, 3]
    """
    level, heat = np.asarray(level, float), np.asarray(heat, float)
    chosen = np.sort(np.argsort(-heat, kind="stable")[:n])
    for _ in range(MAX_SHIFT):
        offset = float(np.median((n - 1) * level[chosen] - np.arange(n)))
        spare = np.arange(chosen[-1] + 1, len(level)) if offset <= -0.5 else np.arange(chosen[0])
        if abs(offset) < 0.5 or not len(spare):
            break
        best = spare[np.argmax(heat[spare])]
        chosen = np.append(chosen[1:], best) if offset < 0 else np.insert(chosen[:-1], 0, best)
    return chosen


def decode(heatmap: np.ndarray, offset: np.ndarray, corners: np.ndarray, level: np.ndarray, stride: int,
           n: int = 17) -> Detection:
    """The ``n`` vertebrae of one image from its output maps.

    Args:
        heatmap: ``(h, w)`` centre probabilities (after the sigmoid).
        offset: ``(2, h, w)`` sub-cell centre offsets.
        corners: ``(8, h, w)`` corner offsets from the centre, output cells.
        level: ``(h, w)`` estimated place in the spine, 0 (cranial) to 1 (caudal).
        stride: input pixels per output cell.
        n: number of vertebrae.

    Returns:
        The vertebrae in input pixels, cranial first.
    """
    heat = np.asarray(heatmap, dtype=float)
    w = heat.shape[1]
    peaks = np.where(heat == maximum_filter(heat, size=3, mode="constant", cval=-np.inf), heat, heat - 2.0)
    flat = np.argsort(-peaks, axis=None, kind="stable")[:n + SPARE]
    rows, cols = np.divmod(flat, w)
    centre = np.stack([cols + offset[0, rows, cols], rows + offset[1, rows, cols]], axis=1)
    quads = centre[:, None, :] + corners[:, rows, cols].T.reshape(-1, 4, 2)
    order = np.argsort(quads.mean(axis=1)[:, 1], kind="stable")  # by the corners' centre, as morphometry checks
    rows, cols, quads = rows[order], cols[order], quads[order]
    keep = count_levels(level[rows, cols], heat[rows, cols], n)
    return Detection(order_corners(to_input(quads[keep], stride)), heat[rows, cols][keep])
