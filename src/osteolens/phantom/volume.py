"""A 3-D vertebral body: trabecular bone inside a cortical shell, with known geometry.

Coordinates: the volume is indexed ``[z, y, x]`` on a cubic grid of ``grid`` voxels covering
``fov_mm`` in each direction, centred on the origin; z runs superior → inferior, y anterior →
posterior, x across the body (patient right → left). Voxel values are *excess* linear
attenuation over water (1/mm), so marrow (≈ water) is 0 and the soft tissue the body sits in
is added at projection time.

The body is an elliptic cylinder (semi-axes ``width/2`` across, ``depth/2`` front to back)
whose height varies along the anterior-posterior axis through the anterior, middle and
posterior heights (Ha, Hm, Hp) by the quadratic through the three points, with
``t = (y - y0) / (depth / 2)`` in [-1, 1] (anterior at -1)::

    h(t) = Hm + (Hp - Ha) / 2 · t + ((Ha + Hp) / 2 - Hm) · t²

and the endplates at ``z0 ∓ h(t) / 2``: a wedge fracture lowers Ha, a biconcave one Hm and a
crush all three.

Trabecular bone is a Gaussian-smoothed white-noise field, smoothed more along z than across
(vertical trabeculae), thresholded at the quantile that leaves the target bone volume
fraction BV/TV inside the cortical shell. Lower BMD means fewer, thicker-spaced and more
vertical trabeculae (horizontal struts are resorbed first) and a thinner cortex.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

MU_BONE_EXCESS = 0.036
"""Linear attenuation of bone tissue minus water at ~60 keV effective energy, 1/mm (0.057 - 0.021)."""
TISSUE_MINERAL_DENSITY = 1000.0
"""mg hydroxyapatite per cm³ of bone tissue at which BV/TV = BMD / TMD (vBMD 170 → BV/TV 0.17)."""


@dataclass(frozen=True)
class VertebraGeometry:
    """True shape and position of a vertebral body (mm and degrees).

    ``centre_mm`` is (z, y, x) relative to the volume centre. Endplate angles are the slopes
    of the lines joining the anterior and posterior endplate corners in the lateral view,
    positive when the posterior corner lies lower (further down the image) than the
    anterior one; ``wedge_angle_deg`` is the angle between the two endplates (positive when
    the anterior wall is the shorter).
    """

    level: str
    anterior_height_mm: float
    middle_height_mm: float
    posterior_height_mm: float
    width_mm: float
    depth_mm: float
    cortical_mm: float
    endplate_mm: float
    centre_mm: tuple[float, float, float]

    def height_at(self, t: np.ndarray) -> np.ndarray:
        """Body height (mm) at normalised anterior-posterior position ``t`` (anterior -1, posterior +1)."""
        ha, hm, hp = self.anterior_height_mm, self.middle_height_mm, self.posterior_height_mm
        return hm + (hp - ha) / 2.0 * t + ((ha + hp) / 2.0 - hm) * t**2

    @property
    def superior_endplate_deg(self) -> float:
        """Slope of the superior endplate (anterior → posterior corner), degrees."""
        return float(np.degrees(np.arctan2(-(self.posterior_height_mm - self.anterior_height_mm) / 2.0, self.depth_mm)))

    @property
    def inferior_endplate_deg(self) -> float:
        """Slope of the inferior endplate (anterior → posterior corner), degrees."""
        return float(np.degrees(np.arctan2((self.posterior_height_mm - self.anterior_height_mm) / 2.0, self.depth_mm)))

    @property
    def wedge_angle_deg(self) -> float:
        """Angle between the endplates, degrees (positive: anterior wall shorter)."""
        return self.inferior_endplate_deg - self.superior_endplate_deg


@dataclass(frozen=True)
class TrabecularParameters:
    """Microstructure of the trabecular field.

    Attributes:
        bone_fraction: target BV/TV.
        spacing_mm: standard deviation (mm) of the Gaussian smoothing across (x, y): the
            trabecular spacing scale.
        anisotropy: ratio of the vertical to the horizontal smoothing.
    """

    bone_fraction: float
    spacing_mm: float
    anisotropy: float


def trabecular_parameters(rng: np.random.Generator, bmd: float) -> TrabecularParameters:
    """Microstructure for a trabecular vBMD (mg/cm³).

    BV/TV = BMD / TMD · (1 + 3 % noise); spacing 0.40 → 0.85 mm and anisotropy 1.6 → 3.8 as
    BMD falls from 200 to 30 mg/cm³ (each with a little individual noise).
    """
    loss = float(np.clip((200.0 - bmd) / 170.0, 0.0, 1.0))
    bvtv = float(np.clip(bmd / TISSUE_MINERAL_DENSITY * rng.normal(1.0, 0.03), 0.02, 0.45))
    spacing = float(np.clip(0.40 + 0.45 * loss + rng.normal(0.0, 0.04), 0.3, 1.2))
    anisotropy = float(np.clip(1.6 + 2.2 * loss + rng.normal(0.0, 0.15), 1.2, 4.5))
    return TrabecularParameters(bvtv, spacing, anisotropy)


@dataclass
class VertebraVolume:
    """A simulated vertebral body.

    Attributes:
        mu: ``float32`` array ``(grid, grid, grid)`` indexed [z, y, x]: excess attenuation over
            water, 1/mm.
        voxel_mm: edge of a voxel, mm.
        geometry: the true shape.
        trabecular: microstructure parameters used.
        bone_fraction: realised BV/TV inside the cortical shell.
    """

    mu: np.ndarray
    voxel_mm: float
    geometry: VertebraGeometry
    trabecular: TrabecularParameters
    bone_fraction: float


def axis_coordinates(n: int, fov_mm: float) -> np.ndarray:
    """Centres (mm) of ``n`` pixels or voxels covering ``fov_mm``, centred on 0."""
    step = fov_mm / n
    return (np.arange(n) + 0.5) * step - fov_mm / 2.0


def _inside_distance(geometry: VertebraGeometry, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Approximate distance (mm, positive inside) to the side wall and to the nearer endplate."""
    z0, y0, x0 = geometry.centre_mm
    ay, ax = geometry.depth_mm / 2.0, geometry.width_mm / 2.0
    v, u = (y - y0) / ay, (x - x0) / ax
    r = np.sqrt(v**2 + u**2)
    # First-order distance to the ellipse r = 1: (1 - r) / |grad r|.
    grad = np.sqrt((v / ay) ** 2 + (u / ax) ** 2) / np.maximum(r, 1e-6)
    d_wall = (1.0 - r) / np.maximum(grad, 1e-6)
    t = np.clip(v, -1.0, 1.0)
    d_end = geometry.height_at(t) / 2.0 - np.abs(z - z0)
    return d_wall, d_end


