"""osteolens: bone-health AI on plain radiographs.

Read radiographs (``osteolens.io``), preprocess them (``osteolens.transforms``), build
validated manifests and patient-grouped folds (``osteolens.data``), generate a synthetic
phantom cohort (``osteolens.phantom``), and measure, train, evaluate and serve models.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

__version__ = "0.1.0"

__all__ = ["__version__"]


class _LazyPackage(ModuleType):
    """A package whose public names are imported from their modules on first use.

    Written here rather than with ``lazy_loader.attach`` (scikit-image's): that cannot keep a
    function export named like its own submodule (``osteolens.evaluation.evaluate``), because
    importing the submodule rebinds the package attribute to the module.
    """

    def __getattr__(self, name: str) -> object:
        module = self.__dict__.get("_lazy_exports", {}).get(name)
        if module is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        self.__dict__[name] = value
        return value

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self.__dict__.get("_lazy_exports", {})))

    def __setattr__(self, name: str, value: object) -> None:
        # Importing a submodule binds it to its package; one named like an export
        # (``osteolens.evaluation.evaluate``, the function) leaves the export in place, as an
        # eager ``from .evaluate import evaluate`` in ``__init__`` would.
        exports = self.__dict__.get("_lazy_exports", {})
        if isinstance(value, ModuleType) and value.__name__ == f"{self.__name__}.{name}" and name in exports:
            return
        super().__setattr__(name, value)


def lazy_exports(package: str, exports: dict[str, list[str]]) -> list[str]:
    """Make ``package`` import its public names on first use (PEP 562), not when it is imported.

    Args:
        package: the package's ``__name__`` (called from its ``__init__``).
        exports: ``{module: [names]}``, each name imported from ``package.module`` when first read.

    Returns:
        The exported names, sorted (the package's ``__all__``).

    Example:
        >>> import osteolens.evaluation as evaluation
        >>> evaluation.delong_auc.__module__
        'osteolens.evaluation.delong'
    """
    module = sys.modules[package]
    module.__class__ = _LazyPackage
    module.__dict__["_lazy_exports"] = {name: f"{package}.{source}" for source, names in exports.items()
                                        for name in names}
    return sorted(module.__dict__["_lazy_exports"])
