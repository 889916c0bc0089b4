"""The feature-family contract and its registry.

A feature family turns one 2-D image (``float32`` in [0, 1], bone bright) and an optional
boolean region-of-interest mask into a flat ``{column name: float}`` dictionary. Families are
registered by name and rebuilt from ``{"name": ..., "params": {...}}``, so an extraction's
exact settings are saved beside its table and replayed later.

A family whose work is cheaper on many images at once (a neural network's forward pass) sets
``batched = True`` and overrides :meth:`FeatureFamily.prepare` (the per-image part, run where
the image is read, in worker processes under ``--jobs``) and :meth:`FeatureFamily.compute_batch`
(the batched part, in the extracting process, ``batch_size`` images at a time).

The extraction's histogram equalisation (``equalise``, a texture-radiomics step) reaches a
family only when its ``equalised`` is True (the default); a pretrained network normalises its
input itself and sets it False.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from osteolens.errors import ConfigError
from osteolens.registry import Registry

_REGISTRY: Registry[type[FeatureFamily]] = Registry("feature family", lambda message: ConfigError(None, message))


class FeatureFamily(ABC):
    """One family of radiomics features.

    Subclasses store their constructor arguments untouched (as scikit-learn estimators do),
    so :meth:`params` can read them back and :func:`build_feature_family` can rebuild an
    identical family from JSON.
    """

    name: ClassVar[str] = ""
    batched: ClassVar[bool] = False
    equalised: ClassVar[bool] = True
    batch_size: int = 1

    @property
    def params(self) -> dict[str, Any]:
        """The constructor arguments, JSON-ready (tuples become lists)."""
        out: dict[str, Any] = {}
        for key in inspect.signature(type(self).__init__).parameters:
            if key == "self":
                continue
            value = getattr(self, key)
            out[key] = list(value) if isinstance(value, tuple) else value
        return out

    def to_config(self) -> dict[str, Any]:
        """``{"name": ..., "params": {...}}``, the form :func:`build_feature_family` reads."""
        return {"name": self.name, "params": self.params}

    @abstractmethod
    def compute(self, image: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
        """Features of ``image`` (2-D float in [0, 1]) inside ``mask`` (2-D bool, same shape)."""

    def prepare(self, image: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """The per-image part of a batched family (e.g. resizing to the network input).

        Contract: ``compute_batch`` gives the same features for prepared and raw inputs, so
        preparing is idempotent. Default: the inputs unchanged.
        """
        return image, mask

    def compute_batch(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray | None]) -> list[dict[str, float]]:
        """Features of several images, one dictionary each, in order (default: :meth:`compute` per image)."""
        return [self.compute(image, mask) for image, mask in zip(images, masks, strict=True)]

    def provenance(self) -> dict[str, Any]:
        """Facts that decide the numbers but are not parameters (e.g. the sha256 of loaded
        weights), recorded in the extraction's sidecar; empty by default."""
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


def register_feature_family(name: str) -> Callable[[type[FeatureFamily]], type[FeatureFamily]]:
    """Class decorator: register a :class:`FeatureFamily` subclass under ``name``."""

    def decorate(cls: type[FeatureFamily]) -> type[FeatureFamily]:
        cls.name = name
        return _REGISTRY.add(name, cls)

    return decorate


def feature_family_names() -> list[str]:
    """Names of every registered family, sorted."""
    return _REGISTRY.names()


def feature_family_class(name: str) -> type[FeatureFamily]:
    """The class registered under ``name``; :class:`ConfigError` naming the choices otherwise."""
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ConfigError(
            "families", f"unknown feature family '{name}'.", f"choose from {', '.join(feature_family_names())}."
        )
    return cls


def build_feature_family(spec: str | Mapping[str, Any] | FeatureFamily) -> FeatureFamily:
    """Rebuild a family from its name or ``{"name": ..., "params": {...}}``.

    Example:
        >>> build_feature_family({"name": "fourier", "params": {"scale": 255.0}}).name
        'fourier'
    """
    if isinstance(spec, FeatureFamily):
        return spec
    if isinstance(spec, str):
        return feature_family_class(spec)()
    if "name" not in spec:
        raise ConfigError("families", f"family spec {dict(spec)!r} has no 'name'.", 'write {"name": ..., "params": {...}}.')
    cls = feature_family_class(str(spec["name"]))
    params = dict(spec.get("params") or {})
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(
            "families", f"bad parameters for '{spec['name']}': {exc}.", f"see `osteolens features list` for {cls.__name__}'s parameters."
        ) from None


def check_image_and_mask(image: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Validate a family's inputs; the default mask is the whole image minus a 1-pixel border.

    The border rule is the seed's: pyradiomics then never sees a region touching the image
    edge, and the texture matrices ignore edge effects of the crop.
    """
    from osteolens.errors import TransformError

    image = np.asarray(image)
    if image.ndim != 2:
        raise TransformError(f"feature input must be a 2-D image, got shape {image.shape}; pass Radiograph.pixels.")
    if mask is None:
        mask = border_mask(image.shape)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != image.shape:
        raise TransformError(f"mask shape {mask.shape} differs from image shape {image.shape}; crop both the same way.")
    if not mask.any():
        raise TransformError("the region of interest is empty; check the mask file or choose --roi none.")
    return image.astype(np.float64, copy=False), mask


def border_mask(shape: tuple[int, ...], border: int = 1) -> np.ndarray:
    """Boolean mask that is True everywhere except a ``border``-pixel frame."""
    mask = np.zeros(shape, dtype=bool)
    if shape[0] > 2 * border and shape[1] > 2 * border:
        mask[border:-border, border:-border] = True
    else:
        mask[:] = True
    return mask
