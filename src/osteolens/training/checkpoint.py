"""Resumable training state as safetensors + JSON (no pickle).

A fold's ``checkpoint/`` folder holds ``model.safetensors`` (current weights),
``best.safetensors`` (weights of the best validation epoch), ``optimizer.safetensors``
(AdamW moments and step counts) and ``state.json`` (epoch, early-stopping counters,
optimizer hyper-parameters, scheduler state, history). It is rewritten after every epoch,
each file through a temporary name and ``os.replace``, ``state.json`` last, so a run killed
at any moment resumes from the last complete epoch.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file


def state_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A module's state dict as contiguous CPU tensors (safetensors-ready copies)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)


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
    """Write the resumable state of a fold after an epoch."""
    folder.mkdir(parents=True, exist_ok=True)
    _save_tensors(state_tensors(model), folder / "model.safetensors")
    _save_tensors(best, folder / "best.safetensors")
    opt_tensors, opt_meta = optimizer_split(optimizer.state_dict())
    _save_tensors(opt_tensors, folder / "optimizer.safetensors")
    payload = dict(state, optimizer=opt_meta, scheduler=scheduler.state_dict() if scheduler is not None else None)
    tmp = folder / "state.json.tmp"
    tmp.write_text(json.dumps(_json_safe(payload), indent=1))
    os.replace(tmp, folder / "state.json")


def load_checkpoint(folder: Path) -> dict[str, Any] | None:
    """The saved state (``model``, ``best``, ``optimizer`` state dicts and the JSON fields), or None."""
    if not (folder / "state.json").is_file():
        return None
    payload = _json_restore(json.loads((folder / "state.json").read_text()))
    payload["model"] = load_file(str(folder / "model.safetensors"))
    payload["best"] = load_file(str(folder / "best.safetensors"))
    payload["optimizer"] = optimizer_join(load_file(str(folder / "optimizer.safetensors")), payload["optimizer"])
    return payload
