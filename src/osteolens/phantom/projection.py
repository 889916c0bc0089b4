"""Digitally reconstructed radiographs: Beer-Lambert line integrals, masks and the acquisition chain.

Physics: a ray through the body loses photons as ``I = I0 · exp(-∫ μ dx)``. The line
integral is the bone's excess attenuation (from the volume) plus water-equivalent soft
tissue of thickness ``T`` (mm)::

    A(r, c) = μ_water · T(r, c) + Σ_k μ_bone_excess(r, c, k) · Δx

Acquisition (every term varies per image so that brightness alone does not reveal density):
expected counts ``λ = I0 · exp(-A)`` with ``I0 = 100 000 · exposure`` photons per pixel,
Poisson quanta, detector blur (Gaussian, σ in pixels), gain and electronic noise,
``raw = gain · (blur(Poisson(λ)) + N(0, 2²))``, then the log signal
``L = -ln(max(raw, 0.5))`` is windowed between two jittered percentiles of the image and
passed through a random tone curve ``display = clip((L - lo) / (hi - lo), 0, 1) ** γ``:
bone bright, in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.transform import resize

from osteolens.phantom.volume import VertebraGeometry, VertebraVolume, axis_coordinates

MU_WATER = 0.0206
"""Linear attenuation of water at ~60 keV effective energy, 1/mm."""
VIEWS = ("AP", "LAT")
_AXIS = {"AP": 1, "LAT": 2}


def project(volume: VertebraVolume | np.ndarray, axis: str | int, *, voxel_mm: float | None = None, size: int | None = None) -> np.ndarray:
    """Line integral ``Σ μ Δx`` through the volume (dimensionless), optionally resized.

    Args:
        volume: a :class:`VertebraVolume` or a ``[z, y, x]`` attenuation array (1/mm).
        axis: ``"AP"`` (rays along y: image rows z, columns x), ``"LAT"`` (rays along x: rows z,
            columns y with anterior on the left) or an array axis.
        voxel_mm: voxel edge (taken from the volume when it is a :class:`VertebraVolume`).
        size: output side in pixels (bilinear resize, pixel edges aligned); None keeps the grid.

    Returns:
        ``float32`` array ``(rows, cols)``.
    """
    if isinstance(volume, VertebraVolume):
        voxel_mm = volume.voxel_mm if voxel_mm is None else voxel_mm
        volume = volume.mu
    if voxel_mm is None:
        raise ValueError("project: voxel_mm is required when volume is a plain array")
    ax = _AXIS[axis.upper()] if isinstance(axis, str) else int(axis)
    line = volume.sum(axis=ax, dtype=np.float64) * voxel_mm
    if size is not None and line.shape != (size, size):
        line = resize(line, (size, size), order=1, mode="edge", anti_aliasing=False)
    return line.astype(np.float32)


def body_mask(geometry: VertebraGeometry, view: str, size: int, fov_mm: float) -> np.ndarray:
    """Projection of the vertebral body onto the image plane (bool ``(size, size)``), drawn analytically.

    LAT: a pixel (z, y) is inside when ``|y - y0| < depth/2`` and ``|z - z0| <= h(t)/2``.
    AP: a pixel (z, x) is inside when some y on the body's chord at x has ``|z - z0| <= h(t)/2``.
    """
    c = axis_coordinates(size, fov_mm)
    z0, y0, x0 = geometry.centre_mm
    ay, ax = geometry.depth_mm / 2.0, geometry.width_mm / 2.0
    if view.upper() == "LAT":
        t = (c - y0) / ay
        half = np.where(np.abs(t) < 1.0, geometry.height_at(np.clip(t, -1.0, 1.0)) / 2.0, -1.0)
    else:
        u = (c - x0) / ax
        chord = np.sqrt(np.clip(1.0 - u**2, 0.0, 1.0))
        t = np.linspace(-1.0, 1.0, 65)[None, :] * chord[:, None]
        half = np.where(np.abs(u) < 1.0, geometry.height_at(t).max(axis=1) / 2.0, -1.0)
    return np.abs(c[:, None] - z0) <= half[None, :]


@dataclass(frozen=True)
class Acquisition:
    """The nuisance settings of one exposure (recorded in ``labels.csv``).

    Attributes:
        exposure: relative tube output (I0 = 100 000 · exposure photons per pixel).
        gain: detector gain.
        soft_tissue_mm: mean water-equivalent soft-tissue thickness.
        tissue_slope: fractional change of soft tissue across the image.
        tissue_angle: direction of that change, radians.
        blur_px: detector blur, Gaussian σ in pixels.
        window_low_pct: percentile of the log signal mapped to black.
        window_high_pct: reference percentile of the log signal.
        window_width: white is at ``lo + window_width · (reference - lo)`` (above 1: a dimmer
            image; below 1: the densest bone saturates).
        gamma: display tone-curve exponent.
    """

    exposure: float
    gain: float
    soft_tissue_mm: float
    tissue_slope: float
    tissue_angle: float
    blur_px: float
    window_low_pct: float
    window_high_pct: float
    window_width: float
    gamma: float


def draw_acquisition(rng: np.random.Generator) -> Acquisition:
    """Draw one image's nuisance settings (ranges in ``docs/phantom.md``)."""
    return Acquisition(
        exposure=float(np.exp(rng.uniform(np.log(0.4), np.log(2.5)))),
        gain=float(np.exp(rng.uniform(np.log(0.5), np.log(2.0)))),
        soft_tissue_mm=float(rng.uniform(30.0, 150.0)),
        tissue_slope=float(rng.uniform(0.0, 0.15)),
        tissue_angle=float(rng.uniform(0.0, 2.0 * np.pi)),
        blur_px=float(rng.uniform(0.5, 1.2)),
        window_low_pct=float(rng.uniform(0.5, 5.0)),
        window_high_pct=float(rng.uniform(99.0, 99.9)),
        window_width=float(rng.uniform(0.85, 2.0)),
        gamma=float(np.exp(rng.uniform(np.log(0.75), np.log(1.33)))),
    )


