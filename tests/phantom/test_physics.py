"""Volumes, projections and masks: density, geometry and the Beer-Lambert chain."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage
from scipy.stats import spearmanr

from osteolens.phantom import (
    TrabecularParameters,
    acquire,
    body_mask,
    draw_acquisition,
    project,
    simulate_vertebra,
)
from osteolens.phantom.volume import MU_BONE_EXCESS

FOV, SIZE, GRID = 64.0, 128, 64
SPACING = FOV / SIZE


def _vertebra(bmd: float, heights=(26.0, 25.0, 26.0), seed: int = 0, **kwargs):
    return simulate_vertebra(np.random.default_rng(seed), bmd, heights, width_mm=44.0, depth_mm=32.0, grid=GRID, fov_mm=FOV, **kwargs)


def test_bone_fraction_hits_target_and_projected_density_rises() -> None:
    fractions, densities = [], {"AP": [], "LAT": []}
    for bmd in (40.0, 80.0, 120.0, 160.0, 200.0, 240.0):
        volume = _vertebra(bmd)
        assert volume.bone_fraction == pytest.approx(volume.trabecular.bone_fraction, abs=0.005)
        assert volume.trabecular.bone_fraction == pytest.approx(bmd / 1000.0, rel=0.12)
        fractions.append(volume.bone_fraction)
        for view in ("AP", "LAT"):
            mask = body_mask(volume.geometry, view, SIZE, FOV)
            densities[view].append(float(project(volume, view, size=SIZE)[mask].mean()))
    for view, values in densities.items():
        assert np.all(np.diff(values) > 0), (view, values)
        assert spearmanr(fractions, values)[0] == pytest.approx(1.0)


def test_line_integral_of_a_solid_block_is_mu_times_path() -> None:
    # A solid bone slab 10 voxels deep along y: every ray through it integrates mu * 10 * voxel.
    block = np.zeros((8, 16, 8), dtype=np.float32)
    block[:, 3:13, :] = MU_BONE_EXCESS
    line = project(block, "AP", voxel_mm=0.5)
    assert line.shape == (8, 8)
    assert np.allclose(line, MU_BONE_EXCESS * 10 * 0.5)
    assert np.allclose(project(block, "LAT", voxel_mm=0.5)[:, 3:13], MU_BONE_EXCESS * 8 * 0.5)


@pytest.mark.parametrize(
    "heights", [(26.0, 25.2, 26.0), (17.0, 22.0, 26.0), (25.0, 16.0, 25.5), (15.0, 15.5, 15.8)], ids=["normal", "wedge", "biconcave", "crush"]
)
def test_lateral_mask_heights_match_geometry(heights: tuple[float, float, float]) -> None:
    volume = _vertebra(120.0, heights, centre_mm=(1.0, -1.5, 0.5))
    mask = body_mask(volume.geometry, "LAT", SIZE, FOV)
    columns = np.flatnonzero(mask.any(axis=0))
    column_heights = mask.sum(axis=0)
    anterior, posterior = column_heights[columns[0]], column_heights[columns[-1]]
    middle_column = int(round((FOV / 2 + volume.geometry.centre_mm[1]) / SPACING - 0.5))
    assert abs(anterior - heights[0] / SPACING) <= 1.5
    assert abs(posterior - heights[2] / SPACING) <= 1.5
    assert abs(column_heights[middle_column] - heights[1] / SPACING) <= 1.0
    # mask width = depth in the lateral view, width in the AP view
    assert abs(len(columns) - 32.0 / SPACING) <= 1.0
    ap = body_mask(volume.geometry, "AP", SIZE, FOV)
    assert abs(np.flatnonzero(ap.any(axis=0)).size - 44.0 / SPACING) <= 1.0
    # the AP outline's tallest column is the tallest point of the body
    assert abs(ap.sum(axis=0).max() - max(heights) / SPACING) <= 1.0


@pytest.mark.parametrize("view", ["AP", "LAT"])
def test_mask_matches_the_projected_body(view: str) -> None:
    volume = _vertebra(150.0, (18.0, 23.0, 26.0), centre_mm=(-2.0, 1.0, 1.5))
    line = project(volume, view, size=SIZE)
    mask = body_mask(volume.geometry, view, SIZE, FOV)
    projected = ndimage.binary_fill_holes(line > 0.4 * np.median(line[mask]))  # edge at 40 % of the body density
    assert (projected & mask).sum() / (projected | mask).sum() > 0.9
    # the outlines differ only by the 1-mm voxels' partial volume: within 2 px of the mask edge
    edge_distance = np.maximum(ndimage.distance_transform_edt(mask), ndimage.distance_transform_edt(~mask))
    assert edge_distance[projected ^ mask].max() <= 2.0


def test_endplate_angles() -> None:
    geometry = _vertebra(150.0, (20.0, 23.0, 26.0)).geometry
    expected = np.degrees(np.arctan(3.0 / 32.0))
    assert geometry.superior_endplate_deg == pytest.approx(-expected)
    assert geometry.inferior_endplate_deg == pytest.approx(expected)
    assert geometry.wedge_angle_deg == pytest.approx(2 * expected)


def test_anisotropic_trabeculae_are_vertical() -> None:
    params = TrabecularParameters(bone_fraction=0.12, spacing_mm=0.7, anisotropy=3.0)
    mu = _vertebra(120.0, trabecular=params).mu
    core = mu[20:44, 24:40, 24:40] > MU_BONE_EXCESS / 2  # bone voxels inside the body, away from the shell
    # neighbours along z agree far more often than neighbours along x
    vertical = (core[1:] == core[:-1]).mean()
    horizontal = (core[:, :, 1:] == core[:, :, :-1]).mean()
    assert vertical > horizontal + 0.05


def test_acquisition_is_bone_bright_in_unit_range_and_reproducible() -> None:
    volume = _vertebra(150.0)
    line = project(volume, "LAT", size=SIZE)
    mask = body_mask(volume.geometry, "LAT", SIZE, FOV)
    acquisition = draw_acquisition(np.random.default_rng(3))
    image = acquire(np.random.default_rng(4), line, acquisition)
    assert image.dtype == np.float32 and image.min() >= 0.0 and image.max() <= 1.0
    assert image[mask].mean() > image[~mask].mean() + 0.1
    assert np.array_equal(image, acquire(np.random.default_rng(4), line, acquisition))
    # Beer-Lambert: without noise, blur or tone curve the displayed value is affine in the
    # attenuation, display = (A - lo) / (hi - lo) with A = mu_w T + line; so an image of the
    # same soft tissue (same generator state) with half the bone is an exact affine
    # combination of the first image and the line integral.
    flat = dataclasses.replace(acquisition, exposure=1e9, blur_px=1e-3, tissue_slope=0.0, gamma=1.0,
                               window_low_pct=0.0, window_high_pct=100.0, window_width=1.0)
    a = acquire(np.random.default_rng(4), line, flat)
    b = acquire(np.random.default_rng(4), 0.5 * line, flat)  # same soft tissue: same generator state
    design = np.column_stack([b.ravel(), line.ravel(), np.ones(a.size)])
    coef, *_ = np.linalg.lstsq(design, a.ravel().astype(float), rcond=None)
    residual = a.ravel() - design @ coef
    assert np.abs(residual).max() < 1e-3
    assert coef[0] > 0 and coef[1] > 0  # more bone, brighter
