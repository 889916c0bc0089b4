"""Registry of osteolens' own image backbones (timm names need no registration).

A builder takes ``in_chans`` plus its own keyword parameters and returns a
:class:`Backbone`: the feature extractor, the size of its feature vector, and the
module names of its stages (timm's ``feature_info`` convention) so fine-tuning depth and
Grad-CAM work the same for every model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from osteolens.errors import ModelError
from osteolens.registry import Registry


@dataclass
class Backbone:
    """A feature extractor mapping ``[N, C, H, W]`` to ``[N, num_features]``.

    Attributes:
        module: the network.
        num_features: length of the feature vector.
        stages: module names (inside ``module``) of the successive stages, shallow to deep.
        weights_info: where its initial weights came from (``spec``, ``path``, ``sha256``,
            ``source``, ``licence``), or None for random or hub weights.
    """

    module: nn.Module
    num_features: int
    stages: list[str]
    weights_info: dict[str, Any] | None = None


BackboneBuilder = Callable[..., Backbone]
_REGISTRY: Registry[BackboneBuilder] = Registry("model", ModelError)


def register_model(name: str) -> Callable[[BackboneBuilder], BackboneBuilder]:
    """Decorator: register ``builder(in_chans, **params) -> Backbone`` under ``name``.

    Example:
        >>> @register_model("my_net")  # doctest: +SKIP
        ... def my_net(in_chans: int = 1, width: int = 8) -> Backbone: ...
    """

    def decorate(builder: BackboneBuilder) -> BackboneBuilder:
        return _REGISTRY.add(name, builder)

    return decorate


def get_builder(name: str) -> BackboneBuilder | None:
    """The registered builder for ``name``, or None (then ``name`` is tried as a timm model)."""
    return _REGISTRY.get(name)


def registered_models() -> list[str]:
    """Names of osteolens' own backbones, sorted."""
    return _REGISTRY.names()
