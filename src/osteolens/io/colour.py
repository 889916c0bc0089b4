"""Colour to grey: ITU-R BT.601 luma, the weights Pillow's ``convert("L")`` also uses."""

from __future__ import annotations

import numpy as np

#: Y = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601).
LUMA_601 = np.array([0.299, 0.587, 0.114], dtype=np.float64)


def luma(rgb: np.ndarray) -> np.ndarray:
    """Grey from an ``(H, W, 3)`` or ``(H, W, 4)`` array (alpha ignored), in the input's units.

    Example:
        >>> round(float(luma(np.array([[[255, 0, 0]]]))[0, 0]), 3)
        76.245
    """
    return np.asarray(rgb[..., :3], dtype=np.float64) @ LUMA_601
