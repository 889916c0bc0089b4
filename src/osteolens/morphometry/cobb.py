"""Cobb angles of a coronal (AP) spine from vertebral corner landmarks, AASCE 2019 definition.

This is the definition of the AASCE 2019 challenge (MICCAI, "Accurate Automated Spinal
Curvature Estimation"), whose reference angles were computed from the landmarks of Wu et al.
(BoostNet, MICCAI 2017) by the challenge's MATLAB evaluation script. osteolens rewrites it
with numpy, vectorised, and reproduces the dataset's angles (SMAPE < 0.01 %, see the tests):

1. Each vertebra ``k`` has a direction ``v_k``: from the midpoint of its left side
   (top-left, bottom-left corners) to the midpoint of its right side.
2. ``A[i, j]`` is the angle between ``v_i`` and ``v_j`` (``arccos`` of the cosine rounded to
   8 decimals, as MATLAB's ``roundn(., -8)``). The largest entry is the first Cobb angle
   (labelled PT in the dataset, in fact the largest curve); its vertebrae are
   ``a < b`` (the first maximum in column-major order, MATLAB's tie rule).
3. The spine's centre line is the 2n endplate midpoints ``m``. Each interior point's
   deviation ``(m_i.y - m_n.y)/(m_1.y - m_n.y) - (m_i.x - m_n.x)/(m_1.x - m_n.x)`` is
   its signed offset from the chord between the first and last midpoint; the spine is
   *S-shaped* when these offsets take both signs.
4. Not S-shaped: MT = ``A[0, a]`` (top vertebra to ``a``), TL = ``A[n-1, b]`` (``b`` to the
   last vertebra).
5. S-shaped, and the main curve lies in the upper half of the image (the inferior
   endplate midpoints of ``a`` and ``b`` have ``y_a + y_b < H``, H the image height):
   MT = ``max_k<=a A[a, k]``, the largest curve above ``a``; TL = ``max_k>=b A[b, k]``,
   the largest below ``b``.
6. S-shaped, main curve in the lower half: MT = ``A[a, c]`` with ``c = argmax_k<=a A[a, k]``,
   and TL = ``max_k<=c A[c, k]``, the next curve above that.

Angles are not invariant to anisotropic scaling: compute them on coordinates whose x and y
pixels have the same physical size (undo any per-axis resampling first).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from osteolens.errors import AnnotationError


@dataclass(frozen=True)
class CobbAngles:
    """The three Cobb angles of a spine, in degrees, with the vertebrae that bound them.

    Attributes:
        pt: proximal-thoracic angle as the AASCE data labels it (the largest curve).
        mt: main-thoracic angle.
        tl: thoracolumbar / lumbar angle.
        s_shaped: whether the centre line crosses the chord between its ends.
        pt_vertebrae, mt_vertebrae, tl_vertebrae: 0-based indices ``(upper, lower)`` of the
            end vertebrae of each angle (in the order of the given landmarks).
    """

    pt: float
    mt: float
    tl: float
    s_shaped: bool
    pt_vertebrae: tuple[int, int]
    mt_vertebrae: tuple[int, int]
    tl_vertebrae: tuple[int, int]

    def as_array(self) -> np.ndarray:
        """``[pt, mt, tl]`` in degrees."""
        return np.array([self.pt, self.mt, self.tl])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        out = asdict(self)
        for key in ("pt_vertebrae", "mt_vertebrae", "tl_vertebrae"):
            out[key] = list(out[key])
        return out


def _as_corners(landmarks: np.ndarray | list) -> np.ndarray:
    array = np.asarray(landmarks, dtype=float)
    if array.ndim == 2 and array.shape[1] == 2 and array.shape[0] % 4 == 0:
        array = array.reshape(-1, 4, 2)
    if array.ndim != 3 or array.shape[1:] != (4, 2) or array.shape[0] < 3:
        raise AnnotationError(
            f"Cobb angles need (n*4, 2) or (n, 4, 2) corner landmarks of at least 3 vertebrae, "
            f"got shape {np.shape(landmarks)}."
        )
    if not np.isfinite(array).all():
        raise AnnotationError("Cobb angles need complete landmarks: a corner is missing (NaN).")
    return array


def is_s_shaped(centre_line: np.ndarray) -> bool:
    """True when the points' signed offsets from the chord between the first and last point
    take both signs (an S-shaped curve, in the AASCE definition).

    >>> is_s_shaped(np.array([[0, 0], [2, 1], [0, 2], [-2, 3], [0.5, 4]]))
    True
    """
    first, last = centre_line[0], centre_line[-1]
    inner = centre_line[:-2]
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = (inner[:, 1] - last[1]) / (first[1] - last[1]) - (inner[:, 0] - last[0]) / (first[0] - last[0])
    return bool((offset > 0).any() and (offset < 0).any())


def cobb_angles(landmarks: np.ndarray | list, image_height: float | None = None) -> CobbAngles:
    """Cobb angles (PT, MT, TL) of an AP spine by the AASCE 2019 definition.

    Args:
        landmarks: ``(n*4, 2)`` or ``(n, 4, 2)`` corner points ``(x, y)`` in pixels, four per
            vertebra in the order top-left, top-right, bottom-left, bottom-right, vertebrae
            from cranial to caudal (AASCE: 17 vertebrae T1-L5, 68 points).
        image_height: the image height in the landmarks' pixels; it decides whether an
            S-shaped spine's main curve is in the upper or lower half. None: the midpoint of
            the spine's own vertical extent is used instead (a departure from the reference,
            which matters when the main curve lies between the two middles; ``measure_spine``
            says so in its ``cobb_note``).

    Returns:
        The three angles and their end vertebrae.

    Raises:
        AnnotationError: fewer than 3 vertebrae, a wrong shape, or a missing point.
    """
    corners = _as_corners(landmarks)
    n = corners.shape[0]
    direction = (corners[:, 1] + corners[:, 3]) / 2 - (corners[:, 0] + corners[:, 2]) / 2
    unit = direction / np.linalg.norm(direction, axis=1, keepdims=True)
    angles = np.degrees(np.arccos(np.clip(np.round(unit @ unit.T, 8), -1.0, 1.0)))
    # Row-major argmax of the symmetric matrix = MATLAB's column-major first maximum.
    a, b = divmod(int(np.argmax(angles)), n)
    pt = float(angles[a, b])
    centre_line = corners.reshape(-1, 2, 2).mean(axis=1)  # 2n endplate midpoints
    s_shaped = is_s_shaped(centre_line)
    if not s_shaped:
        mt_pair, tl_pair = (0, a), (b, n - 1)
    else:
        if image_height is None:
            threshold = centre_line[0, 1] + centre_line[-1, 1]
        else:
            threshold = float(image_height)
        above = int(np.argmax(angles[a, : a + 1]))
        if centre_line[2 * a + 1, 1] + centre_line[2 * b + 1, 1] < threshold:
            below = b + int(np.argmax(angles[b, b:]))
            mt_pair, tl_pair = (above, a), (b, below)
        else:
            higher = int(np.argmax(angles[above, : above + 1]))
            mt_pair, tl_pair = (above, a), (higher, above)
    return CobbAngles(
        pt=pt,
        mt=float(angles[mt_pair]),
        tl=float(angles[tl_pair]),
        s_shaped=s_shaped,
        pt_vertebrae=(a, b),
        mt_vertebrae=mt_pair,
        tl_vertebrae=tl_pair,
    )


def smape(computed: np.ndarray, reference: np.ndarray) -> float:
    """Symmetric mean absolute percentage error as the AASCE challenge scored it.

    Per spine, ``sum |computed - reference| / sum (computed + reference)`` over its angles,
    averaged over spines, times 100. Arrays are ``(n_spines, n_angles)``.

    >>> round(smape(np.array([[10.0, 20.0, 30.0]]), np.array([[12.0, 20.0, 30.0]])), 3)
    1.639
    """
    computed = np.atleast_2d(np.asarray(computed, dtype=float))
    reference = np.atleast_2d(np.asarray(reference, dtype=float))
    per_spine = np.abs(computed - reference).sum(axis=1) / (computed + reference).sum(axis=1)
    return float(per_spine.mean() * 100.0)
