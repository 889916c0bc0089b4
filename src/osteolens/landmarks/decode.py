"""Decode network outputs into vertebrae: counted levels, cranio-caudal order, ordered corners, confidence.

1. Candidates: the ``n + SPARE`` highest peaks of the centre heatmap (cells equal to the
   maximum of their 3 x 3 neighbourhood; when the map has too few peaks the next highest
   cells fill in, with their low values).
2. Centre = peak cell + sub-cell offset; corners = centre + corner offsets read at the peak.
   Candidates are sorted by the height of their corners' centre (cranial first).
3. Counting (:func:`count_levels`): the ``n`` strongest candidates, moved up or down the
   spine by one vertebra at a time when that makes the set more likely: the log of the
   peaks' values plus a :class:`PositionPrior` on where the first and last vertebra lie in
   the image (learned from the training radiographs). Without a prior the ``n`` strongest
   peaks are the vertebrae.
4. Each vertebra's confidence is its peak value, so a vertebra the network hardly sees is
   kept and flagged, not hidden. The level names are flagged uncertain when a candidate left
   out above the first or below the last vertebra (the *rival*) peaks nearly as high as the
   weakest vertebra kept: the network then sees an eighteenth vertebra-like shape (C7 or S1,
   say) and the set may be shifted by one level.
5. Within each vertebra the endplates and sides are swapped when the superior endplate
   lies below the inferior one or the right side left of the left, so corners are always
   TL, TR, BL, BR.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter

from osteolens.landmarks.targets import to_input
from osteolens.morphometry.vertebra import BL, BR, TL, TR

LOW_CONFIDENCE = 0.3
"""Peak heatmap value below which a vertebra is flagged ``low_confidence``."""

SPARE = 6
"""Candidate peaks beyond ``n`` that the counting may take in (a weaker L5 or T1)."""

MAX_SHIFT = 2
"""Most vertebrae by which the counting moves the strongest peaks' set up or down the spine."""

UNRELIABLE_LOW = 3
"""Low-confidence vertebrae from which a whole detection is flagged ``unreliable``. On the
validation radiographs of three grouped splits (305) no detection had more than 2; on the
shared SRIHER spines, framed and masked otherwise and partly lateral, 102-105 of 136 had 3 or
more (docs/landmarks.md)."""

LEVEL_RIVAL = 0.8
"""A rival peak at or above this fraction of the weakest kept vertebra's flags the levels as
uncertain. Chosen on the first grouped validation split of docs/landmarks.md (98 radiographs):
it flags 27, among them 7 of the 13 whose set is shifted by a level; on the second and third
splits it flags 19 and 37, among them 7 of 15 and 9 of 19."""


@dataclass
class Detection:
    """Vertebrae found in one image.

    Attributes:
        corners: ``(n, 4, 2)`` corners ``(x, y)`` in pixels, cranial vertebra first, corners
            TL, TR, BL, BR.
        confidence: ``(n,)`` peak heatmap value of each vertebra, in [0, 1].
        rival: peak value of the strongest candidate left out above the first or below the
            last vertebra (0 when there is none).
        rival_side: ``cranial`` or ``caudal``: where that candidate lies (None without one).
    """

    corners: np.ndarray
    confidence: np.ndarray
    rival: float = 0.0
    rival_side: str | None = None

    @property
    def low_confidence(self) -> np.ndarray:
        """``(n,)`` bool: vertebrae whose confidence is below :data:`LOW_CONFIDENCE`."""
        return self.confidence < LOW_CONFIDENCE

    @property
    def unreliable(self) -> bool:
        """True when :data:`UNRELIABLE_LOW` or more vertebrae are low-confidence: the radiograph
        is probably not a view like the training images (another view, a partial spine)."""
        return int(self.low_confidence.sum()) >= UNRELIABLE_LOW

    @property
    def levels_uncertain(self) -> bool:
        """True when the rival peaks at :data:`LEVEL_RIVAL` or more of the weakest vertebra:
        the level names may be shifted by one toward the rival's side."""
        return len(self.confidence) > 0 and self.rival >= LEVEL_RIVAL * float(self.confidence.min())

    def scaled(self, scale_x: float, scale_y: float) -> Detection:
        """The same detection in an image resized by ``1/scale`` per axis (pixel-centre convention):
        ``x' = (x + 0.5) * scale_x - 0.5``."""
        from osteolens.landmarks.preprocess import to_original

        return Detection(to_original(self.corners, (scale_x, scale_y)), self.confidence.copy(), self.rival,
                         self.rival_side)


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


