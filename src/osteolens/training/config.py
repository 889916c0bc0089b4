"""The training configuration: a YAML file, overridden by command-line flags, validated.

Example ``train.yaml``::

    manifest: data/manifest_folds.csv   # relative to this file
    target: label                       # label column, or a numeric column for regression
    task: ordinal                       # binary | multiclass | ordinal | regression
    positive: osteoporosis              # binary from a multi-class label: this class vs the rest
    model:
      name: efficientnet_b0             # any timm name, or simple_cnn
      pretrained: false
      weights: null                     # imagenet (packaged, offline) or a local safetensors / timm checkpoint
      finetune: all                     # all | head | last:N
      tabular: [sex, age]
      fusion: offset                    # offset: covariates on their own path to the output | concat
      views: 1
    preprocessing:
      - {name: percentile_normalise, params: {low: 0.5, high: 99.5}}
      - {name: crop_to_content}
      - {name: pad_to_square}
    input_size: [256, 256]
    augmentation: default               # none | default | dental | fracture
    folds: 5                            # used when the manifest has no 'fold' column
    epochs: 30
    batch_size: 16
    lr: 0.001
    backbone_lr_mult: 0.1
    scheduler: cosine                   # cosine (with warm-up) | plateau | constant
    patience: 5
    lp_epochs: 0                        # linear probe first: N epochs of head only, then model.finetune (LP-FT)
    freeze_bn: false                    # keep backbone batch-norm statistics frozen (affine weights still train)
    layer_decay: 1.0                    # layer-wise lr decay: last stage x d, the one before x d^2, ... (1 = off)
    ema_decay: null                     # e.g. 0.999: validate, select and save an EMA of the weights
    ema_warmup: true                    # timm's EMA warm-up: decay min(ema_decay, 1 - t^(-2/3)) at step t
    tta_hflip: false                    # average the raw outputs of the image and its horizontal flip
    seed: 0
    devices: 1                          # processes (GPUs, or CPU processes) per machine; > 1: DDP (docs/scaling.md)
    num_nodes: 1                        # machines of a multi-node DDP run
    strategy: auto                      # auto | ddp
    ddp_timeout: 1800                   # seconds a process waits for the others before the run fails
    out: runs
"""

from __future__ import annotations

import copy
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from osteolens.errors import ConfigError
from osteolens.models.tasks import TASKS

SCHEDULERS = ("cosine", "plateau", "constant")
CLASS_BALANCE = ("none", "weights", "sampler")
AUGMENTATIONS = ("none", "default", "dental", "fracture")
#: Fabric strategies a run may ask for: ``auto`` (one process, or DDP when devices * num_nodes > 1) and ``ddp``.
STRATEGIES = ("auto", "ddp")


