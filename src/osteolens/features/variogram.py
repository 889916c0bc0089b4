"""Variogram initial slope (ISV), after Maquer et al. 2017, as the biplanar seed computed it.

Maquer G, Lu Y, Dall'Ara E, et al. "The initial slope of the variogram, foundation of the
trabecular bone score, is not or is poorly associated with vertebral strength." J Bone Miner
Res 2016;31(2):341-346 (and its 2017 Python implementation, which the seed adapted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from osteolens.errors import ConfigError
from osteolens.features.base import FeatureFamily, check_image_and_mask, register_feature_family

# An interpolation weight below this counts as zero (angles like pi/2 leave 1e-17 offsets).
_TOL = 1e-9


@dataclass
class Variogram:
    """A sampled semivariogram and its initial slope.

    Attributes:
        lags: lag distances ``h`` in pixels.
        gamma: semivariance at each lag.
        pairs: number of (pixel, neighbour) pairs behind each value.
        isv: slope of ``log10(gamma)`` against ``log10(h)`` over the first ``n_fit`` lags.
        r2: coefficient of determination of that fit.
        angles: ``(lags, directions)`` angle of each direction in radians.
        sums: ``(lags, directions)`` sum of squared differences per direction.
        counts: ``(lags, directions)`` pairs per direction.
        n_fit: lags in the slope fit.
        floor: semivariances at or below this are rounding noise (flat region).
    """

    lags: np.ndarray
    gamma: np.ndarray
    pairs: np.ndarray
    isv: float
    r2: float
    angles: np.ndarray
    sums: np.ndarray
    counts: np.ndarray
    n_fit: int = 5
    floor: float = 0.0

    def axis_isv(self) -> dict[int, tuple[float, float]]:
        r"""ISV and :math:`R^2` along each axis, pooling directions :math:`\theta` and :math:`\theta + \pi`.

        Only meaningful when every lag used the same directions (``directions="fixed"``).
        Keys are the axis angle in whole degrees in [0, 180): 0 = along the rows
        (vertical, top to bottom), 90 = along the columns (horizontal).
        """
        degrees = np.rint(np.degrees(self.angles[0]) % 180.0).astype(int) % 180
        out: dict[int, tuple[float, float]] = {}
        for axis in sorted(set(degrees.tolist())):
            on_axis = degrees == axis
            count = self.counts[:, on_axis].sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                gamma = np.where(count > 0, 0.5 * self.sums[:, on_axis].sum(axis=1) / count, np.nan)
            out[axis] = _initial_slope(self.lags, gamma, self.n_fit, self.floor)
        return out


def _sample(mask: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.nonzero(mask)
    count = max(1, int(len(rows) * fraction))
    pick = rng.choice(len(rows), size=count, replace=False)
    return rows[pick], cols[pick]


def _angles(n_directions: int, directions: str, rng: np.random.Generator) -> np.ndarray:
    if directions == "random":
        return rng.uniform(0.0, 2.0 * np.pi, size=n_directions)
    if directions == "fixed":
        return np.arange(n_directions) * (2.0 * np.pi / n_directions)
    raise ConfigError("variogram.directions", f"unknown direction mode {directions!r}.", "use 'random' or 'fixed'.")


def _offsets(h: float, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column offsets ``h cos(theta)``, ``h sin(theta)``, rounded to 1e-12 so that
    lattice directions land exactly on pixels (``cos(pi/2)`` is 6e-17, not 0)."""
    return np.round(h * np.cos(theta), 12), np.round(h * np.sin(theta), 12)


def _flat_floor(values: np.ndarray) -> float:
    """Semivariances below this are rounding noise of a flat region (no slope exists)."""
    return 1e-20 * float(np.mean(np.square(values)))


def _initial_slope(lags: np.ndarray, gamma: np.ndarray, n_fit: int, floor: float = 0.0) -> tuple[float, float]:
    from scipy.stats import linregress

    if n_fit < 2 or n_fit > len(lags):
        raise ConfigError("variogram.n_fit", f"n_fit={n_fit} must be between 2 and the number of lags ({len(lags)}).", "use 5 (seed).")
    x, y = lags[:n_fit], gamma[:n_fit]
    if not np.all(np.isfinite(y)) or np.any(y <= floor):
        return float("nan"), float("nan")
    fit = linregress(np.log10(x), np.log10(y))
    return float(fit.slope), float(fit.rvalue**2)


