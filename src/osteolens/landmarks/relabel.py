"""Rename a spine's vertebrae by whole levels: the fix for a detected set counted off by one.

When the detector flags ``levels_uncertain`` and the overlay shows that its "T1" is really C7
(or its "L5" really S1), the corners are right and only the names are wrong. Shifting the names
keeps every corner: ``shift = -1`` renames T1 -> C7, T2 -> T1 ... L5 -> L4 (the detected set
sat one level cranial); ``shift = +1`` renames T1 -> T2 ... L5 -> S1. The relabelled table
measures with ``osteolens morphometry --landmarks`` and evaluates with ``landmarks evaluate``,
which match vertebrae by name (a level the truth lacks is ignored, one the table lacks is
missing).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from osteolens.errors import ConfigError, ManifestError
from osteolens.morphometry.vertebra import CORNERS

ANATOMICAL_ORDER: tuple[str, ...] = (*(f"C{i}" for i in range(1, 8)), *(f"T{i}" for i in range(1, 13)),
                                     *(f"L{i}" for i in range(1, 6)), *(f"S{i}" for i in range(1, 6)))
"""Levels in the usual anatomy, cranial first. No L6: a transitional vertebra is the reader's
call, written by hand."""


def shift_levels(table: pd.DataFrame, image: str, shift: int, source: str | Path = "the table") -> pd.DataFrame:
    """A copy of a landmark table with ``image``'s vertebra names moved ``shift`` levels caudally
    (negative: cranially) along :data:`ANATOMICAL_ORDER`; a ``point_index`` column is recomputed
    as ``4 x position + corner`` within the image. Other images are unchanged.

    >>> t = pd.DataFrame({"image": "a", "vertebra": ["T1", "T2"], "corner": "top_left", "x": 0, "y": [1, 2]})
    >>> shift_levels(t, "a", -1)["vertebra"].tolist()
    ['C7', 'T1']

    Raises:
        ConfigError: no such image, a name that is not a level, or a shift past C1 or S5.
        ManifestError: the table lacks the ``image`` or ``vertebra`` column.
    """
    missing = [c for c in ("image", "vertebra") if c not in table.columns]
    if missing:
        raise ManifestError(source, f"missing column(s) {', '.join(missing)}.",
                            "give a landmark table (image, vertebra, corner, x, y).")
    rows = table["image"].astype(str) == str(image)
    if not rows.any():
        raise ConfigError("--image", f"'{image}' is not an image of {source}.",
                          "use a value of its 'image' column, exactly as written there.")
    out = table.copy()
    renamed = {}
    for name in out.loc[rows, "vertebra"].astype(str).unique():
        if name not in ANATOMICAL_ORDER:
            raise ConfigError("--image", f"vertebra '{name}' of '{image}' is not a level C1-S5.",
                              "rename it by hand in the table.")
        position = ANATOMICAL_ORDER.index(name) + shift
        if not 0 <= position < len(ANATOMICAL_ORDER):
            raise ConfigError("--shift", f"moving {name} by {shift:+d} leaves C1-S5.", "use a smaller shift.")
        renamed[name] = ANATOMICAL_ORDER[position]
    out.loc[rows, "vertebra"] = out.loc[rows, "vertebra"].astype(str).map(renamed)
    if "point_index" in out.columns and "corner" in out.columns:
        order = {name: k for k, name in enumerate(sorted(renamed.values(), key=ANATOMICAL_ORDER.index))}
        corner = out.loc[rows, "corner"].map({c: i for i, c in enumerate(CORNERS)})
        out.loc[rows, "point_index"] = out.loc[rows, "vertebra"].map(order) * 4 + corner
    return out
