"""Vertebra and corner names of the AP spine detector (the AASCE layout)."""

from __future__ import annotations

from collections.abc import Sequence

from osteolens.morphometry.vertebra import CORNERS

VERTEBRAE: tuple[str, ...] = tuple([f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)])
"""The 17 levels T1-L5, cranial first."""


def landmark_names(vertebrae: Sequence[str] = VERTEBRAE) -> list[str]:
    """``<level>.<corner>`` for every point, in ``point_index`` order (4 corners per level).

    >>> landmark_names(["T1"])
    ['T1.top_left', 'T1.top_right', 'T1.bottom_left', 'T1.bottom_right']
    """
    return [f"{level}.{corner}" for level in vertebrae for corner in CORNERS]
