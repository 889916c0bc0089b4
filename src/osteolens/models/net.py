"""``OsteoNet`` and ``create_model``: backbone(s) + covariate fusion + task head.

Architecture (``fusion: offset``, the default)::

    view 1 ─► backbone ─► features ─┐
    view 2 ─► backbone ─► features ─┴─► concat ─► [Linear ─► ReLU ─► Dropout] x len(head_hidden) ─► image output ─┐
    covariates (sex, age, ...) ─► Linear (the covariate path, no bias) ─────────────────────────────────────────► + ─► output

The covariates reach the output on their own linear path: the output is the covariate
model's logit (or value) plus what the image adds. :func:`osteolens.models.fusion.fit_covariate_offset`
fits that path as the covariates-only model on the training rows and zeroes the image
head's last layer, so training starts from the covariates-only model and the image learns
the residual (two covariates are no longer drowned among 1280 random image features).
``fusion: concat`` (the earlier design, still read from old bundles) appends the
covariates to the image features before the head.

Two views are fused late (feature concatenation), with one shared backbone (default) or
one backbone per view. Fine-tuning depth: ``all`` trains everything; ``head`` freezes the
backbone; ``last:N`` trains the last N stages (timm ``feature_info`` levels) and every
layer after them. Frozen batch-norm layers stay in eval mode, so their running statistics
do not drift while the rest trains; ``freeze_norm_statistics()`` keeps every backbone
batch norm so while its affine parameters train. ``parameter_groups`` gives the
optimiser's groups, with optional layer-wise learning-rate decay over the stages.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from osteolens.errors import ModelError
from osteolens.models import simple_cnn as _simple_cnn  # noqa: F401  (registers simple_cnn)
from osteolens.models.backbones import build_backbone
from osteolens.models.registry import Backbone
from osteolens.models.tasks import check_task


FUSIONS = ("offset", "concat")


class CoralOutput(nn.Module):
    """Rank-consistent ordinal output: one shared score ``w·x`` plus K-1 biases."""

    def __init__(self, in_features: int, num_outputs: int) -> None:
        super().__init__()
        self.score = nn.Linear(in_features, 1, bias=False)
        # Ordered initial biases (as coral-pytorch): P(y > k) starts decreasing in k.
        self.bias = nn.Parameter(torch.arange(num_outputs, 0, -1, dtype=torch.float32) / max(num_outputs, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, F] -> [N, K-1]`` cumulative logits."""
        return self.score(x) + self.bias


