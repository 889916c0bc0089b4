"""Hyper-parameter search with Optuna over cross-validated training runs.

Each trial is one ``osteolens train`` run (every fold) with the trial's values written into
the training config; its objective is the run's pooled out-of-fold metric (AUC for binary,
macro AUC for multiclass, quadratic kappa for ordinal, MAE for regression, or any metric
of ``metrics.json``'s ``pooled`` section). Optuna's TPE sampler (seeded) proposes the
values. The study lives in an Optuna RDB storage: by default ``<out>/study.db`` (SQLite,
one machine), or any database URL Optuna accepts, e.g. PostgreSQL shared by workers on
many machines. A search stopped half-way continues where it was when run again.

Workers. Several processes pointed at the same storage and study share one search:

- the trial budget ``trials`` is global. A worker starts a trial only while the study holds
  fewer than ``trials`` trials, counting finished (complete, pruned, failed) and running
  ones; a trial abandoned by a dead worker does not count, its retry does. The count and
  the start of the trial happen under one lock (a PostgreSQL advisory lock, or a file lock
  beside a SQLite file), so workers never overshoot: 2 workers with ``trials=6`` end with
  exactly 6 trials;
- each running trial writes a heartbeat every ``heartbeat`` seconds. A trial whose worker
  has been silent for twice that long is marked failed when another worker starts a trial,
  and is queued again with the same values (at most twice); the other workers go on;
- the worker that ends with no trial left running anywhere writes ``trials.csv``,
  ``best.json`` and ``best_config.yaml`` from the study (atomically); a worker that ends
  while others still run leaves them to the last one.

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

import hashlib
import json
import math
import re
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml
from rich.console import Console

from osteolens.errors import ConfigError
from osteolens.io._files import write_atomic
from osteolens.training.config import TrainConfig

if TYPE_CHECKING:
    import optuna

#: The metric each task is tuned on by default, and whether higher is better.
DEFAULT_METRIC = {"binary": ("auc", "maximize"), "multiclass": ("auc_macro", "maximize"),
                  "ordinal": ("kappa_quadratic", "maximize"), "regression": ("mae", "minimize")}
_LOWER_IS_BETTER = {"mae", "rmse", "brier", "loss"}
#: Seconds between two heartbeats of a running trial; a trial silent for twice as long is failed.
DEFAULT_HEARTBEAT = 60
#: Times a trial abandoned by a dead worker is queued again with the same values.
MAX_RETRIES = 2


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


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``, fit to print.

    Example:
        >>> redact("postgresql://osteo:s3cret@db.example:5432/studies")
        'postgresql://osteo:***@db.example:5432/studies'
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # not a URL: hide anything between ':' and '@' all the same
        return re.sub(r":[^:@/]*@", ":***@", url)


def default_storage(out: str | Path) -> str:
    """The one-machine storage of a study folder: ``sqlite:///<out>/study.db``."""
    return f"sqlite:///{Path(out) / 'study.db'}"


def _database_url(url: str) -> Any:
    """``url`` parsed by SQLAlchemy; a bare ``postgresql://`` uses psycopg2 (installed with
    osteolens) rather than SQLAlchemy 2.1's default driver, psycopg 3."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError("--storage", f"'{redact(url)}' is not a database URL.",
                          "give e.g. postgresql://USER:PASSWORD@HOST:5432/DATABASE or sqlite:///study.db.") from exc
    return parsed.set(drivername="postgresql+psycopg2") if parsed.drivername == "postgresql" else parsed


class _StudyLock:
    """Serialises "count the study's trials, then start one" among every worker of a study.

    PostgreSQL: a session advisory lock keyed by the study name, held by its own connection
    (the server drops it if the worker dies). SQLite: a file lock beside the database file
    (one machine). Other databases: no lock, so workers that start trials in the same
    instant may overshoot the budget by one trial each.
    """

    def __init__(self, url: Any, study: str) -> None:
        self._held = False
        self._connection = self._file_lock = None
        if url.get_backend_name() == "postgresql":
            import sqlalchemy

            engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool, isolation_level="AUTOCOMMIT")
            self._connection = engine.connect()
            self._key = int.from_bytes(hashlib.sha256(f"osteolens tune {study}".encode()).digest()[:8], "big", signed=True)
        elif url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            from filelock import FileLock

            self._file_lock = FileLock(f"{url.database}.lock")

    def acquire(self) -> None:
        """Wait for the lock."""
        if self._connection is not None:
            import sqlalchemy

            self._connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": self._key})
        elif self._file_lock is not None:
            self._file_lock.acquire()
        self._held = True

    def release(self) -> None:
        """Let the next worker in; does nothing when not held."""
        if not self._held:
            return
        self._held = False
        if self._connection is not None:
            import sqlalchemy

            self._connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
        elif self._file_lock is not None:
            self._file_lock.release()

    def close(self) -> None:
        """Release, and close the lock's connection."""
        self.release()
        if self._connection is not None:
            self._connection.close()


