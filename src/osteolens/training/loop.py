"""One fold's optimisation on Lightning Fabric: AdamW, warm-up + cosine or plateau, clipping,
early stopping and best-epoch selection on the inner validation split, resumable.

Fabric runs the same code on CPU, one GPU (``precision="bf16-mixed"`` / ``"16-mixed"``) or
several (DDP, ``devices``). Determinism: every epoch starts from seeds derived from
(run seed, fold, epoch) for the global torch RNG (augmentation, dropout) and the loader's
shuffling generator, so an epoch replays identically whether or not the run was
interrupted before it; that is what makes ``--resume`` exact.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from osteolens.models import tasks
from osteolens.models.net import OsteoNet
from osteolens.training.checkpoint import load_checkpoint, save_checkpoint, state_tensors

Callback = Callable[[dict[str, Any]], None]


@dataclass
class FitSettings:
    """Optimisation settings of one fold: the fields of the same names in
    :class:`~osteolens.training.config.TrainConfig` (where the defaults live), with the
    fold's own seed."""

    task: str
    epochs: int
    batch_size: int
    lr: float
    backbone_lr_mult: float
    weight_decay: float
    scheduler: str
    warmup_epochs: int
    patience: int
    grad_clip: float
    seed: int
    num_workers: int
    channels_last: bool

    @classmethod
    def from_config(cls, config: Any, seed: int) -> FitSettings:
        """Copy the settings from a ``TrainConfig``, with ``seed`` for this fold."""
        values = {f.name: getattr(config, f.name) for f in fields(cls) if f.name != "seed"}
        return cls(**values, seed=seed)


def make_fabric(accelerator: str = "auto", precision: str = "32-true", devices: int | str = 1):
    """A launched ``lightning.fabric.Fabric``."""
    from lightning.fabric import Fabric

    fabric = Fabric(accelerator=accelerator, devices=devices, precision=precision)
    fabric.launch()
    return fabric


def _lr_lambda(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Linear warm-up over ``warmup_steps``, then half a cosine down to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + 7919 * (epoch + 1)) % (2**31 - 1)


def _to_device(batch, fabric, channels_last: bool):
    image, tab, y = (fabric.to_device(t) for t in batch)
    if channels_last and image.ndim == 4:
        image = image.contiguous(memory_format=torch.channels_last)
    return image, tab, y


