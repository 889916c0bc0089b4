"""One fold's optimisation on Lightning Fabric: AdamW, warm-up + cosine or plateau, clipping,
early stopping and best-epoch selection on the inner validation split, resumable.

Fine-tuning that keeps what pretraining learned (all off by default, see ``docs/training.md``):

* **LP-FT** (``lp_epochs``; Kumar et al. 2022): the first ``lp_epochs`` epochs train only the
  head (backbone frozen, its batch norms in eval mode): the *probe* phase; then the net's
  ``finetune`` depth applies: the *fine-tune* phase. AdamW and the scheduler are rebuilt at
  the switch (fresh moments, fresh warm-up, the cosine spans the phase's own epochs) and
  the early-stopping counter restarts; early stopping never ends the probe phase.
* **Frozen batch-norm statistics** (``freeze_bn``): :meth:`OsteoNet.freeze_norm_statistics`.
* **Layer-wise learning-rate decay** (``layer_decay``): :meth:`OsteoNet.parameter_groups`.
* **EMA of the weights** (``ema_decay``): timm's ``ModelEmaV3`` is updated after every
  optimiser step ``t`` with decay ``min(ema_decay, 1 - t^(-2/3))`` (timm's warm-up, so short
  small-data runs do not stay near the initial weights; ``ema_warmup: false``: ``ema_decay``
  from the first step), i.e. ``e <- d e + (1 - d) w`` on every parameter; buffers
  (batch-norm running statistics) are copied from the live network (timm's
  ``exclude_buffers``: ``OsteoNet``'s state dict names shared modules twice, which timm's
  buffer-averaging path would update twice). Validation, best-epoch selection and the
  returned weights are the EMA's.
* **Flip averaging** (``tta_hflip``): validation (and :func:`predict_outputs` with
  ``hflip=True``) averages the raw outputs of each image and its horizontal mirror.

Fabric runs the same code on CPU, one GPU (``precision="bf16-mixed"`` / ``"16-mixed"``) or
several processes (DDP: ``devices`` x ``num_nodes``, gloo on CPU, NCCL on GPUs). Determinism:
every epoch starts from seeds derived from (run seed, fold, epoch) for the global torch RNG
(augmentation, dropout; process ``r`` > 0 of a DDP run adds ``r`` to the run seed) and for
the epoch's order of the training samples, so an epoch replays identically whether or not
the run was interrupted before it; that is what makes ``--resume`` exact.

Several processes: every process draws the same epoch order (a permutation, or the
weighted draw of ``class_balance: sampler``) and takes every ``world``-th sample of it
(:func:`epoch_shard`), in steps of ``batch_size / world``; DDP averages the gradients, so a
step sees the same global batch, and takes the same step, as one process with
``batch_size`` (exactly so without batch-norm statistics in training mode, e.g. with
``freeze_bn``: each process normalises its own share otherwise, as DDP does without
SyncBatchNorm, which needs GPUs). Rank 0's decisions (best epoch, early stop) and weights
hold for all; only rank 0 writes checkpoints. :func:`predict_outputs` gives each process a
share of the rows and gathers the outputs in row order. The checkpoint also holds the
optimiser step count and the EMA weights (``ema_epoch<e>.safetensors``, named in
``state.json`` so a kill between two writes never pairs mismatched files); resuming at or
across the probe / fine-tune boundary rebuilds the same phase an unbroken run would.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from osteolens.models import tasks
from osteolens.models.net import OsteoNet
from osteolens.training.checkpoint import load_checkpoint, save_checkpoint, save_tensors, state_tensors

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
    lp_epochs: int
    freeze_bn: bool
    layer_decay: float
    ema_decay: float | None
    ema_warmup: bool
    tta_hflip: bool

    @classmethod
    def from_config(cls, config: Any, seed: int) -> FitSettings:
        """Copy the settings from a ``TrainConfig``, with ``seed`` for this fold."""
        values = {f.name: getattr(config, f.name) for f in fields(cls) if f.name != "seed"}
        return cls(**values, seed=seed)


def make_fabric(accelerator: str = "auto", precision: str = "32-true", devices: int | str = 1,
                strategy: str = "auto", num_nodes: int = 1, timeout: float = 1800.0):
    """A launched ``lightning.fabric.Fabric``.

    With ``devices * num_nodes > 1`` (or ``strategy="ddp"``) this is DDP: run as a script
    (``osteolens train``), Fabric starts the other local processes by running the same command
    again (``torchrun`` and Slurm start them themselves); ``timeout`` bounds how long a process
    waits for the others in a collective, so a lost process ends the run instead of hanging it.
    """
    from datetime import timedelta

    from lightning.fabric import Fabric

    if strategy == "ddp" or int(devices) * int(num_nodes) > 1:
        from lightning.fabric.strategies import DDPStrategy

        strategy = DDPStrategy(timeout=timedelta(seconds=float(timeout)))
    fabric = Fabric(accelerator=accelerator, devices=devices, precision=precision, strategy=strategy,
                    num_nodes=num_nodes)
    fabric.launch()
    return fabric


def release_processes(fabric) -> None:
    """End a multi-process run's process group on every rank, once no collective is left.

    Without it, a rank that returns while Gloo's worker threads still hold work can abort at
    interpreter exit ("terminate called without an active exception", exit -6: seen on the
    2-process CPU test under load; torch does not register this teardown itself). A no-op for
    one process.
    """
    import torch.distributed as dist

    if fabric.world_size > 1 and dist.is_available() and dist.is_initialized():
        fabric.barrier()
        dist.destroy_process_group()


#: Added to the run seed per DDP process rank for the global torch RNG (augmentation, dropout).
RANK_SEED_STRIDE = 1


def epoch_shard(n: int, generator: torch.Generator, rank: int, world: int,
                sample_weights: np.ndarray | None = None) -> list[int]:
    """This process's share of one epoch's training order.

    The order is ``torch.randperm(n)`` (or ``n`` weighted draws with replacement, as
    ``WeightedRandomSampler``) from ``generator``, the same in every process; process ``rank``
    takes positions ``rank, rank + world, ...``, ``n // world`` of them, so the processes'
    ``i``-th batches of ``batch_size / world`` together are the ``i``-th batch of ``batch_size``
    of the one-process order.

    This is ``torch.utils.data.DistributedSampler`` with ``drop_last=True`` (the same
    ``rank::world`` split of a truncated permutation), written out because that sampler has no
    weighted draws and ``class_balance: sampler`` needs them sharded the same way.
    """
    if sample_weights is not None:
        order = torch.multinomial(torch.as_tensor(sample_weights, dtype=torch.double), n, True, generator=generator)
    else:
        order = torch.randperm(n, generator=generator)
    return order[rank::world][: n // world].tolist()


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


def _outputs(module, image: torch.Tensor, tab: torch.Tensor, hflip: bool) -> torch.Tensor:
    """Raw outputs of a batch; with ``hflip`` the mean of those of the images and their mirrors
    (the last axis, width, reversed; each view of a multi-view sample mirrored)."""
    tabular = tab if tab.shape[1] else None
    outputs = module(image, tabular).float()
    if hflip:
        outputs = (outputs + module(image.flip(-1), tabular).float()) / 2
    return outputs


def predict_outputs(net: OsteoNet, dataset: Dataset, fabric, batch_size: int, channels_last: bool = False,
                    hflip: bool = False) -> np.ndarray:
    """Raw outputs ``[N, num_outputs]`` in eval mode (no augmentation: the dataset has none).

    With ``hflip`` each row is the mean of the raw outputs of the image and of its horizontal
    flip (``tta_hflip``).
    """
    from torch.utils.data import Subset

    world, rank = fabric.world_size, fabric.global_rank
    rows = range(rank, len(dataset), world)  # several processes: each predicts every world-th row
    loader = DataLoader(Subset(dataset, list(rows)) if world > 1 else dataset, batch_size=batch_size, shuffle=False,
                        num_workers=0)
    was_training = net.training
    net.eval()
    outputs = []
    with torch.no_grad():
        for batch in loader:
            image, tab, _ = _to_device(batch, fabric, channels_last)
            outputs.append(_outputs(net, image, tab, hflip).cpu())
    net.train(was_training)
    width = net.config["num_outputs"]
    local = torch.cat(outputs) if outputs else torch.zeros((0, width))
    if world == 1:
        return local.numpy()
    # all_gather needs equal shapes: pad each share to ceil(n / world) rows, then row i is
    # share i % world, position i // world.
    share = -(-len(dataset) // world)
    padded = torch.cat([local, torch.zeros((share - len(local), width))])
    with warnings.catch_warnings():  # Lightning calls a torch all_gather that torch marks deprecated
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        gathered = fabric.all_gather(fabric.to_device(padded)).cpu()  # [world, share, K]
    return gathered.transpose(0, 1).reshape(-1, width)[: len(dataset)].numpy()


PROBE, FINETUNE = "probe", "finetune"


def phase_of(settings: FitSettings, epoch: int) -> str:
    """``probe`` for the first ``lp_epochs`` epochs (0-based ``epoch``), then ``finetune``."""
    return PROBE if epoch < settings.lp_epochs else FINETUNE


def _start_phase(net: OsteoNet, settings: FitSettings, phase: str, steps_per_epoch: int):
    """Trainable parameters, a fresh AdamW and its scheduler for one phase.

    The probe phase trains the head only; the fine-tune phase the net's configured depth
    (``net.config["finetune"]``). Without LP-FT the net's freezing is left as built. The
    cosine schedule warms up over ``warmup_epochs`` and reaches 0 at the phase's last step.
    """
    if settings.lp_epochs:
        net.apply_finetune("head" if phase == PROBE else str(net.config.get("finetune", "all")))
    optimizer = torch.optim.AdamW(
        net.parameter_groups(settings.lr, settings.backbone_lr_mult, settings.weight_decay, settings.layer_decay)
    )
    epochs = settings.lp_epochs if phase == PROBE else settings.epochs - settings.lp_epochs
    scheduler: Any = None
    if settings.scheduler == "cosine":
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, _lr_lambda(settings.warmup_epochs * steps_per_epoch, epochs * steps_per_epoch)
        )
    elif settings.scheduler == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=max(1, settings.patience // 2))
    return optimizer, scheduler


def make_ema(net: OsteoNet, settings: FitSettings):
    """timm's ``ModelEmaV3`` of ``net`` (a copy of its current weights) for ``settings.ema_decay``:
    parameters averaged, buffers copied (see the module docstring)."""
    from timm.utils import ModelEmaV3

    return ModelEmaV3(net, decay=float(settings.ema_decay), use_warmup=settings.ema_warmup, exclude_buffers=True)


def update_ema(ema, net: OsteoNet, settings: FitSettings, step: int) -> None:
    """One EMA update after optimiser step ``step`` (1-based): decay ``min(ema_decay,
    1 - step^(-2/3))`` with warm-up (0 at step 1: a copy), else ``ema_decay``."""
    if settings.ema_warmup:
        ema.update(net, step=step)
    else:
        ema.update(net)


def _save_ema(folder: Path, ema, epoch: int, write: bool = True) -> str:
    """Write the EMA weights as ``ema_epoch<epoch>.safetensors`` (atomically, when ``write``); return the name."""
    name = f"ema_epoch{epoch}.safetensors"
    if write:
        save_tensors(state_tensors(ema.module), folder / name)
    return name


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
        net: the network (its weights are changed in place; the best ones are returned: the
            EMA's when ``settings.ema_decay`` is set).
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
    from safetensors.torch import load_file

    seed_everything(settings.seed, verbose=False)
    world, rank = fabric.world_size, fabric.global_rank
    if settings.channels_last:
        net = net.to(memory_format=torch.channels_last)
    if settings.freeze_bn:
        net.freeze_norm_statistics()
    steps_per_epoch = math.ceil(len(train_set) / settings.batch_size)
    per_process = settings.batch_size // world
    weights = torch.as_tensor(class_weights, dtype=torch.float32) if class_weights is not None else None

    start_epoch, best_loss, bad_epochs, updates, history = 0, math.inf, 0, 0, []
    best = state_tensors(net)
    saved = load_checkpoint(checkpoint_dir) if resume else None
    if saved is not None:
        net.load_state_dict(saved["model"])
        best = saved["best"]
        start_epoch, best_loss, bad_epochs = saved["epoch"] + 1, saved["best_loss"], saved["bad_epochs"]
        updates, history = saved.get("updates", 0), saved["history"]
        if saved.get("stopped"):
            return best, history

    val_loader = DataLoader(val_set, batch_size=settings.batch_size, shuffle=False, num_workers=settings.num_workers)
    phase, model, optimizer, scheduler, ema = None, None, None, None, None
    for epoch in range(start_epoch, settings.epochs):
        if phase_of(settings, epoch) != phase:
            phase = phase_of(settings, epoch)
            optimizer, scheduler = _start_phase(net, settings, phase, steps_per_epoch)
            if saved is not None and epoch == start_epoch and phase_of(settings, saved["epoch"]) == phase:
                optimizer.load_state_dict(saved["optimizer"])
                if scheduler is not None and saved.get("scheduler") is not None:
                    scheduler.load_state_dict(saved["scheduler"])
            if phase == FINETUNE and epoch == settings.lp_epochs > 0:
                bad_epochs = 0  # the fine-tune phase gets its own patience
            model, optimizer = fabric.setup(net, optimizer)
            if settings.ema_decay is not None and ema is None:
                ema = make_ema(net, settings)  # after setup: on the training device
                if saved is not None and saved.get("ema"):
                    ema.module.load_state_dict(load_file(str(checkpoint_dir / saved["ema"])))
        started = time.perf_counter()
        torch.manual_seed(_epoch_seed(settings.seed + RANK_SEED_STRIDE * rank, epoch))
        generator = torch.Generator().manual_seed(_epoch_seed(settings.seed + 1, epoch))
        shard = epoch_shard(len(train_set), generator, rank, world, sample_weights)
        loader = DataLoader(train_set, batch_size=per_process, sampler=shard, num_workers=settings.num_workers,
                            drop_last=len(shard) > per_process)
        model.train()
        total, count = 0.0, 0
        for batch in loader:
            image, tab, y = _to_device(batch, fabric, settings.channels_last)
            outputs = model(image, tab if tab.shape[1] else None)
            loss = tasks.loss(settings.task, outputs, y, weights)
            if weights is not None and world > 1:
                loss = _global_weighted_mean(loss, weights, y, fabric)
            optimizer.zero_grad(set_to_none=True)
            fabric.backward(loss)
            if settings.grad_clip > 0:
                fabric.clip_gradients(model, optimizer, max_norm=settings.grad_clip)
            optimizer.step()
            updates += 1
            if ema is not None:
                update_ema(ema, net, settings, updates)
            if settings.scheduler == "cosine":
                scheduler.step()
            total += float(loss.detach()) * len(y)
            count += len(y)
            if callback is not None:
                callback({"event": "batch", "epoch": epoch, "loss": float(loss.detach()), "images": len(y) * world})
        if world > 1:  # the epoch's training loss over every process's samples
            total, count = fabric.all_reduce(torch.tensor([total, float(count)], dtype=torch.float64), reduce_op="sum").tolist()
        evaluated = ema.module if ema is not None else model
        val_outputs, val_loss = _evaluate(evaluated, val_loader, fabric, settings, weights)
        if settings.scheduler == "plateau":
            scheduler.step(val_loss)
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": total / max(count, 1),
            "val_loss": val_loss,
            "lr": optimizer.param_groups[-1]["lr"],
            "seconds": round(time.perf_counter() - started, 3),
        }
        if settings.lp_epochs:
            record["phase"] = phase
        if val_metric is not None:
            name, value = val_metric(val_outputs)
            record[f"val_{name}"] = value
        # Several processes: rank 0 decides (an EMA copies each process's own batch-norm buffers).
        improved = fabric.broadcast(val_loss < best_loss - 1e-6) if world > 1 else val_loss < best_loss - 1e-6
        if improved:
            best_loss, bad_epochs, best = val_loss, 0, state_tensors(ema.module if ema is not None else net)
        else:
            bad_epochs += 1
        record["best"] = improved
        history.append(record)
        stopped = phase == FINETUNE and bad_epochs >= settings.patience
        state = {"epoch": epoch, "best_loss": best_loss, "bad_epochs": bad_epochs, "history": history,
                 "stopped": stopped, "updates": updates, "phase": phase}
        if ema is not None:
            state["ema"] = _save_ema(checkpoint_dir, ema, epoch, write=fabric.is_global_zero)
        if fabric.is_global_zero:
            save_checkpoint(checkpoint_dir, model=net, best=best, optimizer=optimizer, scheduler=scheduler, state=state)
        if callback is not None:
            callback({"event": "epoch", **record})
        if stopped:
            break
    if world > 1:  # every process continues with rank 0's selected weights and buffers
        best = fabric.broadcast(best, src=0)
    return best, history


def _global_weighted_mean(loss: torch.Tensor, weights: torch.Tensor, y: torch.Tensor, fabric) -> torch.Tensor:
    """This process's class-weighted mean loss ``S_r / W_r`` rescaled to ``world * S_r / W``
    (``W``: the weights summed over every process's share of the step), so that DDP's average
    of the processes' gradients is the gradient of the global batch's weighted mean ``S / W``,
    as one process would compute it."""
    local = weights.to(loss.device)[y.long()].sum()
    total = fabric.all_reduce(local.detach().clone(), reduce_op="sum")
    return loss * (local * fabric.world_size / total.clamp_min(1e-12))


def _evaluate(model, loader, fabric, settings: FitSettings, weights) -> tuple[np.ndarray, float]:
    """Validation outputs (flip-averaged with ``tta_hflip``) and their loss; ``model`` is the
    Fabric-wrapped net or the EMA copy (run under Fabric's autocast)."""
    model.eval()
    outputs, targets = [], []
    with torch.no_grad(), fabric.autocast():
        for batch in loader:
            image, tab, y = _to_device(batch, fabric, settings.channels_last)
            outputs.append(_outputs(model, image, tab, settings.tta_hflip))
            targets.append(y)
    out, y = torch.cat(outputs), torch.cat(targets)
    return out.cpu().numpy(), float(tasks.loss(settings.task, out, y, weights))
