"""Synthetic radiograph cohorts written to PNG: a signal a tiny CNN learns in a few epochs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from osteolens.io import write_png


def make_cohort(root: Path, patients: int = 32, images_per_patient: int = 2, size: int = 32, seed: int = 0) -> Path:
    """Write a cohort and its manifest; return the manifest path.

    Class ``osteoporosis`` images hold a bright 8x8 square at a random place on a noisy
    background; ``normal`` ones do not. ``bmd`` falls with the square's brightness (a
    regression target), ``sex`` / ``age`` are random covariates.
    """
    rng = np.random.default_rng(seed)
    rows = []
    (root / "img").mkdir(parents=True, exist_ok=True)
    for p in range(patients):
        label = "osteoporosis" if p % 2 else "normal"
        sex = "F" if rng.random() < 0.5 else "M"
        age = float(rng.uniform(50, 80))
        for i in range(images_per_patient):
            pixels = rng.normal(0.3, 0.05, (size, size))
            strength = rng.uniform(0.3, 0.6)
            if label == "osteoporosis":
                r, c = rng.integers(2, size - 10, 2)
                pixels[r : r + 8, c : c + 8] += strength
            name = f"img/P{p:03d}_{i}.png"
            write_png(np.clip(pixels, 0, 1).astype(np.float32), root / name, bits=8)
            bmd = 1.0 - (strength if label == "osteoporosis" else 0.0)
            rows.append({"image": name, "patient_id": f"P{p:03d}", "label": label, "bmd": bmd, "sex": sex, "age": age,
                         "view": "AP" if i % 2 == 0 else "LAT", "study": f"P{p:03d}"})
    path = root / "manifest.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def cohort(tmp_path_factory) -> Path:
    """Manifest of a 32-patient, 64-image synthetic cohort (32 x 32 px)."""
    return make_cohort(tmp_path_factory.mktemp("cohort"))


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
