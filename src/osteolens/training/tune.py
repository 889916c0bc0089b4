"""Hyper-parameter search with Optuna over cross-validated training runs.

Each trial is one ``osteolens train`` run (every fold) with the trial's values written into
the training config; its objective is the run's pooled out-of-fold metric (AUC for binary,
macro AUC for multiclass, quadratic kappa for ordinal, MAE for regression, or any metric
of ``metrics.json``'s ``pooled`` section). Optuna's TPE sampler (seeded) proposes the
values; the study lives in ``study.db`` (SQLite), so a search stopped half-way continues
where it was when run again with the same ``--out``.

Honesty. Trials never see the external test fold (fold -1): ``osteolens train`` keeps it
out of training, validation and the out-of-fold predictions. The best trial's
cross-validated metric is optimistic, because it was *chosen* as the best of many; judge
the tuned config on the external test fold (reported by ``osteolens train``) or on new data.

Search space (YAML), one entry per config key, dotted for the model section::

    lr: {low: 1.0e-4, high: 1.0e-2, log: true}     # float on a log scale
    weight_decay: {low: 1.0e-6, high: 1.0e-2, log: true}
    model.dropout: {low: 0.0, high: 0.5}            # float
    batch_size: {choices: [8, 16, 32]}              # categorical
    model.params.filters: {low: 8, high: 64, step: 8}   # integers when low and high are
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from rich.console import Console

from osteolens.errors import ConfigError
from osteolens.io._files import write_atomic
from osteolens.training.config import TrainConfig

#: The metric each task is tuned on by default, and whether higher is better.
DEFAULT_METRIC = {"binary": ("auc", "maximize"), "multiclass": ("auc_macro", "maximize"),
                  "ordinal": ("kappa_quadratic", "maximize"), "regression": ("mae", "minimize")}
_LOWER_IS_BETTER = {"mae", "rmse", "brier", "loss"}


@dataclass(frozen=True)
class Parameter:
    """One searched config key: a float or integer range, or a list of choices."""

    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] | None = None

    def suggest(self, trial: Any) -> Any:
        """The trial's value (Optuna's ``suggest_*``)."""
        if self.choices is not None:
            return trial.suggest_categorical(self.key, list(self.choices))
        if isinstance(self.low, int) and isinstance(self.high, int) and not isinstance(self.step, float):
            return trial.suggest_int(self.key, self.low, self.high, step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)


def parse_space(data: Any, source: str | Path | None = None) -> list[Parameter]:
    """Check and parse a search space ``{key: {low, high[, log, step]} | {choices: [...]}}``."""
    if not isinstance(data, dict) or not data:
        raise ConfigError(source, "the search space must be a non-empty mapping of config keys.",
                          "write e.g. 'lr: {low: 1.0e-4, high: 1.0e-2, log: true}'.")
    parameters = []
    for key, spec in data.items():
        if isinstance(spec, dict) and "choices" in spec and set(spec) == {"choices"}:
            choices = spec["choices"]
            if not isinstance(choices, list) or not choices:
                raise ConfigError(source, f"'{key}': choices must be a non-empty list.", "e.g. {choices: [8, 16]}.")
            parameters.append(Parameter(str(key), choices=tuple(choices)))
            continue
        if not isinstance(spec, dict) or not {"low", "high"} <= set(spec) <= {"low", "high", "log", "step"}:
            raise ConfigError(source, f"'{key}': {spec!r} is not a range or a list of choices.",
                              "use {low: A, high: B[, log: true][, step: S]} or {choices: [...]}.")
        low, high = spec["low"], spec["high"]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)) or not low < high:
            raise ConfigError(source, f"'{key}': low={low!r}, high={high!r}.", "use numbers with low < high.")
        if spec.get("log") and low <= 0:
            raise ConfigError(source, f"'{key}': a log scale needs low > 0.", "raise low, or drop log.")
        parameters.append(Parameter(str(key), low, high, bool(spec.get("log", False)), spec.get("step")))
    return parameters


def load_space(path: str | Path) -> list[Parameter]:
    """Read a search space YAML (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, "search space file not found.", "give a YAML like 'lr: {low: 1.0e-4, high: 1.0e-2, log: true}'.")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(path, f"not valid YAML ({exc}).", "fix the syntax.") from exc
    return parse_space(data, path)