def semivariogram(
    image: np.ndarray,
    mask: np.ndarray,
    lags: Sequence[int] = (1, 2, 3, 4, 5, 6),
    fraction: float = 0.25,
    n_directions: int = 36,
    directions: str = "random",
    n_fit: int = 5,
    seed: int = 0,
) -> Variogram:
    r"""Sampled isotropic semivariogram, vectorised over pixels and directions.

    A fraction of the ROI pixels :math:`x_i` is drawn without replacement; for each lag
    :math:`h`, ``n_directions`` angles :math:`\theta_k` are drawn (uniform on
    :math:`[0, 2\pi)`, shared by all pixels as in the seed; or evenly spaced when
    ``directions="fixed"``). The neighbour value :math:`Z(x_i + h u_{\theta_k})` is read by
    bilinear interpolation (``scipy.ndimage.map_coordinates``, ``order=1``) and

    .. math:: \gamma(h) = \frac{1}{2 N_h} \sum_{i,k} \big(Z(x_i) - Z(x_i + h u_{\theta_k})\big)^2

    over the :math:`N_h` pairs whose neighbour lies inside the image and whose four
    interpolation pixels (those with weight above 1e-9) lie inside the mask. Row offset is :math:`h\cos\theta`, column
    offset :math:`h\sin\theta`, as in the seed.

    Differences from the seed, which change no slope: the seed omitted the ½ (a constant
    factor, a shift in log space), and it counted neighbours that fell outside the ROI as
    zero differences and used unseeded randomness; here they are excluded and the generator
    is ``numpy.random.default_rng(seed)`` (pixels first, then one draw of angles per lag).
    """
    from scipy.ndimage import binary_erosion, map_coordinates

    rng = np.random.default_rng(seed)
    image = np.asarray(image, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    weight = mask.astype(np.float64)
    r0, c0 = _sample(mask, fraction, rng)
    z0 = image[r0, c0]
    lags_arr = np.asarray(lags, dtype=np.float64)
    angles = np.empty((len(lags_arr), n_directions))
    sums = np.zeros((len(lags_arr), n_directions))
    counts = np.zeros((len(lags_arr), n_directions), dtype=np.int64)
    last_row, last_col = image.shape[0] - 1, image.shape[1] - 1
    direction = np.broadcast_to(np.arange(n_directions)[:, None], (n_directions, len(r0)))
    # Pixels whose 3 x 3 neighbourhood is all ROI: a neighbour whose nearest pixel is one of
    # them has its four interpolation pixels in the ROI, so only the others need the
    # (slower) interpolated mask test.
    safe = binary_erosion(mask, structure=np.ones((3, 3), bool), border_value=0)
    coords = np.empty((2, n_directions, len(r0)))
    for index, h in enumerate(lags_arr):
        angles[index] = _angles(n_directions, directions, rng)
        dr, dc = _offsets(h, angles[index])
        np.add(r0[None, :], dr[:, None], out=coords[0])
        np.add(c0[None, :], dc[:, None], out=coords[1])
        inside = (coords[0] >= 0) & (coords[0] <= last_row) & (coords[1] >= 0) & (coords[1] <= last_col)
        points = coords[:, inside]
        in_roi = safe[np.rint(points[0]).astype(np.intp), np.rint(points[1]).astype(np.intp)]
        check = np.flatnonzero(~in_roi)
        in_roi[check] = map_coordinates(weight, points[:, check], order=1, mode="nearest", prefilter=False) >= 1.0 - _TOL
        z = map_coordinates(image, points[:, in_roi], order=1, mode="nearest", prefilter=False)
        diff = np.broadcast_to(z0, inside.shape)[inside][in_roi] - z
        which = direction[inside][in_roi]
        sums[index] = np.bincount(which, weights=diff**2, minlength=n_directions)
        counts[index] = np.bincount(which, minlength=n_directions)
    return _finish(lags_arr, angles, sums, counts, n_fit, _flat_floor(z0))


def semivariogram_loop(
    image: np.ndarray,
    mask: np.ndarray,
    lags: Sequence[int] = (1, 2, 3, 4, 5, 6),
    fraction: float = 0.25,
    n_directions: int = 36,
    directions: str = "random",
    n_fit: int = 5,
    seed: int = 0,
) -> Variogram:
    """The same estimator as :func:`semivariogram`, written as a literal per-pixel loop.

    It draws the same random numbers in the same order and computes the bilinear value by
    hand, one pixel and one direction at a time, as the seed did. It exists as the
    reference that tests and ``benchmarks/features.py`` compare the vectorised version with.
    """
    rng = np.random.default_rng(seed)
    image = np.asarray(image, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    r0, c0 = _sample(mask, fraction, rng)
    lags_arr = np.asarray(lags, dtype=np.float64)
    rows, cols = image.shape
    angles = np.empty((len(lags_arr), n_directions))
    sums = np.zeros((len(lags_arr), n_directions))
    counts = np.zeros((len(lags_arr), n_directions), dtype=np.int64)
    for index, h in enumerate(lags_arr):
        angles[index] = _angles(n_directions, directions, rng)
        dr, dc = _offsets(h, angles[index])
        for k in range(len(dr)):
            for i, j in zip(r0, c0, strict=True):
                y = i + dr[k]
                x = j + dc[k]
                if y < 0 or y > rows - 1 or x < 0 or x > cols - 1:
                    continue
                y1, x1 = int(np.floor(y)), int(np.floor(x))
                y2, x2 = min(y1 + 1, rows - 1), min(x1 + 1, cols - 1)
                dy, dx = y - y1, x - x1
                corners = ((y1, x1, (1 - dy) * (1 - dx)), (y1, x2, (1 - dy) * dx), (y2, x1, dy * (1 - dx)), (y2, x2, dy * dx))
                if any(w > _TOL and not mask[a, b] for a, b, w in corners):
                    continue
                value = sum(w * image[a, b] for a, b, w in corners)
                sums[index, k] += (image[i, j] - value) ** 2
                counts[index, k] += 1
    return _finish(lags_arr, angles, sums, counts, n_fit, _flat_floor(image[r0, c0]))


def _finish(lags: np.ndarray, angles: np.ndarray, sums: np.ndarray, counts: np.ndarray, n_fit: int, floor: float) -> Variogram:
    pairs = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        gamma = np.where(pairs > 0, 0.5 * sums.sum(axis=1) / pairs, np.nan)
    isv, r2 = _initial_slope(lags, gamma, n_fit, floor)
    return Variogram(lags, gamma, pairs, isv, r2, angles, sums, counts, n_fit, floor)


@register_feature_family("variogram")
class VariogramFamily(FeatureFamily):
    r"""Initial slope of the variogram (ISV) of the ROI, with random directions (the seed's).

    :math:`\mathrm{ISV}` is the least-squares slope of :math:`\log_{10}\gamma(h)` against
    :math:`\log_{10} h` for :math:`h = 1..5` px, with :math:`\gamma` from
    :func:`semivariogram` (25 % of ROI pixels, lags 1-6 px, 36 directions per lag). For a
    fractional Brownian surface of Hurst exponent :math:`H`,
    :math:`\gamma(h) \propto h^{2H}`, so ISV :math:`\approx 2H`: rougher texture, lower ISV.

    Columns: ``variogram_isv``, ``variogram_r2`` (fit quality) and ``variogram_gamma_h<k>``
    per lag (grey levels squared on the 0-``scale`` image).

    Args:
        lags: lag distances in pixels.
        fraction: fraction of ROI pixels sampled.
        n_directions: directions per lag.
        n_fit: number of leading lags in the slope fit.
        seed: seed of ``numpy.random.default_rng``.
        scale: grey level of a pixel equal to 1.0 (only scales ``gamma``; ISV is scale-free).
    """

    directions = "random"

    def __init__(
        self,
        lags: Sequence[int] = (1, 2, 3, 4, 5, 6),
        fraction: float = 0.25,
        n_directions: int = 36,
        n_fit: int = 5,
        seed: int = 0,
        scale: float = 255.0,
    ) -> None:
        self.lags = tuple(int(h) for h in lags)
        self.fraction = fraction
        self.n_directions = n_directions
        self.n_fit = n_fit
        self.seed = seed
        self.scale = scale

    def compute(self, image: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
        image, mask = check_image_and_mask(image, mask)
        result = semivariogram(
            image * self.scale, mask, self.lags, self.fraction, self.n_directions, self.directions, self.n_fit, self.seed
        )
        out = {f"{self.name}_isv": result.isv, f"{self.name}_r2": result.r2}
        out.update({f"{self.name}_gamma_h{int(h)}": float(g) for h, g in zip(result.lags, result.gamma, strict=True)})
        if self.directions == "fixed":
            for axis, (isv, _) in result.axis_isv().items():
                out[f"{self.name}_isv_{axis}deg"] = isv
        return out


@register_feature_family("variogram_fixed")
class FixedDirectionVariogramFamily(VariogramFamily):
    r"""ISV with fixed, evenly spaced directions, overall and along each axis.

    Same estimator as ``variogram`` but the directions are :math:`\theta_k = 2\pi k / n`
    at every lag (default :math:`n = 4`: up, right, down, left, which fall on pixels, so no
    interpolation), and the value depends on the seed only through the pixel sample. The
    same directions at every lag allow a slope per axis (pooling :math:`\theta` and
    :math:`\theta + \pi`): with 4 directions, ``_isv_0deg`` along the rows (vertical,
    craniocaudal on a spine view) and ``_isv_90deg`` along the columns. Their difference
    measures anisotropy — osteoporotic trabecular bone loses its horizontal struts first.

    Columns: ``variogram_fixed_isv``, ``variogram_fixed_r2``, ``variogram_fixed_gamma_h<k>``,
    ``variogram_fixed_isv_<axis>deg``.
    """

    directions = "fixed"

    def __init__(
        self,
        lags: Sequence[int] = (1, 2, 3, 4, 5, 6),
        fraction: float = 0.25,
        n_directions: int = 4,
        n_fit: int = 5,
        seed: int = 0,
        scale: float = 255.0,
    ) -> None:
        super().__init__(lags, fraction, n_directions, n_fit, seed, scale)
