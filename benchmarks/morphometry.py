"""Vertebral morphometry speed (vertebrae per second) from landmarks and from masks.

Run: ``.venv/bin/python benchmarks/morphometry.py``; writes the ``morphometry`` section of
docs/benchmarks.md.

* Landmarks: the AASCE corner table of ``shared/data/spine_landmarks_aasce`` (466 spines,
  17 vertebrae each) read and measured end to end (heights, angles, checks, Cobb angles),
  without overlays; falls back to synthetic spines when the data is absent.
* Masks: 200 x 200 masks of randomly rotated, wedged quadrilaterals (heights 28-55 px),
  measured by ``measure_mask`` in the vertebra's own frame.
* Baseline: the biplanar seed's method as its summary describes it (rotate the mask by a
  fixed -35 degrees, take the outline's extreme points as corners), re-written here for
  comparison only, on the same masks: speed and height error.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_description, median_seconds, write_section  # noqa: E402

from osteolens.data.paths import shared_dataset  # noqa: E402
from osteolens.morphometry import measure_inputs, measure_mask, read_landmarks  # noqa: E402

REPEATS = 5
N_MASKS = 200


def _quad(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float, float]:
    """A rotated wedge: corners (TL, TR, BL, BR), its cranial direction, left and right heights."""
    width, left, right = rng.uniform(60, 100), rng.uniform(28, 55), rng.uniform(40, 55)
    theta = np.radians(rng.uniform(-180, 180))
    body = np.array([[0, 0], [width, 0], [0, left], [width, right]], dtype=float)
    body -= body.mean(axis=0)
    rot = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
    up = np.array([0.0, -1.0]) @ rot.T
    return body @ rot.T + 100.0, up, left, right


def _raster(corners: np.ndarray, supersample: int = 8) -> np.ndarray:
    big = np.zeros((200 * supersample, 200 * supersample), np.uint8)
    fine = (corners[[0, 1, 3, 2]] + 0.5) * supersample - 0.5
    cv2.fillPoly(big, [np.round(fine * 16).astype(np.int32)], 255, shift=4)
    return (cv2.resize(big, (200, 200), interpolation=cv2.INTER_AREA) > 127).astype(np.uint8)


def seed_style_heights(mask: np.ndarray, angle_deg: float = -35.0) -> tuple[float, float]:
    """Baseline: rotate by a fixed angle, corners = extreme outline points, left/right heights."""
    rotated = ndimage.rotate(mask.astype(np.uint8), angle_deg, order=0, reshape=True)
    contours, _ = cv2.findContours(rotated, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    points = max(contours, key=len).reshape(-1, 2).astype(float)
    x, y = points[:, 0], points[:, 1]
    tl, tr = points[np.argmin(x + y)], points[np.argmax(x - y)]
    bl, br = points[np.argmax(y - x)], points[np.argmax(x + y)]
    return float(np.linalg.norm(bl - tl)), float(np.linalg.norm(br - tr))


def _synthetic_landmarks(path: Path, spines: int = 100) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for s in range(spines):
        for k in range(17):
            top = 40.0 + 50 * k
            quad = [(100, top), (160, top + rng.normal(0, 2)), (100, top + 35), (160, top + 35 + rng.normal(0, 2))]
            for corner, (x, y) in zip(("top_left", "top_right", "bottom_left", "bottom_right"), quad, strict=True):
                rows.append({"image": f"s{s}.png", "vertebra": f"V{k}", "corner": corner, "x": x, "y": y})
    pd.DataFrame(rows).to_csv(path, index=False)


def main() -> None:
    """Time both inputs and the baseline; write the section."""
    data = shared_dataset("spine_landmarks_aasce")
    with tempfile.TemporaryDirectory() as tmp:
        if data is not None:
            table, source = data / "landmarks.csv", "AASCE landmarks.csv (466 AP spines x 17 vertebrae)"
        else:
            table, source = Path(tmp) / "marks.csv", "synthetic table (100 spines x 17 vertebrae)"
            _synthetic_landmarks(table)
        spines = read_landmarks(table)
        n_landmark = sum(len(s.names) for s in spines)
        t_landmarks = median_seconds(lambda: measure_inputs(read_landmarks(table), view="AP"), REPEATS)

    rng = np.random.default_rng(1)
    cases = [_quad(rng) for _ in range(N_MASKS)]
    masks = [_raster(c[0]) for c in cases]
    t_masks = median_seconds(lambda: [measure_mask(m, up=c[1]) for m, c in zip(masks, cases, strict=True)], REPEATS)
    t_seed = median_seconds(lambda: [seed_style_heights(m) for m in masks], REPEATS)

    ours = np.array([[abs(v.left_height_px - c[2]), abs(v.right_height_px - c[3])] for v, c in
                     zip((measure_mask(m, up=c[1]) for m, c in zip(masks, cases, strict=True)), cases, strict=True)])
    seed = np.array([[abs(h[0] - c[2]), abs(h[1] - c[3])] for h, c in zip(map(seed_style_heights, masks), cases, strict=True)])

    rate = lambda n, t: f"{n / t:,.0f}"  # noqa: E731
    markdown = f"""## Vertebral morphometry

Machine: {machine_description()}; load average {os.getloadavg()[0]:.1f} when measured (shared
machine: figures are a lower bound). Median of {REPEATS} runs (one warm-up).

| input | vertebrae | median time (s) | vertebrae / s | side-height error, mean / max (px) |
|---|---:|---:|---:|---:|
| landmarks: {source}, read + measured + checked + Cobb | {n_landmark} | {t_landmarks:.3f} | {rate(n_landmark, t_landmarks)} | exact (corners given) |
| masks: {N_MASKS} rotated wedges, 200 x 200 px, `measure_mask` (own frame) | {N_MASKS} | {t_masks:.3f} | {rate(N_MASKS, t_masks)} | {ours.mean():.2f} / {ours.max():.2f} |
| baseline (seed method: fixed -35 degree rotation, extreme points), same masks | {N_MASKS} | {t_seed:.3f} | {rate(N_MASKS, t_seed)} | {seed.mean():.2f} / {seed.max():.2f} |

The baseline is only right for bodies lying at its one hard-coded angle; osteolens finds each
body's own frame (minimum-area rectangle, cranial direction from the neighbours) and refines the
corners to sub-pixel lines. Command: `.venv/bin/python benchmarks/morphometry.py`.
"""
    write_section("morphometry", markdown)
    print(markdown)


if __name__ == "__main__":
    main()
