"""Resumable training state as safetensors + JSON (no pickle).

After every epoch ``e`` a fold's ``checkpoint/`` folder gets ``epoch<e>.safetensors`` (the
current weights, the weights of the best validation epoch and the AdamW moments, as
``model.*``, ``best.*`` and ``optimizer.*`` tensors) and then ``state.json`` (epoch,
early-stopping counters, optimizer hyper-parameters, scheduler state, history, and the names
of that epoch's tensor files). Each file is written atomically (``io._files.write_atomic``)
and ``state.json`` last, so a run killed at any moment, even between two files, resumes from
the last complete epoch: ``state.json`` only ever names files of its own epoch. Files of
earlier epochs are removed once the new ``state.json`` is in place.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from osteolens.errors import ConfigError
from osteolens.io._files import write_atomic

_GROUPS = ("model", "best", "optimizer")


def state_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A module's state dict as contiguous CPU tensors (safetensors-ready copies)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> Path:
    """Write tensors as a safetensors file, atomically."""
    return write_atomic(path, save(tensors))


def _json_safe(value: Any) -> Any:
    """Non-finite floats as strings so the JSON stays standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _json_restore(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"float"}:
            return float(value["float"])
        return {k: _json_restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_restore(v) for v in value]
    return value


def optimizer_split(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (``state.<param>.<name>``) and JSON."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{name}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(index), {})[name] = value
    groups = [{k: v for k, v in group.items()} for group in state["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_join(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`optimizer_split`."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    for index, entry in meta["scalars"].items():
        state.setdefault(int(index), {}).update(entry)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    folder: Path,
    *,
    model: torch.nn.Module,
    best: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: dict[str, Any],
) -> None:
    """Write the resumable state of a fold after epoch ``state["epoch"]``.

    ``state`` may name other files of the same epoch (``state["ema"]``); they are kept, and
    every other ``*.safetensors`` or leftover temporary file in ``folder`` is removed.
    """
    name = f"epoch{state['epoch']}.safetensors"
    opt_tensors, opt_meta = optimizer_split(optimizer.state_dict())
    parts = {"model": state_tensors(model), "best": best, "optimizer": opt_tensors}
    save_tensors({f"{group}.{key}": value for group, tensors in parts.items() for key, value in tensors.items()},
                 folder / name)
    payload = dict(state, tensors=name, optimizer=opt_meta,
                   scheduler=scheduler.state_dict() if scheduler is not None else None)
    write_atomic(folder / "state.json", json.dumps(_json_safe(payload), indent=1))
    keep = {name, state.get("ema")}
    for old in [*folder.glob("*.safetensors"), *folder.glob(".*.tmp")]:
        if old.name not in keep:
            old.unlink(missing_ok=True)


def load_checkpoint(folder: Path) -> dict[str, Any] | None:
    """The saved state (``model``, ``best``, ``optimizer`` state dicts and the JSON fields), or None.

    Raises:
        ConfigError: the checkpoint was written by an osteolens without ``epoch<e>.safetensors``.
    """
    if not (folder / "state.json").is_file():
        return None
    payload = _json_restore(json.loads((folder / "state.json").read_text()))
    if "tensors" not in payload:
        raise ConfigError(folder, "this checkpoint was written by an older osteolens and cannot be resumed.",
                          "delete the checkpoint folder to retrain this fold from its start.")
    parts: dict[str, dict[str, torch.Tensor]] = {group: {} for group in _GROUPS}
    for key, value in load_file(str(folder / payload["tensors"])).items():
        group, name = key.split(".", 1)
        parts[group][name] = value
    payload["model"], payload["best"] = parts["model"], parts["best"]
    payload["optimizer"] = optimizer_join(parts["optimizer"], payload["optimizer"])
    return payload
