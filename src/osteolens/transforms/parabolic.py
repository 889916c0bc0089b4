"""Grey-scale erosion by a parabola in linear time (the kernel of the rolling paraboloid).

For a line of values ``f`` the erosion by the parabola ``c d^2`` is

    E(p) = min_q  f(q) + c (p - q)^2,

the lower envelope of one upward parabola per sample. Felzenszwalb & Huttenlocher
("Distance transforms of sampled functions", Theory of Computing 8, 2012) build that
envelope in one left-to-right sweep: keep the apexes ``v`` of the parabolas that are
lowest somewhere and the abscissae ``z`` where each takes over; a new parabola from ``q``
meets the last kept one (apex ``v``) at

    s = ((f(q) + c q^2) - (f(v) + c v^2)) / (2 c (q - v)),

and every kept parabola whose range starts at or after ``s`` is dropped. Evaluating the
envelope at increasing positions is a second sweep. Each sample enters and leaves the
stack once, so the cost is ``O(n + m)`` for ``m`` outputs, whatever the curvature, where a
direct minimum over offsets (scikit-image's ``rolling_ball`` with a 1-D kernel) costs
``O(n k)`` for a kernel ``k`` samples wide: ``k`` is about 600 for the dental seed's radius
180 on 8-bit heights.

Written here, compiled with numba, because no maintained library offers it: SciPy's
``distance_transform_edt`` runs the same sweep only on binary images and scikit-image's
morphology takes flat or explicit kernels.

The compiled kernel is cached on disk (numba's ``cache=True``): compiled once per machine,
then loaded by every later process (first call 0.4 s of CPU instead of 0.8 s). Numba keeps the
cache in ``$NUMBA_CACHE_DIR``, else beside this file, else in the user's cache folder
(``~/.cache/numba``); where none is writable the kernel is compiled in each process instead.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np


def _compiled(function: Callable) -> Callable:
    """``numba.njit(nogil=True)`` with the on-disk cache, or without it where numba finds no
    writable cache folder (it then raises ``RuntimeError`` at decoration)."""
    try:
        return numba.njit(cache=True, nogil=True)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(nogil=True)(function)


@_compiled
def _erode_lines(values, curvature, first, step, out):  # pragma: no cover - compiled
    """``out[i, k] = min_q values[i, q] + curvature * (first + k * step - q)^2`` for every row ``i``."""
    rows, n = values.shape
    count = out.shape[1]
    apex = np.empty(n, np.int64)
    start = np.empty(n + 1, np.float64)
    lifted = np.empty(n, np.float64)  # f(q) / (2c) + q^2 / 2: the intersection is then a difference quotient
    half = 0.5 / curvature
    for i in range(rows):
        for q in range(n):
            lifted[q] = values[i, q] * half + 0.5 * q * q
        top = 0
        apex[0] = 0
        start[0] = -np.inf
        for q in range(1, n):
            # Drop kept parabolas that the new one undercuts from where they take over
            # (s <= start[top], compared without dividing).
            while top > 0 and lifted[q] - lifted[apex[top]] <= start[top] * (q - apex[top]):
                top -= 1
            top += 1
            apex[top] = q
            start[top] = (lifted[q] - lifted[apex[top - 1]]) / (q - apex[top - 1])
        start[top + 1] = np.inf
        top = 0
        for k in range(count):
            p = first + k * step
            while start[top + 1] < p:
                top += 1
            d = p - apex[top]
            out[i, k] = values[i, apex[top]] + curvature * d * d


def erode_lines(
    values: np.ndarray, radius: float, first: int = 0, step: int = 1, count: int | None = None,
    spacing: float = 1.0, threads: int = 2,
) -> np.ndarray:
    """Exact erosion of every row of ``values`` by the parabola ``(d * spacing)^2 / (2 radius)``.

    Args:
        values: ``(rows, n)`` heights.
        radius: curvature radius, in the units of ``d * spacing``.
        first, step, count: evaluate only at columns ``first + k * step`` for ``k < count``
            (default: every column).
        spacing: distance between neighbouring columns.
        threads: rows are split over this many threads (the compiled sweep releases the GIL).

    Returns:
        ``float32 (rows, count)``.
    """
    lines = np.ascontiguousarray(values, dtype=np.float32)
    if count is None:
        count = -(-(lines.shape[1] - first) // step)
    out = np.empty((lines.shape[0], count), np.float32)
    curvature = spacing * spacing / (2.0 * radius)
    parts = np.array_split(np.arange(lines.shape[0]), max(1, min(threads, lines.shape[0])))
    spans = [(int(p[0]), int(p[-1]) + 1) for p in parts if p.size]
    if len(spans) == 1:
        _erode_lines(lines, curvature, first, step, out)
        return out
    with ThreadPoolExecutor(max_workers=len(spans)) as pool:
        list(pool.map(lambda span: _erode_lines(lines[span[0]:span[1]], curvature, first, step,
                                                out[span[0]:span[1]]), spans))
    return out
