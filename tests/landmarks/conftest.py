"""Synthetic AP spines with known corners, written as PNG + a landmark table (the shared data's format)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from osteolens.io import write_png
from osteolens.landmarks.bundle import write_landmark_bundle
from osteolens.landmarks.model import LandmarkNet
from osteolens.morphometry.vertebra import CORNERS


def synthetic_spine(rng: np.random.Generator, shape: tuple[int, int], levels: int) -> tuple[np.ndarray, np.ndarray]:
    """An ``(H, W)`` image in [0, 1] of ``levels`` bright tilted vertebrae on a curved line, and their corners."""
    h, w = shape
    top, bottom = rng.uniform(0.08, 0.2) * h, rng.uniform(0.8, 0.92) * h
    pitch = (bottom - top) / levels
    bend, phase, centre_x = rng.uniform(0.03, 0.12) * w, rng.uniform(0, np.pi), rng.uniform(0.4, 0.6) * w
    half_w, half_h = rng.uniform(0.13, 0.18) * w, 0.32 * pitch
    image = rng.normal(0.25, 0.03, shape).astype(np.float32)
    corners = np.zeros((levels, 4, 2))
    for k in range(levels):
        cy = top + (k + 0.5) * pitch
        cx = centre_x + bend * np.sin(phase + 2.5 * k / levels)
        tilt = np.radians(6 * np.cos(phase + 2.5 * k / levels))
        local = np.array([[-half_w, -half_h], [half_w, -half_h], [-half_w, half_h], [half_w, half_h]])
        rot = np.array([[np.cos(tilt), -np.sin(tilt)], [np.sin(tilt), np.cos(tilt)]])
        corners[k] = local @ rot.T + [cx, cy]
        cv2.fillConvexPoly(image, np.round(corners[k][[0, 1, 3, 2]]).astype(np.int32), 0.8)
    return np.clip(cv2.GaussianBlur(image, (3, 3), 0), 0, 1), corners


def write_dataset(folder: Path, count: int, levels: int = 5, shape: tuple[int, int] = (256, 128),
                  seed: int = 0) -> tuple[Path, Path]:
    """``count`` synthetic spines as ``images/*.png``, ``landmarks.csv`` and ``labels.csv``
    (two images per patient); returns the two tables."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows, labels = [], []
    for i in range(count):
        image, corners = synthetic_spine(rng, shape, levels)
        name = f"images/spine{i:02d}.png"
        write_png(image, folder / name, bits=8)
        labels.append({"image": name, "patient_key": i // 2, "qc_flags": "", "out_height": shape[0]})
        for k in range(levels):
            for c, corner in enumerate(CORNERS):
                rows.append({"image": name, "vertebra": f"V{k + 1}", "corner": corner, "point_index": 4 * k + c,
                             "x": round(corners[k, c, 0], 3), "y": round(corners[k, c, 1], 3)})
    pd.DataFrame(rows).to_csv(folder / "landmarks.csv", index=False)
    pd.DataFrame(labels).to_csv(folder / "labels.csv", index=False)
    return folder / "landmarks.csv", folder / "labels.csv"


@pytest.fixture
def spine_tables(tmp_path: Path) -> tuple[Path, Path]:
    """Eight synthetic spines (five vertebrae each) in ``tmp_path``."""
    return write_dataset(tmp_path / "data", 8)


@pytest.fixture
def untrained_bundle(tmp_path: Path) -> Path:
    """An untrained 5-level detector (V1-V5) at input 128 x 64 whose vertebrae are fixed boxes on its peak cells."""
    torch.manual_seed(0)
    net = LandmarkNet("tf_efficientnet_lite0", (1, 2), head_channels=8).eval()
    for head in (net.offset, net.corners):  # each vertebra a fixed 4 x 2-cell box on its peak cell
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
    net.corners.bias.data = torch.tensor([-2.0, -1.0, 2.0, -1.0, -2.0, 1.0, 2.0, 1.0])
    return write_landmark_bundle(tmp_path / "bundle", net, (128, 64), [f"V{k}" for k in range(1, 6)])