def _open(url: Any, shown: str, study_name: str, heartbeat: int) -> tuple[_StudyLock, optuna.storages.RDBStorage]:
    """The study's lock and its Optuna storage, heartbeat on; errors name the URL as ``shown``
    (without its password)."""
    import optuna
    import sqlalchemy.exc

    try:
        lock = _StudyLock(url, study_name)
        lock.acquire()  # the first worker creates the tables; two at once would collide
        try:
            with warnings.catch_warnings():  # the heartbeat and the retry callback are "experimental"
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(
                    url.render_as_string(hide_password=False), heartbeat_interval=heartbeat,
                    grace_period=2 * heartbeat,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES))
        finally:
            lock.release()
    except ImportError as exc:
        raise ConfigError("--storage", f"no database driver for '{shown}' ({exc.__cause__ or exc}).",
                          "install it (PostgreSQL: pip install psycopg2-binary; MySQL: pip install pymysql).") from exc
    except sqlalchemy.exc.NoSuchModuleError as exc:
        raise ConfigError("--storage", f"'{shown}' names an unknown database kind '{url.drivername}'.",
                          "use postgresql://USER:PASSWORD@HOST:5432/DATABASE or sqlite:///FILE.") from exc
    except sqlalchemy.exc.OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
        raise ConfigError("--storage", f"cannot reach the study database '{shown}' ({reason}).",
                          "start the server (docs/scaling.md), check host, port, user, password and that the "
                          "database exists (createdb), or drop --storage to keep the study in <out>/study.db.") from exc
    return lock, storage