def simulate_vertebra(
    rng: np.random.Generator,
    bmd: float,
    heights: tuple[float, float, float],
    *,
    width_mm: float = 45.0,
    depth_mm: float = 33.0,
    level: str = "L1",
    grid: int = 64,
    fov_mm: float = 64.0,
    centre_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
    trabecular: TrabecularParameters | None = None,
) -> VertebraVolume:
    """Simulate one vertebral body.

    Args:
        rng: random generator (the only source of randomness).
        bmd: trabecular vBMD, mg/cm³; sets BV/TV, spacing, anisotropy and cortical thickness.
        heights: anterior, middle and posterior heights, mm.
        width_mm: across the body (x).
        depth_mm: front to back (y).
        level: vertebral level, recorded in the geometry.
        grid: voxels per side.
        fov_mm: field of view per side, mm.
        centre_mm: (z, y, x) position of the body centre.
        trabecular: microstructure; drawn from ``bmd`` by :func:`trabecular_parameters` when None.

    Returns:
        The volume, its true geometry and the realised bone fraction.
    """
    trabecular = trabecular or trabecular_parameters(rng, bmd)
    cortical = float(np.clip(0.3 + 0.35 * bmd / 200.0 + rng.normal(0.0, 0.08), 0.2, 1.2))
    geometry = VertebraGeometry(
        level=level,
        anterior_height_mm=float(heights[0]),
        middle_height_mm=float(heights[1]),
        posterior_height_mm=float(heights[2]),
        width_mm=float(width_mm),
        depth_mm=float(depth_mm),
        cortical_mm=cortical,
        endplate_mm=float(cortical * 1.3),
        centre_mm=tuple(float(c) for c in centre_mm),
    )
    voxel = fov_mm / grid
    c = axis_coordinates(grid, fov_mm).astype(np.float32)
    d_wall, d_end = _inside_distance(geometry, c[:, None, None], c[None, :, None], c[None, None, :])
    # Partial-volume occupancies (a linear ramp one voxel wide across each surface).
    body = np.clip(np.minimum(d_wall, d_end) / voxel + 0.5, 0.0, 1.0)
    inner = np.clip(np.minimum(d_wall - geometry.cortical_mm, d_end - geometry.endplate_mm) / voxel + 0.5, 0.0, 1.0)

    sigma_xy = trabecular.spacing_mm / voxel
    field = ndimage.gaussian_filter(
        rng.standard_normal((grid, grid, grid), dtype=np.float32),
        sigma=(sigma_xy * trabecular.anisotropy, sigma_xy, sigma_xy),
        mode="wrap",
    )
    core = inner > 0.5
    values = field[core]
    if values.size == 0:
        bone = np.zeros_like(field, dtype=bool)
        realised = 0.0
    else:
        k = int(round((1.0 - trabecular.bone_fraction) * (values.size - 1)))
        threshold = np.partition(values, k)[k]
        bone = field > threshold
        realised = float(bone[core].mean())
    mu = MU_BONE_EXCESS * ((body - inner) + inner * bone)
    return VertebraVolume(mu.astype(np.float32), voxel, geometry, trabecular, realised)