def predict_outputs(net: OsteoNet, dataset: Dataset, fabric, batch_size: int, channels_last: bool = False) -> np.ndarray:
    """Raw outputs ``[N, num_outputs]`` in eval mode (no augmentation: the dataset has none)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    was_training = net.training
    net.eval()
    outputs = []
    with torch.no_grad():
        for batch in loader:
            image, tab, _ = _to_device(batch, fabric, channels_last)
            outputs.append(net(image, tab if tab.shape[1] else None).float().cpu())
    net.train(was_training)
    return torch.cat(outputs).numpy() if outputs else np.zeros((0, net.config["num_outputs"]), np.float32)


def fit(
    net: OsteoNet,
    train_set: Dataset,
    val_set: Dataset,
    settings: FitSettings,
    fabric,
    checkpoint_dir: Path,
    *,
    class_weights: np.ndarray | None = None,
    sample_weights: np.ndarray | None = None,
    val_metric: Callable[[np.ndarray], tuple[str, float]] | None = None,
    resume: bool = False,
    callback: Callback | None = None,
) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Train ``net`` and return (best-epoch weights, per-epoch history).

    Args:
        net: the network (its weights are changed in place; the best ones are returned).
        train_set: augmented training samples.
        val_set: inner validation samples (grouped by patient, from the training folds).
        settings: optimisation settings.
        fabric: from :func:`make_fabric`.
        checkpoint_dir: where the resumable state is written every epoch.
        class_weights: per-class loss weights (``class_balance: weights``).
        sample_weights: per-sample draw weights (``class_balance: sampler``).
        val_metric: maps validation outputs to (name, value) for the history and the bar.
        resume: continue from ``checkpoint_dir`` when it holds a state.
        callback: receives ``{"event": "batch"|"epoch", ...}`` for progress display.
    """
    from lightning.fabric import seed_everything

    seed_everything(settings.seed, verbose=False)
    if settings.channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(net.parameter_groups(settings.lr, settings.backbone_lr_mult, settings.weight_decay))
    steps_per_epoch = math.ceil(len(train_set) / settings.batch_size)
    scheduler: Any = None
    if settings.scheduler == "cosine":
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, _lr_lambda(settings.warmup_epochs * steps_per_epoch, settings.epochs * steps_per_epoch)
        )
    elif settings.scheduler == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=max(1, settings.patience // 2))
    weights = torch.as_tensor(class_weights, dtype=torch.float32) if class_weights is not None else None

    start_epoch, best_loss, bad_epochs, history = 0, math.inf, 0, []
    best = state_tensors(net)
    saved = load_checkpoint(checkpoint_dir) if resume else None
    if saved is not None:
        net.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None and saved.get("scheduler") is not None:
            scheduler.load_state_dict(saved["scheduler"])
        best = saved["best"]
        start_epoch, best_loss, bad_epochs = saved["epoch"] + 1, saved["best_loss"], saved["bad_epochs"]
        history = saved["history"]
        if saved.get("stopped"):
            return best, history

    model, optimizer = fabric.setup(net, optimizer)
    val_loader = DataLoader(val_set, batch_size=settings.batch_size, shuffle=False, num_workers=settings.num_workers)
    for epoch in range(start_epoch, settings.epochs):
        started = time.perf_counter()
        torch.manual_seed(_epoch_seed(settings.seed, epoch))
        generator = torch.Generator().manual_seed(_epoch_seed(settings.seed + 1, epoch))
        if sample_weights is not None:
            sampler = WeightedRandomSampler(torch.as_tensor(sample_weights, dtype=torch.double), len(train_set), generator=generator)
            loader = DataLoader(train_set, batch_size=settings.batch_size, sampler=sampler, num_workers=settings.num_workers,
                                drop_last=len(train_set) > settings.batch_size)
        else:
            loader = DataLoader(train_set, batch_size=settings.batch_size, shuffle=True, generator=generator,
                                num_workers=settings.num_workers, drop_last=len(train_set) > settings.batch_size)
        model.train()
        total, count = 0.0, 0
        for batch in loader:
            image, tab, y = _to_device(batch, fabric, settings.channels_last)
            outputs = model(image, tab if tab.shape[1] else None)
            loss = tasks.loss(settings.task, outputs, y, weights)
            optimizer.zero_grad(set_to_none=True)
            fabric.backward(loss)
            if settings.grad_clip > 0:
                fabric.clip_gradients(model, optimizer, max_norm=settings.grad_clip)
            optimizer.step()
            if settings.scheduler == "cosine":
                scheduler.step()
            total += float(loss.detach()) * len(y)
            count += len(y)
            if callback is not None:
                callback({"event": "batch", "epoch": epoch, "loss": float(loss.detach()), "images": len(y)})
        val_outputs, val_loss = _evaluate(model, val_loader, fabric, settings, weights)
        if settings.scheduler == "plateau":
            scheduler.step(val_loss)
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": total / max(count, 1),
            "val_loss": val_loss,
            "lr": optimizer.param_groups[-1]["lr"],
            "seconds": round(time.perf_counter() - started, 3),
        }
        if val_metric is not None:
            name, value = val_metric(val_outputs)
            record[f"val_{name}"] = value
        improved = val_loss < best_loss - 1e-6
        if improved:
            best_loss, bad_epochs, best = val_loss, 0, state_tensors(net)
        else:
            bad_epochs += 1
        record["best"] = improved
        history.append(record)
        stopped = bad_epochs >= settings.patience
        save_checkpoint(
            checkpoint_dir, model=net, best=best, optimizer=optimizer, scheduler=scheduler,
            state={"epoch": epoch, "best_loss": best_loss, "bad_epochs": bad_epochs, "history": history, "stopped": stopped},
        )
        if callback is not None:
            callback({"event": "epoch", **record})
        if stopped:
            break
    return best, history


def _evaluate(model, loader, fabric, settings: FitSettings, weights) -> tuple[np.ndarray, float]:
    model.eval()
    outputs, targets = [], []
    with torch.no_grad():
        for batch in loader:
            image, tab, y = _to_device(batch, fabric, settings.channels_last)
            outputs.append(model(image, tab if tab.shape[1] else None).float())
            targets.append(y)
    out, y = torch.cat(outputs), torch.cat(targets)
    return out.cpu().numpy(), float(tasks.loss(settings.task, out, y, weights))