def soft_tissue(rng: np.random.Generator, acquisition: Acquisition, size: int) -> np.ndarray:
    """Water-equivalent soft-tissue thickness (mm) per pixel: a tilted slab with smooth bumps.

    The bumps (1.5 % of the thickness, about an eighth of the field across) are smoothed
    white noise on a 32 x 32 grid, upsampled: the same field as smoothing at full size, at a
    fraction of the cost.
    """
    r = np.linspace(-0.5, 0.5, size)
    ramp = np.cos(acquisition.tissue_angle) * r[:, None] + np.sin(acquisition.tissue_angle) * r[None, :]
    coarse = ndimage.gaussian_filter(rng.standard_normal((32, 32)), sigma=4.0, mode="wrap")
    bumps = resize(coarse, (size, size), order=1, mode="wrap", anti_aliasing=False)
    bumps *= 0.015 / max(float(bumps.std()), 1e-9)
    return (acquisition.soft_tissue_mm * (1.0 + acquisition.tissue_slope * ramp + bumps)).astype(np.float32)


def acquire(rng: np.random.Generator, bone_line: np.ndarray, acquisition: Acquisition) -> np.ndarray:
    """Turn a bone line integral into a displayed radiograph (bone bright, ``float32`` in [0, 1])."""
    size = bone_line.shape[0]
    attenuation = MU_WATER * soft_tissue(rng, acquisition, size) + bone_line
    expected = 100000.0 * acquisition.exposure * np.exp(-attenuation.astype(np.float64))
    quanta = ndimage.gaussian_filter(rng.poisson(expected).astype(np.float64), acquisition.blur_px, mode="nearest")
    raw = acquisition.gain * (quanta + rng.normal(0.0, 2.0, quanta.shape))
    log_signal = -np.log(np.maximum(raw, 0.5))
    lo, ref = np.percentile(log_signal, [acquisition.window_low_pct, acquisition.window_high_pct])
    hi = lo + acquisition.window_width * (ref - lo)
    display = np.clip((log_signal - lo) / max(hi - lo, 1e-9), 0.0, 1.0) ** acquisition.gamma
    return display.astype(np.float32)
