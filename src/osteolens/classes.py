"""The one home of the bone-density class order.

WHO T-score bands, from healthy to worst: ``normal`` (T >= -1), ``osteopenia``
(-2.5 < T < -1), ``osteoporosis`` (T <= -2.5). The order matters for ordinal models,
quadratic kappa and screening views ("osteoporosis vs the rest"); every module that needs
it imports it from here.
"""

from __future__ import annotations

from collections.abc import Iterable

BONE_DENSITY_ORDER = ("normal", "osteopenia", "osteoporosis")


def order_classes(names: Iterable[str]) -> list[str]:
    """Distinct class names in output order: bone-density order when every name is one of
    :data:`BONE_DENSITY_ORDER`, else sorted.

    Example:
        >>> order_classes(["osteoporosis", "normal", "osteoporosis"])
        ['normal', 'osteoporosis']
        >>> order_classes(["b", "a"])
        ['a', 'b']
    """
    present = sorted({str(n) for n in names})
    if set(present) <= set(BONE_DENSITY_ORDER):
        return [c for c in BONE_DENSITY_ORDER if c in present]
    return present