def unflip(heatmap: np.ndarray, offset: np.ndarray, corners: np.ndarray) -> tuple[np.ndarray, ...]:
    """Maps predicted on a horizontally mirrored image, in the original image's frame.

    A map of width ``w`` mirrors cell ``j`` to ``w - 1 - j`` (the input flip ``x -> W - 1 - x``
    in output coordinates), so the maps are mirrored back; the horizontal sub-cell and corner
    offsets change sign, and the corners swap sides (the mirror's top-left is the original's
    top-right). Averaging these with the unmirrored maps is the test-time flip.
    """
    back = offset[..., ::-1].copy()
    back[0] *= -1
    quads = corners[..., ::-1].reshape(4, 2, *corners.shape[1:])[[1, 0, 3, 2]].copy()  # TL<->TR, BL<->BR
    quads[:, 0] *= -1
    return heatmap[..., ::-1], back, quads.reshape(corners.shape)


@dataclass(frozen=True)
class PositionPrior:
    """Where the first and the last vertebra's centres lie, as fractions of the image height.

    ``first`` and ``last`` are ``(mean, standard deviation)`` over the training radiographs.
    It encodes how those radiographs were framed (the AASCE images are cropped to the spine:
    T1 at 0.05 +/- 0.015 of the height, L5 at 0.90 +/- 0.03), so it only helps on radiographs
    framed alike; the decoding uses it together with the peaks' own values.
    """

    first: tuple[float, float]
    last: tuple[float, float]

    @classmethod
    def fit(cls, spines: Sequence[np.ndarray], heights: Sequence[float]) -> PositionPrior:
        """Fit on ``(n, 4, 2)`` corners (original pixels) and their images' heights."""
        first = [quads[0, :, 1].mean() / h for quads, h in zip(spines, heights, strict=True)]
        last = [quads[-1, :, 1].mean() / h for quads, h in zip(spines, heights, strict=True)]
        spread = lambda v: max(float(np.std(v)), 0.01)  # noqa: E731 (a floor: one training image, or identical crops)
        return cls((float(np.mean(first)), spread(first)), (float(np.mean(last)), spread(last)))

    def log_likelihood(self, first: float, last: float) -> float:
        """Gaussian log-likelihood (up to a constant) of a first and last centre at these height fractions."""
        return -0.5 * (((first - self.first[0]) / self.first[1]) ** 2 + ((last - self.last[0]) / self.last[1]) ** 2)

    def to_dict(self) -> dict[str, list[float]]:
        """JSON form (bundle.json's ``position_prior``)."""
        return {"first": list(self.first), "last": list(self.last)}

    @classmethod
    def from_dict(cls, data: dict[str, Sequence[float]]) -> PositionPrior:
        """Inverse of :meth:`to_dict`."""
        return cls((float(data["first"][0]), float(data["first"][1])), (float(data["last"][0]), float(data["last"][1])))


