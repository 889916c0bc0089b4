"""Automatic vertebral landmarks: a corner detector for AP spine radiographs.

A centre heatmap with sub-pixel and corner offsets (in the spirit of Yi et al., ISBI 2020,
"vertebra-focused landmark detection") on a timm backbone; its training, prediction at the
radiograph's own resolution, and evaluation against hand-drawn corners. It feeds
:mod:`osteolens.morphometry`, which measures; nothing here measures. See ``docs/landmarks.md``.
"""

from __future__ import annotations

from osteolens.landmarks.decode import Detection, decode
from osteolens.landmarks.names import VERTEBRAE, landmark_names
from osteolens.landmarks.targets import Targets, encode

__all__ = ["VERTEBRAE", "Detection", "Targets", "decode", "encode", "landmark_names"]
