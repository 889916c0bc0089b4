"""Feature extraction speed: the seed's full feature set on 512 x 512 ROIs, and vectorised ISV vs a literal loop.

Run: .venv/bin/python benchmarks/features.py [--images 6] [--size 512] [--repeats 3]

Writes the ``features`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _report import machine_description, median_seconds, write_section


def textured_roi(size: int, seed: int) -> np.ndarray:
    """A bone-like random texture in [0, 1]: a fractional Brownian surface (H = 0.4) plus noise."""
    rng = np.random.default_rng(seed)
    k = np.hypot(np.fft.fftfreq(size)[:, None], np.fft.rfftfreq(size)[None, :])
    k[0, 0] = 1.0
    amplitude = k**-1.4
    amplitude[0, 0] = 0.0
    field = np.fft.irfft2(amplitude * (rng.normal(size=k.shape) + 1j * rng.normal(size=k.shape)), s=(size, size))
    field += 0.1 * field.std() * rng.normal(size=field.shape)
    return (field - field.min()) / (field.max() - field.min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--isv-size", type=int, default=128, help="ROI side for the ISV loop comparison")
    args = parser.parse_args()

    from osteolens.data.manifest import Manifest
    from osteolens.features import SEED_FAMILIES, ExtractionConfig, extract_features
    from osteolens.features.base import border_mask
    from osteolens.features.variogram import semivariogram, semivariogram_loop
    from osteolens.io import write_png

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for i in range(args.images):
            write_png(textured_roi(args.size, i), root / f"roi{i}.png", bits=16)
        manifest = Manifest(pd.DataFrame({"image": [f"roi{i}.png" for i in range(args.images)], "patient_id": [f"P{i}" for i in range(args.images)]}), root)
        config = ExtractionConfig(families=list(SEED_FAMILIES), roi="none")
        n_features = len(extract_features(manifest.subset([True] + [False] * (args.images - 1)), config).feature_columns)
        per_family = {}
        for jobs in (1, 2):
            seconds = median_seconds(lambda jobs=jobs: extract_features(manifest, config, jobs=jobs), repeats=args.repeats, warmup=0)
            rows.append((jobs, seconds, args.images / seconds))
            print(f"jobs={jobs}: {seconds:.1f} s for {args.images} images, {args.images / seconds:.3f} images/s", flush=True)
        from osteolens.features import build_feature_family

        image = textured_roi(args.size, 0)
        for name in SEED_FAMILIES:
            family = build_feature_family(name)
            per_family[name] = median_seconds(lambda family=family: family.compute(image), repeats=args.repeats, warmup=1)

    isv_image = textured_roi(args.isv_size, 99) * 255.0
    mask = border_mask(isv_image.shape)
    fast = semivariogram(isv_image, mask, seed=0)
    start = time.perf_counter()
    slow = semivariogram_loop(isv_image, mask, seed=0)
    loop_seconds = time.perf_counter() - start
    fast_seconds = median_seconds(lambda: semivariogram(isv_image, mask, seed=0), repeats=5)
    same = abs(fast.isv - slow.isv) / abs(slow.isv)
    print(f"ISV {args.isv_size}px: loop {loop_seconds:.2f} s, vectorised {fast_seconds * 1000:.1f} ms, x{loop_seconds / fast_seconds:.0f}, rel. diff {same:.1e}")

    import os

    load = os.getloadavg()[0]
    table = "\n".join(f"| {jobs} | {seconds:.1f} | {rate:.3f} |" for jobs, seconds, rate in rows)
    families = "\n".join(f"| `{name}` | {seconds:.2f} |" for name, seconds in per_family.items())
    markdown = f"""## Feature extraction (`benchmarks/features.py`)

Machine: {machine_description()}. Shared with other jobs while measured (load average
{load:.1f} on its cores): treat as indicative; on such a loaded machine a second worker
process has no idle core to use, so `--jobs 2` cannot beat `--jobs 1`.

The biplanar seed's full feature set (`{', '.join(SEED_FAMILIES)}`: {n_features} features per image, pyradiomics
original + the 7 `db2` sub-bands, Fourier RMS/FMS, ISV) on {args.images} textured {args.size} x {args.size} ROIs
(16-bit PNG, `--roi none`, histogram equalisation on), `osteolens.features.extract_features`, median of
{args.repeats} runs. `--jobs 2` includes starting the two spawned worker processes on every run.

| jobs | seconds for {args.images} images | images / s |
|---:|---:|---:|
{table}

Per image and family (one {args.size} px ROI, median seconds):

| family | s |
|---|---:|
{families}

Variogram ISV on a {args.isv_size} x {args.isv_size} ROI (25 % of pixels, lags 1-6, 36 random directions, seed 0):
the literal per-pixel loop (`semivariogram_loop`, as the seed computed it, one bilinear value at a time) against
the vectorised `semivariogram` (`scipy.ndimage.map_coordinates` over all pixels and directions of a lag), same
random numbers.

| implementation | seconds | ISV |
|---|---:|---:|
| per-pixel loop (baseline) | {loop_seconds:.2f} | {slow.isv:.6f} |
| vectorised | {fast_seconds:.4f} | {fast.isv:.6f} |

Speed-up x{loop_seconds / fast_seconds:.0f} (goal >= 50x); relative difference of the two ISVs {same:.1e}.
"""
    write_section("features", markdown)


if __name__ == "__main__":
    main()