def _budget_left(trials: list[optuna.trial.FrozenTrial], budget: int) -> bool:
    """Whether a worker should start another trial: a retried trial is waiting, or the study's
    ``trials`` are fewer than ``budget``, counting all but those abandoned by a dead worker."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        abandoned = {n for t in trials for n in RetryHeartbeatStaleTrialCallback.retry_history(t)}
    if any(t.state == optuna.trial.TrialState.WAITING for t in trials):
        return True
    return sum(t.number not in abandoned for t in trials) < budget


@dataclass
class TuneResult:
    """The study as this worker left it: its folder, name, storage (no password), the best
    trial so far (None before any trial completed), every trial, and the trials still running
    in other workers (when there are some, this worker wrote no summary files)."""

    out: Path
    metric: str
    direction: str
    best_values: dict[str, Any] | None
    best_value: float | None
    best_run: Path | None
    trials: pd.DataFrame
    study: str
    storage: str
    pending: tuple[int, ...]


def tune(
    config: TrainConfig,
    space: list[Parameter],
    trials: int,
    out: str | Path,
    *,
    metric: str | None = None,
    seed: int = 0,
    storage: str | None = None,
    study_name: str | None = None,
    heartbeat: int = DEFAULT_HEARTBEAT,
    quiet: bool = True,
    console: Console | None = None,
) -> TuneResult:
    """Work on the study until it holds ``trials`` trials (a global budget, see the module
    docstring): create it, or continue it, alone or beside other workers.

    Writes ``out/trials/trial<k>/`` (the run directory of each trial this worker ran) and,
    when no trial is left running, ``out/trials.csv``, ``out/best_config.yaml`` (the config
    with the best values, ready for ``osteolens train``) and ``out/best.json``.

    Args:
        storage: an Optuna / SQLAlchemy database URL; default ``sqlite:///<out>/study.db``.
        study_name: default ``osteolens`` in the default storage, else the name of ``out``.
        heartbeat: seconds between a running trial's heartbeats.
        seed: the TPE sampler's seed; trial k's sampler is seeded with ``seed + k`` (trial
            numbers are unique in a study, so workers never draw the same values).

    Raises:
        ConfigError: an unknown metric, a space key the config does not have, a study that
            optimises another metric, an unreachable storage, no trial finished.
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
    url = _database_url(storage or default_storage(out))
    shown = redact(storage or default_storage(out))
    name = study_name or ("osteolens" if storage is None else out.resolve().name)
    lock, rdb = _open(url, shown, name, heartbeat)

    def objective(trial: optuna.Trial) -> float:
        lock.release()  # the trial exists (running): the next worker may count and start one
        values = {p.key: p.suggest(trial) for p in space}
        trial.set_user_attr("host", socket.gethostname())
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

    try:
        lock.acquire()
        try:
            study = optuna.create_study(study_name=name, storage=rdb, load_if_exists=True, direction=direction)
            known = study.user_attrs.get("metric", metric)
            if known != metric:
                raise ConfigError("--metric", f"study '{name}' in {shown} optimises '{known}', not "
                                  f"'{metric}'.", f"use --metric {known}, or another --study.")
            study.set_user_attr("metric", metric)
        finally:
            lock.release()
        # A trial whose training fails in torch (e.g. out of memory for a large batch) is recorded
        # as failed and the search goes on; an osteolens error (a bad metric name, a value the
        # config refuses) stops it at once, since every later trial would fail the same way.
        while True:
            lock.acquire()  # released by the objective once its trial is running, or below
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    optuna.storages.fail_stale_trials(study)  # before counting: a dead worker's trial is retried
                existing = study.get_trials(deepcopy=False)  # read once under the lock
                if not _budget_left(existing, trials):
                    break
                # Seeded by the number of the trial about to start, so that workers do not draw the
                # same values and a continued study does not replay its first draws.
                study.sampler = optuna.samplers.TPESampler(seed=seed + len(existing), constant_liar=True)
                study.optimize(objective, n_trials=1, catch=(RuntimeError,))
            finally:
                lock.release()
    finally:
        lock.close()
    return _summarise(study, config, out, metric, direction, shown)


def _summarise(study: optuna.Study, config: TrainConfig, out: Path, metric: str, direction: str,
               shown_url: str) -> TuneResult:
    """This worker's TuneResult; with no trial left running, also the summary files."""
    import optuna

    State = optuna.trial.TrialState
    pending = tuple(t.number for t in study.get_trials(deepcopy=False, states=(State.RUNNING, State.WAITING)))
    done = study.get_trials(deepcopy=False, states=(State.COMPLETE,))
    if not done and not pending:
        raise ConfigError(out, "no trial finished.", "see the errors above; check the config with 'osteolens train'.")
    frame = study.trials_dataframe(attrs=("number", "value", "params", "state", "user_attrs", "duration"))
    frame = frame.rename(columns=lambda c: c.replace("params_", "").replace("user_attrs_", "")).rename(
        columns={"value": metric})
    result = TuneResult(out, metric, direction, None, None, None, frame, study.study_name, shown_url, pending)
    if not done:
        return result
    best = study.best_trial
    result.best_values, result.best_value = dict(best.params), float(best.value)
    result.best_run = Path(best.user_attrs["run_dir"])
    if pending:
        return result
    write_atomic(out / "trials.csv", frame.to_csv(index=False))
    best_config = with_values(config, best.params)
    write_atomic(out / "best_config.yaml", yaml.safe_dump(best_config.to_dict(), sort_keys=False))
    summary = {"metric": metric, "direction": direction, "best_value": best.value, "best_trial": best.number,
               "best_values": best.params, "best_run": best.user_attrs.get("run_dir"),
               "best_host": best.user_attrs.get("host"), "trials": len(frame), "study": study.study_name,
               "storage": shown_url,
               "note": "the best cross-validated value is optimistic (chosen among trials); "
                       "judge the tuned config on the external test fold or new data"}
    write_atomic(out / "best.json", json.dumps(summary, indent=2) + "\n")
    return result