def count_levels(height: np.ndarray, heat: np.ndarray, n: int, prior: PositionPrior | None,
                 max_shift: int = MAX_SHIFT) -> np.ndarray:
    """Indices of the ``n`` candidates (already in cranio-caudal order) that are levels ``0 .. n-1``.

    Start from the ``n`` strongest peaks. A set's score is ``sum log(heat)`` over its members
    plus ``prior.log_likelihood`` of its first and last member's ``height`` (centre height as
    a fraction of the image's). Moving the set one vertebra down drops its top member and
    adds the strongest candidate below it; moving it up is the reverse. The better move is
    taken while it raises the score, at most ``max_shift`` times. Without a prior the
    strongest peaks are kept.

    >>> prior = PositionPrior((0.1, 0.02), (0.7, 0.02))
    >>> count_levels(np.array([0.0, 0.1, 0.4, 0.7]), np.array([0.9, 0.8, 0.9, 0.7]), 3, prior).tolist()
    [1, 2, 3]
    """
    height, heat = np.asarray(height, float), np.asarray(heat, float)
    chosen = np.sort(np.argsort(-heat, kind="stable")[:n])
    if prior is None:
        return chosen

    def score(idx: np.ndarray) -> float:
        return float(np.log(np.clip(heat[idx], 1e-3, 1.0)).sum()) + prior.log_likelihood(height[idx[0]], height[idx[-1]])

    for _ in range(max_shift):
        below, above = np.arange(chosen[-1] + 1, len(heat)), np.arange(chosen[0])
        moves = ([np.append(chosen[1:], below[np.argmax(heat[below])])] if len(below) else []) + \
                ([np.insert(chosen[:-1], 0, above[np.argmax(heat[above])])] if len(above) else [])
        best = max(moves, key=score, default=None)
        if best is None or score(best) <= score(chosen):
            break
        chosen = best
    return chosen


def decode(heatmap: np.ndarray, offset: np.ndarray, corners: np.ndarray, stride: int, n: int = 17,
           prior: PositionPrior | None = None, max_shift: int = MAX_SHIFT) -> Detection:
    """The ``n`` vertebrae of one image from its output maps.

    Args:
        heatmap: ``(h, w)`` centre probabilities (after the sigmoid).
        offset: ``(2, h, w)`` sub-cell centre offsets.
        corners: ``(8, h, w)`` corner offsets from the centre, output cells.
        stride: input pixels per output cell.
        n: number of vertebrae.
        prior: where the first and last vertebra lie (:func:`count_levels`); None keeps the
            ``n`` strongest peaks.
        max_shift: most steps of the counting.

    Returns:
        The vertebrae in input pixels, cranial first.
    """
    heat = np.asarray(heatmap, dtype=float)
    h, w = heat.shape
    peaks = np.where(heat == maximum_filter(heat, size=3, mode="constant", cval=-np.inf), heat, heat - 2.0)
    flat = np.argsort(-peaks, axis=None, kind="stable")[:n + SPARE]
    rows, cols = np.divmod(flat, w)
    centre = np.stack([cols + offset[0, rows, cols], rows + offset[1, rows, cols]], axis=1)
    quads = centre[:, None, :] + corners[:, rows, cols].T.reshape(-1, 4, 2)
    order = np.argsort(quads.mean(axis=1)[:, 1], kind="stable")  # by the corners' centre, as morphometry checks
    rows, cols, quads = rows[order], cols[order], quads[order]
    height = (to_input(quads.mean(axis=1)[:, 1], stride) + 0.5) / (h * stride)  # fraction of the image height
    values = heat[rows, cols]
    keep = count_levels(height, values, n, prior, max_shift)
    is_peak = peaks[rows, cols] == values  # a filler cell beside a peak is no rival
    return Detection(order_corners(to_input(quads[keep], stride)), values[keep],
                     *rival(np.where(is_peak, values, 0.0), keep))


def rival(values: np.ndarray, keep: np.ndarray) -> tuple[float, str | None]:
    """The strongest of the candidates (``values``, cranio-caudal order; 0 for those that are not
    peaks) above the first or below the last kept index, and its side.

    >>> rival(np.array([0.5, 0.9, 0.8, 0.6]), np.array([1, 2]))
    (0.6, 'caudal')
    """
    above, below = values[:keep[0]], values[keep[-1] + 1:]
    best_above = float(above.max()) if len(above) else 0.0
    best_below = float(below.max()) if len(below) else 0.0
    if max(best_above, best_below) <= 0.0:
        return 0.0, None
    return (best_above, "cranial") if best_above >= best_below else (best_below, "caudal")