def _head(in_features: int, hidden: Sequence[int], dropout: float, task: str, num_outputs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = in_features
    for units in hidden:
        layers += [nn.Linear(width, int(units)), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        width = int(units)
    if dropout and not hidden:
        layers.append(nn.Dropout(dropout))
    layers.append(CoralOutput(width, num_outputs) if task == "ordinal" else nn.Linear(width, num_outputs))
    return nn.Sequential(*layers)


def _drop_stage_alias(state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Bundles and checkpoints written before the feature-map CAM layer also stored the last
    backbone stage under ``cam_layer.*`` (a second name of the same weights): drop those keys."""
    for key in [key for key in state_dict if key.startswith(f"{prefix}cam_layer.")]:
        del state_dict[key]


class OsteoNet(nn.Module):
    """Backbone(s) + optional covariates + task head.

    Attributes:
        backbone: the (first) image feature extractor.
        backbones: one extractor per view when views are not shared, else ``[backbone]``.
        feature_maps: one ``nn.Identity`` per backbone through which its final feature map (the
            output of ``forward_features``, before global pooling) passes: the Grad-CAM layer.
        cam_layer: the module Grad-CAM hooks, ``feature_maps[0]``.
        head: fusion MLP and output layer.
        config: the keyword arguments of :func:`create_model` that rebuild this network.
        views: number of views; ``forward`` takes ``[N, V, C, H, W]`` when > 1.
        n_tabular: number of covariates ``forward`` expects.
    """

    def __init__(
        self,
        backbones: list[Backbone],
        views: int,
        n_tabular: int,
        head: nn.Module,
        config: dict[str, Any],
        covariate_path: nn.Linear | None = None,
    ) -> None:
        super().__init__()
        self.backbones = nn.ModuleList([b.module for b in backbones])
        self.backbone = self.backbones[0]
        self.stages = list(backbones[0].stages)
        # Grad-CAM explains the final feature map (after EfficientNet's conv_head + BN + SiLU, ResNet's
        # layer4, ...), the last convolutional activations of Selvaraju et al. Everything after it is
        # global pooling and a head on the pooled vector, so the ONNX Grad-CAM graph
        # (osteolens.inference.cam_graph) needs the gradient of that small tail only.
        self.feature_maps = nn.ModuleList([nn.Identity() for _ in self.backbones])
        self.cam_layer = self.feature_maps[0]
        self._register_load_state_dict_pre_hook(_drop_stage_alias)
        self.views = views
        self.n_tabular = n_tabular
        self.head = head
        self.covariate_path = covariate_path
        self.config = config
        self._frozen_norms: list[nn.Module] = []

    def _pooled(self, index: int, images: torch.Tensor) -> torch.Tensor:
        """Backbone ``index`` on ``[N, C, H, W]``: its feature map through ``feature_maps[index]``,
        then its pooling head (the same as calling the backbone)."""
        net = self.backbones[index]
        return net.forward_head(self.feature_maps[index](net.forward_features(images)))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Image features ``[N, V * F]`` (views concatenated in order)."""
        if self.views == 1:
            if images.ndim != 4:
                raise ModelError(f"expected images [N, C, H, W], got shape {tuple(images.shape)}.")
            return self._pooled(0, images)
        if images.ndim != 5 or images.shape[1] != self.views:
            raise ModelError(f"expected images [N, {self.views}, C, H, W] for {self.views} views, got {tuple(images.shape)}.")
        n = images.shape[0]
        if len(self.backbones) == 1:
            flat = self._pooled(0, images.flatten(0, 1))
            return flat.reshape(n, -1)
        return torch.cat([self._pooled(v, images[:, v]) for v in range(len(self.backbones))], dim=1)

    def forward(self, images: torch.Tensor, tabular: torch.Tensor | None = None) -> torch.Tensor:
        """Raw outputs ``[N, num_outputs]`` (logits, cumulative logits, or standardised value)."""
        return self.from_features(self.features(images), tabular)

    def from_features(self, feats: torch.Tensor, tabular: torch.Tensor | None = None) -> torch.Tensor:
        """Raw outputs from the pooled image features ``[N, V * F]`` (and the covariates)."""
        if self.n_tabular:
            if tabular is None or tabular.shape != (feats.shape[0], self.n_tabular):
                got = None if tabular is None else tuple(tabular.shape)
                raise ModelError(
                    f"this model takes {self.n_tabular} covariate(s) {self.config.get('tabular')}; got tabular {got}. "
                    "Fix: pass tabular=[N, n] encoded with osteolens.models.tabular.encode."
                )
            if self.covariate_path is not None:
                return self.head(feats) + self.covariate_path(tabular.to(feats.dtype))
            feats = torch.cat([feats, tabular.to(feats.dtype)], dim=1)
        return self.head(feats)

    # ---------------------------------------------------------------- fine-tuning
    def parameter_stages(self, net: nn.Module) -> list[tuple[str, nn.Parameter, int]]:
        """Each parameter of the backbone ``net`` with its stage index.

        Stage ``s`` (0 ... S-1, ``S = len(self.stages)``) holds the parameters from the start of
        ``self.stages[s]`` (in module order) up to the start of the next stage; the last stage
        also holds every layer after it (``conv_head``, final norm). ``-1`` is the stem before
        the first stage. A stage module without parameters (resnet's ``act1``) is an empty stage.
        """
        order = {name: i for i, (name, _) in enumerate(net.named_modules())}
        missing = [stage for stage in self.stages if stage not in order]
        if missing:
            raise ModelError(f"stages {missing} are not modules of the backbone. "
                             "Fix: rebuild the model with create_model.")
        starts = sorted(order[stage] for stage in self.stages)
        return [
            (name, param, sum(start <= order[name.rpartition(".")[0]] for start in starts) - 1)
            for name, param in net.named_parameters()
        ]

    def apply_finetune(self, finetune: str) -> None:
        """Freeze backbone parameters according to ``finetune`` (``all``, ``head``, ``last:N``)."""
        match = re.fullmatch(r"last:(\d+)", finetune)
        if finetune not in ("all", "head") and not match:
            raise ModelError(f"finetune '{finetune}' not understood. Fix: use 'all', 'head' or 'last:N' (e.g. last:2).")
        first = 0 if finetune == "all" else len(self.stages)  # first trained stage; S: none (head)
        if match:
            n = int(match.group(1))
            if not 1 <= n <= len(self.stages):
                raise ModelError(
                    f"finetune '{finetune}': this backbone has {len(self.stages)} stages {self.stages}. "
                    f"Fix: use last:1 ... last:{len(self.stages)}, or 'all'."
                )
            first = len(self.stages) - n
        for net in self.backbones:
            for _, param, stage in self.parameter_stages(net):
                param.requires_grad_(finetune == "all" or stage >= first)
        self._refresh_frozen_norms()

    def freeze_norm_statistics(self, frozen: bool = True) -> None:
        """Keep every backbone batch norm in eval mode (running statistics frozen), also where its
        affine weight and bias still train (``freeze_bn``); ``frozen=False`` undoes it."""
        self._freeze_bn = bool(frozen)
        self._refresh_frozen_norms()

    def _refresh_frozen_norms(self) -> None:
        """Batch norms kept in eval mode: those whose parameters are all frozen, or every backbone
        one under :meth:`freeze_norm_statistics`."""
        every = getattr(self, "_freeze_bn", False)
        self._frozen_norms = [
            m
            for net in self.backbones
            for m in net.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and (every or (any(True for _ in m.parameters()) and not any(p.requires_grad for p in m.parameters())))
        ]
        self.train(self.training)

    def train(self, mode: bool = True) -> OsteoNet:
        """As ``nn.Module.train``, but frozen batch-norm layers stay in eval mode."""
        super().train(mode)
        for module in getattr(self, "_frozen_norms", []):
            module.eval()
        return self

    def parameter_groups(
        self, lr: float, backbone_lr_mult: float = 1.0, weight_decay: float = 0.0, layer_decay: float = 1.0
    ) -> list[dict]:
        """AdamW parameter groups of the trainable parameters, the head's last.

        The head (and the covariate path) trains at ``lr``. A backbone parameter at depth
        ``k`` trains at ``lr * backbone_lr_mult * layer_decay ** k`` (layer-wise decay): depth 1
        is the last stage (and the layers after it), depth 2 the one before, ..., depth S the
        first stage and S + 1 the stem (stages from :meth:`parameter_stages`). With
        ``layer_decay == 1`` the backbone is one group at ``lr * backbone_lr_mult``.
        Biases and normalisation weights (1-D tensors) get no weight decay.
        """
        S = len(self.stages)
        depth = {id(p): S - stage for net in self.backbones for _, p, stage in self.parameter_stages(net)}
        buckets: dict[tuple[int, bool], list[nn.Parameter]] = {}
        for p in self.parameters():
            if p.requires_grad:
                k = depth.get(id(p), 0)  # 0: head
                buckets.setdefault((min(k, 1) if layer_decay == 1.0 else k, p.ndim > 1), []).append(p)
        groups = []
        for (k, decay), params in sorted(buckets.items(), key=lambda item: (-item[0][0], not item[0][1])):
            if k == 0:
                name, rate = "head", lr
            else:
                stage = "" if layer_decay == 1.0 else (".stem" if k == S + 1 else f".stage{S - k}")
                name, rate = f"backbone{stage}", lr * backbone_lr_mult * layer_decay**k
            groups.append({"params": params, "lr": rate, "weight_decay": weight_decay if decay else 0.0,
                           "name": f"{name}{'' if decay else '_no_decay'}"})
        return groups

def create_model(
    name: str,
    task: str,
    num_outputs: int,
    in_chans: int = 1,
    pretrained: bool = False,
    weights: str | Path | None = None,
    finetune: str = "all",
    tabular: Sequence[str] = (),
    views: int = 1,
    shared_backbone: bool = True,
    head_hidden: Sequence[int] = (),
    dropout: float = 0.0,
    fusion: str = "offset",
    **kwargs: Any,
) -> OsteoNet:
    """Build an :class:`OsteoNet`.

    Args:
        name: any timm model name (``efficientnet_b0``, ``resnet18``, ...) or ``simple_cnn``.
        task: ``binary``, ``multiclass``, ``ordinal`` or ``regression``.
        num_outputs: raw outputs (see :func:`osteolens.models.tasks.num_outputs`: 1 for binary and
            regression, K for multiclass, K-1 for ordinal).
        in_chans: image channels (1 for radiographs).
        pretrained: ImageNet weights from the Hugging Face hub through timm (online).
        weights: local weight file (safetensors or timm checkpoint), offline.
        finetune: ``all``, ``head`` or ``last:N``.
        tabular: covariate names fused before the head (``["sex", "age"]``).
        views: number of views per sample (2 for AP + lateral).
        shared_backbone: one backbone for all views (True) or one per view.
        head_hidden: hidden layer widths of the head (``[256, 256]`` = dense depth 2).
        dropout: dropout rate in the head.
        fusion: how covariates join the image: ``offset`` (their own linear path added to the
            output) or ``concat`` (appended to the image features before the head).
        **kwargs: passed to the backbone builder (``conv_layers``, ``filters``, ``dense_units`` for
            simple_cnn; timm keyword arguments such as ``drop_rate``).

    Returns:
        The network; ``net.config`` rebuilds it with ``create_model(**net.config)`` (with
        ``pretrained=False`` and ``weights=None``: trained weights are loaded from the bundle).

    Example:
        >>> net = create_model("simple_cnn", "binary", 1, tabular=["sex", "age"], conv_layers=2, filters=4)
        >>> net(torch.zeros(2, 1, 32, 32), torch.zeros(2, 2)).shape
        torch.Size([2, 1])
    """
    check_task(task)
    if views < 1:
        raise ModelError(f"views must be >= 1, got {views}.")
    if num_outputs < 1:
        raise ModelError(f"num_outputs must be >= 1, got {num_outputs}.")
    if fusion not in FUSIONS:
        raise ModelError(f"fusion '{fusion}' not understood. Fix: use one of {', '.join(FUSIONS)}.")
    n_backbones = 1 if shared_backbone or views == 1 else views
    backbones = [build_backbone(name, in_chans, pretrained, weights, **kwargs) for _ in range(n_backbones)]
    concat = len(tabular) if fusion == "concat" else 0
    head = _head(backbones[0].num_features * views + concat, list(head_hidden), float(dropout), task, int(num_outputs))
    covariate_path = None
    if tabular and fusion == "offset":
        # Ordinal: one shift of the shared CORAL score keeps the cumulative logits ordered.
        covariate_path = nn.Linear(len(tabular), 1 if task == "ordinal" else int(num_outputs), bias=False)
    config: dict[str, Any] = {
        "name": name,
        "task": task,
        "num_outputs": int(num_outputs),
        "in_chans": int(in_chans),
        "pretrained": False,
        "weights": None,
        "finetune": finetune,
        "tabular": list(tabular),
        "views": int(views),
        "shared_backbone": bool(shared_backbone),
        "head_hidden": [int(h) for h in head_hidden],
        "dropout": float(dropout),
        "fusion": fusion,
        **kwargs,
    }
    net = OsteoNet(backbones, views, len(tabular), head, config, covariate_path)
    net.init_weights = str(weights) if weights is not None else ("hub" if pretrained else "random")
    net.weights_info = backbones[0].weights_info  # spec, converted file and its sha256 (None: random / hub)
    net.apply_finetune(finetune)
    return net
