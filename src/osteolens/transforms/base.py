"""The transform contract and its registry.

A transform is a small class registered by name. It is built from keyword parameters,
called on a ``float32`` array ``(H, W)`` in [0, 1] and returns a ``float32`` array
``(H, W)``; ``to_config()`` gives ``{"name": ..., "params": {...}}`` from which
:func:`build_transform` rebuilds an identical transform, so a preprocessing run can be
saved beside a model and replayed exactly at inference.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import numpy as np

from osteolens.errors import TransformError
from osteolens.registry import Registry

_REGISTRY: Registry[type[Transform]] = Registry("transform", TransformError)

T = TypeVar("T", bound="type[Transform]")


class Transform:
    """Base class: subclasses store every ``__init__`` argument as an attribute of the same name
    and implement :meth:`apply`.

    Attributes:
        name: the registry name, set by :func:`register_transform`.
    """

    name: ClassVar[str] = ""

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """Transform a validated ``float32`` ``(H, W)`` array."""
        raise NotImplementedError(f"{type(self).__name__} does not implement apply()")

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        array = np.asarray(pixels)
        if array.ndim != 2:
            raise TransformError(
                f"{self.name}: expected a 2-D (H, W) image, got shape {array.shape}. "
                "Fix: convert colour images to grey first (osteolens.io.read_radiograph does)."
            )
        if array.size == 0:
            raise TransformError(f"{self.name}: got an empty image of shape {array.shape}.")
        out = self.apply(np.ascontiguousarray(array, dtype=np.float32))
        return np.ascontiguousarray(out, dtype=np.float32)

    def params(self) -> dict[str, Any]:
        """The constructor arguments as JSON-ready values (tuples become lists)."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: _jsonable(getattr(self, name)) for name in names}

    def to_config(self) -> dict[str, Any]:
        """``{"name": ..., "params": {...}}``, the input of :func:`build_transform`."""
        return {"name": self.name, "params": self.params()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Transform) and self.to_config() == other.to_config()

    def __hash__(self) -> int:
        return hash(repr(self.to_config()))


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def register_transform(name: str) -> Callable[[T], T]:
    """Class decorator: register a :class:`Transform` subclass under ``name``.

    Example (a module that adds a transform)::

        @register_transform("gamma")
        class Gamma(Transform):
            def __init__(self, gamma: float = 1.0) -> None:
                self.gamma = float(gamma)

            def apply(self, pixels):
                return pixels**self.gamma
    """

    def decorator(cls: T) -> T:
        cls.name = name
        return _REGISTRY.add(name, cls)

    return decorator


def available_transforms() -> list[str]:
    """Sorted names of every registered transform."""
    return _REGISTRY.names()


def build_transform(config: dict[str, Any]) -> Transform:
    """Rebuild a transform from ``{"name": ..., "params": {...}}`` (``params`` may be omitted).

    Example:
        >>> build_transform({"name": "invert"})(np.zeros((1, 2), np.float32)).tolist()
        [[1.0, 1.0]]

    Raises:
        TransformError: unknown name, unknown or invalid parameters; the message names the
            transform and the valid choices.
    """
    if not isinstance(config, dict) or "name" not in config:
        raise TransformError(
            f"a transform config must be a mapping with a 'name' key, got {config!r}. "
            f"Fix: write {{'name': ..., 'params': {{...}}}} with a name from {available_transforms()}."
        )
    unknown_keys = set(config) - {"name", "params"}
    if unknown_keys:
        raise TransformError(
            f"transform {config['name']!r}: unexpected key(s) {sorted(unknown_keys)}. Fix: put parameters under 'params'."
        )
    name = config["name"]
    cls = _REGISTRY.get(name)
    if cls is None:
        raise TransformError(f"unknown transform {name!r}. Fix: use one of {available_transforms()}.")
    params = config.get("params") or {}
    if not isinstance(params, dict):
        raise TransformError(f"transform {name!r}: 'params' must be a mapping, got {params!r}.")
    valid = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    bad = sorted(set(params) - set(valid))
    if bad:
        raise TransformError(f"transform {name!r}: unknown parameter(s) {bad}. Fix: use only {valid}.")
    try:
        return cls(**params)
    except TransformError:
        raise
    except (TypeError, ValueError) as exc:
        raise TransformError(f"transform {name!r}: invalid parameters {params!r} ({exc}). Valid parameters: {valid}.") from exc


def check_range(transform: str, param: str, value: Any, low: float | None = None, high: float | None = None) -> float:
    """Coerce ``value`` to float and check ``low <= value <= high``; raise TransformError otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TransformError(f"transform {transform!r}: {param} must be a number, got {value!r}.") from None
    if not np.isfinite(number) or (low is not None and number < low) or (high is not None and number > high):
        raise TransformError(f"transform {transform!r}: {param}={value!r} is outside [{low}, {high}].")
    return number
