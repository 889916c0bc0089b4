"""Deterministic preprocessing: transforms registered by name, pipelines that serialise to
JSON / YAML and replay exactly, ROI crops, and an on-disk cache.

Example:
    >>> import numpy as np
    >>> from osteolens.transforms import Pipeline
    >>> pipe = Pipeline.from_config([{"name": "invert"}, {"name": "pad_to_square"}])
    >>> pipe(np.zeros((1, 2), np.float32)).tolist()
    [[1.0, 1.0], [0.0, 0.0]]
"""

from __future__ import annotations

from osteolens.transforms.background import RollingBall, rolling_ball_background
from osteolens.transforms.base import Transform, available_transforms, build_transform, register_transform
from osteolens.transforms.cache import PreprocessCache
from osteolens.transforms.geometry import CropToContent, PadToSquare, Resize
from osteolens.transforms.intensity import Clahe, EqualiseHistogram, Invert, PercentileNormalise
from osteolens.transforms.pipeline import Pipeline
from osteolens.transforms.roi import (
    coco_boxes,
    crop_to_mask_rectangle,
    crops_from_coco,
    largest_rectangle_in_mask,
    square_window,
)

__all__ = [
    "Clahe",
    "CropToContent",
    "EqualiseHistogram",
    "Invert",
    "PadToSquare",
    "PercentileNormalise",
    "Pipeline",
    "PreprocessCache",
    "Resize",
    "RollingBall",
    "Transform",
    "available_transforms",
    "build_transform",
    "coco_boxes",
    "crop_to_mask_rectangle",
    "crops_from_coco",
    "largest_rectangle_in_mask",
    "register_transform",
    "rolling_ball_background",
    "square_window",
]
