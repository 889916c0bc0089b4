"""The run directory's bookkeeping files: resolved config, environment, run facts (all written
atomically, see ``io._files.write_atomic``)."""

from __future__ import annotations

import json
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from osteolens.errors import ConfigError
from osteolens.io._files import write_atomic
from osteolens.training.config import TrainConfig

# Keys that change how a run is executed or reported, not what it learns.
_EXECUTION_KEYS = {"num_workers", "report", "n_bootstrap", "accelerator", "ddp_timeout"}


def git_commit() -> str | None:
    """The commit of the osteolens checkout, or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment(device: str, processes: int = 1) -> dict[str, Any]:
    """Versions, git commit, device, number of training processes and host facts for ``environment.json``."""
    import lightning
    import numpy
    import timm
    import torch
    import torchvision

    from osteolens import __version__

    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "osteolens": __version__,
        "git_commit": git_commit(),
        "processes": int(processes),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "lightning": lightning.__version__,
        "numpy": numpy.__version__,
        "device": device,
        "cuda_device": cuda,
        "torch_threads": torch.get_num_threads(),
    }


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Pretty JSON (NaN written as null), written atomically."""
    return write_atomic(path, json.dumps(_clean(data), indent=2) + "\n")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def read_config(run_dir: Path) -> TrainConfig:
    """The ``config.resolved.yaml`` of a run directory."""
    path = Path(run_dir) / "config.resolved.yaml"
    if not path.is_file():
        raise ConfigError(run_dir, "not a run directory (no config.resolved.yaml).", "give the folder 'osteolens train' wrote.")
    return TrainConfig.from_dict(yaml.safe_load(path.read_text()), path)


def write_config(run_dir: Path, config: TrainConfig) -> None:
    """Write ``config.resolved.yaml``; an existing one must describe the same run."""
    path = run_dir / "config.resolved.yaml"
    data = config.to_dict()
    if path.is_file():
        old = yaml.safe_load(path.read_text())
        differ = sorted(k for k in set(old) | set(data) if k not in _EXECUTION_KEYS and old.get(k) != data.get(k))
        if differ:
            raise ConfigError(
                run_dir,
                f"this run directory was made with a different configuration (differs in {differ}).",
                "give the run another name (--name) or output folder (--out), or delete the folder.",
            )
    write_atomic(path, yaml.safe_dump(data, sort_keys=False))