@dataclass
class ModelConfig:
    """The ``model`` section: the arguments of :func:`osteolens.models.create_model`."""

    name: str = "simple_cnn"
    pretrained: bool = False
    weights: str | None = None
    finetune: str = "all"
    tabular: list[str] = field(default_factory=list)
    views: int = 1
    shared_backbone: bool = True
    head_hidden: list[int] = field(default_factory=list)
    dropout: float = 0.0
    fusion: str = "offset"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """Everything that defines a cross-validated training run (see the module docstring).

    Paths (``manifest``, ``out``, ``cache``, ``model.weights``) are resolved relative to the
    YAML file's folder when read with :func:`load_config`.
    """

    manifest: str = ""
    target: str = "label"
    task: str = "multiclass"
    positive: str | None = None
    classes: list[str] | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    preprocessing: list[dict[str, Any]] = field(default_factory=list)
    input_size: list[int] = field(default_factory=lambda: [256, 256])
    augmentation: str = "default"
    folds: int = 5
    epochs: int = 20
    batch_size: int = 16
    lr: float = 1e-3
    backbone_lr_mult: float = 1.0
    weight_decay: float = 1e-4
    scheduler: str = "cosine"
    warmup_epochs: int = 1
    patience: int = 5
    grad_clip: float = 1.0
    lp_epochs: int = 0
    freeze_bn: bool = False
    layer_decay: float = 1.0
    ema_decay: float | None = None
    ema_warmup: bool = True
    tta_hflip: bool = False
    class_balance: str = "weights"
    val_fraction: float = 0.15
    view_order: list[str] | None = None
    seed: int = 0
    precision: str = "32-true"
    accelerator: str = "auto"
    devices: int = 1
    strategy: str = "auto"
    num_nodes: int = 1
    ddp_timeout: float = 1800.0
    channels_last: bool = True
    num_workers: int = 0
    n_bootstrap: int = 1000
    report: bool = True
    name: str | None = None
    out: str = "runs"
    cache: str | None = None

    # ------------------------------------------------------------------ checks
    def validate(self, source: str | Path | None = None) -> TrainConfig:
        """Raise ConfigError naming the first bad field and its fix; return self."""

        def bad(key: str, reason: str, fix: str) -> ConfigError:
            return ConfigError(source, f"'{key}': {reason}", fix)

        if not self.manifest:
            raise bad("manifest", "missing.", "give the manifest CSV (with image, patient_id and the target).")
        if self.task not in TASKS:
            raise bad("task", f"{self.task!r} is not a task.", f"use one of {', '.join(TASKS)}.")
        if self.model.views < 1:
            raise bad("model.views", f"{self.model.views} views.", "use 1, or 2 for AP + lateral.")
        if len(self.input_size) != 2 or min(self.input_size) < 8:
            raise bad("input_size", f"{self.input_size} is not [height, width] >= 8.", "e.g. input_size: [256, 256].")
        if self.augmentation not in AUGMENTATIONS:
            raise bad("augmentation", f"unknown preset {self.augmentation!r}.", f"use one of {', '.join(AUGMENTATIONS)}.")
        if self.scheduler not in SCHEDULERS:
            raise bad("scheduler", f"unknown scheduler {self.scheduler!r}.", f"use one of {', '.join(SCHEDULERS)}.")
        if self.class_balance not in CLASS_BALANCE:
            raise bad("class_balance", f"{self.class_balance!r}.", f"use one of {', '.join(CLASS_BALANCE)}.")
        for key in ("epochs", "batch_size", "folds"):
            if int(getattr(self, key)) < (2 if key == "folds" else 1):
                raise bad(key, f"{getattr(self, key)} is too small.", "use a positive number (folds >= 2).")
        if self.lr <= 0 or self.backbone_lr_mult < 0:
            raise bad("lr", f"lr={self.lr}, backbone_lr_mult={self.backbone_lr_mult}.", "use lr > 0 and backbone_lr_mult >= 0.")
        if not 0.0 < self.val_fraction < 0.5:
            raise bad("val_fraction", f"{self.val_fraction}.", "use a share of the training patients, e.g. 0.15.")
        if self.patience < 1:
            raise bad("patience", f"{self.patience}.", "use at least 1 epoch.")
        if not 0 <= self.lp_epochs < self.epochs:
            raise bad("lp_epochs", f"{self.lp_epochs} linear-probe epochs of {self.epochs}.",
                      "use 0 (off) up to epochs - 1, so that fine-tuning has at least one epoch.")
        if self.lp_epochs and self.model.finetune == "head":
            raise bad("lp_epochs", "model.finetune is 'head', so the whole run is already a linear probe.",
                      "set lp_epochs: 0, or model.finetune: all / last:N.")
        if not 0.0 < self.layer_decay <= 1.0:
            raise bad("layer_decay", f"{self.layer_decay}.", "use a factor in (0, 1], e.g. 0.75 (1 = off).")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise bad("ema_decay", f"{self.ema_decay}.", "use a decay in (0, 1), e.g. 0.999, or null (off).")
        for key in ("freeze_bn", "ema_warmup", "tta_hflip"):
            if not isinstance(getattr(self, key), bool):
                raise bad(key, f"{getattr(self, key)!r} is not true or false.", f"write {key}: true or {key}: false.")
        if int(self.devices) < 1 or int(self.num_nodes) < 1:
            raise bad("devices", f"devices={self.devices}, num_nodes={self.num_nodes}.", "use 1 or more of each.")
        if self.strategy not in STRATEGIES:
            raise bad("strategy", f"{self.strategy!r}.", f"use one of {', '.join(STRATEGIES)}.")
        world = int(self.devices) * int(self.num_nodes)
        if self.batch_size % world:
            raise bad("batch_size", f"{self.batch_size} does not split evenly over {world} processes.",
                      f"use a multiple of {world} (each process takes batch_size / {world} per step).")
        if self.ddp_timeout <= 0:
            raise bad("ddp_timeout", f"{self.ddp_timeout}.", "use the seconds a process may wait for the others, e.g. 1800.")
        if self.num_workers < 0:
            raise bad("num_workers", f"{self.num_workers}.", "use 0 (main process) or more loader workers.")
        if not re.fullmatch(r"all|head|last:\d+", self.model.finetune):
            raise bad("model.finetune", f"{self.model.finetune!r}.", "use all, head or last:N.")
        if self.model.fusion not in ("offset", "concat"):
            raise bad("model.fusion", f"{self.model.fusion!r}.", "use offset (covariates on their own path) or concat.")
        if self.positive is not None and self.task != "binary":
            raise bad("positive", "only meaningful for task binary.", "drop it, or set task: binary.")
        return self

    # ------------------------------------------------------------------ I/O
    @property
    def run_name(self) -> str:
        """The run's folder name under ``out``."""
        return self.name or Path(self.manifest).stem

    @property
    def run_dir(self) -> Path:
        """``out/<name>``."""
        return Path(self.out) / self.run_name

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (what ``config.resolved.yaml`` holds)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | Path | None = None) -> TrainConfig:
        """Build from a dict, refusing unknown keys (with the list of known ones)."""
        data = copy.deepcopy(data)
        model = data.pop("model", None) or {}
        if isinstance(model, str):
            model = {"name": model}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(source, f"unknown key(s) {unknown}.", f"use only {sorted(known)}.")
        model_known = {f.name for f in fields(ModelConfig)}
        unknown = sorted(set(model) - model_known)
        if unknown:
            raise ConfigError(source, f"unknown model key(s) {unknown}.", f"use only {sorted(model_known)}; put backbone arguments under model.params.")
        if isinstance(data.get("input_size"), int):
            data["input_size"] = [data["input_size"], data["input_size"]]
        try:
            config = cls(model=ModelConfig(**model), **data)
        except TypeError as exc:
            raise ConfigError(source, str(exc), "check the key names against docs/training.md.") from exc
        return config.validate(source)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML config, apply ``overrides`` (``{"epochs": 3, "model.name": "resnet18"}``), validate.

    Relative paths in the file are taken relative to the file's folder.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, "config file not found.", "give the path of a training YAML (see docs/training.md).")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(path, f"not valid YAML ({exc}).", "fix the syntax.") from exc
    if not isinstance(data, dict):
        raise ConfigError(path, "the top level must be a mapping of keys.", "see docs/training.md for an example.")
    base = path.parent
    for key in ("manifest", "out", "cache"):
        if data.get(key) and not Path(str(data[key])).is_absolute():
            data[key] = str(base / str(data[key]))
    model = data.get("model")
    weights = model.get("weights") if isinstance(model, dict) else None
    # ``imagenet`` names the packaged weights (osteolens.models.weights), not a file.
    if weights and str(weights).lower() != "imagenet" and not Path(str(weights)).is_absolute():
        model["weights"] = str(base / str(weights))
    # Flags override the file; their paths are relative to the working directory.
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        head, _, tail = key.partition(".")
        if tail:
            section = data.get(head) or {}
            data[head] = section = {"name": section} if isinstance(section, str) else section
            section[tail] = value
        else:
            data[key] = value
    return TrainConfig.from_dict(data, path)