def with_values(config: TrainConfig, values: dict[str, Any], **fields: Any) -> TrainConfig:
    """A copy of ``config`` with dotted keys (``lr``, ``model.dropout``, ``model.params.filters``)
    set to ``values`` and top-level ``fields`` replaced; validated like a YAML file."""
    data = config.to_dict()
    for key, value in values.items():
        *parents, last = key.split(".")
        section = data
        for part in parents:
            if not isinstance(section.get(part), dict):
                section[part] = {}
            section = section[part]
        section[last] = value
    data.update(fields)
    return TrainConfig.from_dict(data, source="search space")


@dataclass
class TuneResult:
    """The finished study: its folder, the best trial's values and metric, every trial."""

    out: Path
    metric: str
    direction: str
    best_values: dict[str, Any]
    best_value: float
    best_run: Path
    trials: pd.DataFrame


def tune(
    config: TrainConfig,
    space: list[Parameter],
    trials: int,
    out: str | Path,
    *,
    metric: str | None = None,
    seed: int = 0,
    quiet: bool = True,
    console: Console | None = None,
) -> TuneResult:
    """Run ``trials`` more trials of the study in ``out`` (created, or continued).

    Writes ``out/study.db``, ``out/trials/trial<k>/`` (each trial's run directory),
    ``out/trials.csv``, ``out/best_config.yaml`` (the config with the best values, ready
    for ``osteolens train``) and ``out/best.json``.

    Raises:
        ConfigError: an unknown metric, a space key the config does not have, no trial finished.
    """
    import optuna

    from osteolens.training.cv import run_training

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    default_metric, default_direction = DEFAULT_METRIC[config.task]
    metric = metric or default_metric
    direction = default_direction if metric == default_metric else (
        "minimize" if metric in _LOWER_IS_BETTER else "maximize")
    # Every key must exist before the first (long) trial starts.
    with_values(config, {p.key: p.choices[0] if p.choices else p.low for p in space})
    console = console or Console(stderr=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="osteolens", storage=f"sqlite:///{out / 'study.db'}", load_if_exists=True,
        direction=direction, sampler=optuna.samplers.TPESampler(seed=seed),
    )

    def objective(trial: optuna.Trial) -> float:
        values = {p.key: p.suggest(trial) for p in space}
        run_config = with_values(config, values, out=str(out / "trials"), name=f"trial{trial.number}", report=False)
        result = run_training(run_config, quiet=quiet)
        pooled = result.metrics["pooled"]
        if metric not in pooled:
            raise ConfigError("--metric", f"'{metric}' is not a metric of this task ({sorted(pooled)}).",
                              "choose one of those.")
        value = float(pooled[metric])
        trial.set_user_attr("run_dir", str(result.run_dir))
        console.print(f"trial {trial.number}: {metric} {value:.4f} with {values}", markup=False, highlight=False)
        if not math.isfinite(value):
            raise optuna.TrialPruned(f"{metric} is not finite")
        return value

    # A trial whose training fails in torch (e.g. out of memory for a large batch) is recorded
    # as failed and the search goes on; an osteolens error (a bad metric name, a value the
    # config refuses) stops it at once, since every later trial would fail the same way.
    study.optimize(objective, n_trials=trials, catch=(RuntimeError,))
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise ConfigError(out, "no trial finished.", "see the errors above; check the config with 'osteolens train'.")
    best = study.best_trial
    frame = study.trials_dataframe(attrs=("number", "value", "params", "state", "user_attrs", "duration"))
    frame = frame.rename(columns=lambda c: c.replace("params_", "").replace("user_attrs_", "")).rename(
        columns={"value": metric})
    write_atomic(out / "trials.csv", frame.to_csv(index=False))
    best_config = with_values(config, best.params)
    write_atomic(out / "best_config.yaml", yaml.safe_dump(best_config.to_dict(), sort_keys=False))
    summary = {"metric": metric, "direction": direction, "best_value": best.value, "best_trial": best.number,
               "best_values": best.params, "best_run": best.user_attrs.get("run_dir"), "trials": len(study.trials),
               "note": "the best cross-validated value is optimistic (chosen among trials); "
                       "judge the tuned config on the external test fold or new data"}
    write_atomic(out / "best.json", json.dumps(summary, indent=2) + "\n")
    return TuneResult(out, metric, direction, dict(best.params), float(best.value),
                      Path(best.user_attrs.get("run_dir", "")), frame)
