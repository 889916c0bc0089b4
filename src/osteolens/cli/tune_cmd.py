"""``osteolens tune``: Optuna search over a training config's hyper-parameters."""

from __future__ import annotations

from pathlib import Path

import typer

from osteolens.cli.common import console


def tune(
    config: Path = typer.Argument(..., help="Training YAML (see docs/training.md)."),
    space: Path = typer.Option(..., "--space", "-s", help="Search space YAML: key: {low, high[, log, step]} or {choices: [...]}."),
    trials: int = typer.Option(20, "--trials", "-n", min=1, help="Trials the study holds in the end, shared by every worker (a study already holding some is continued)."),
    out: Path = typer.Option(Path("tuning"), "--out", "-o", help="Study folder: study.db, trials/, trials.csv, best_config.yaml."),
    storage: str = typer.Option(None, "--storage", help="Optuna storage URL shared by workers, e.g. postgresql://USER:PASSWORD@HOST:5432/DB (default: sqlite:///OUT/study.db)."),
    study: str = typer.Option(None, "--study", help="Study name in the storage (default: 'osteolens' in OUT/study.db, else the name of --out)."),
    heartbeat: int = typer.Option(60, "--heartbeat", min=1, help="Seconds between a running trial's heartbeats; a trial silent for twice as long (its worker died) is failed and queued again."),
    metric: str = typer.Option(None, help="Pooled out-of-fold metric to optimise (default: auc, auc_macro, kappa_quadratic or mae by task)."),
    epochs: int = typer.Option(None, help="Override 'epochs' in every trial."),
    seed: int = typer.Option(0, help="Seed of Optuna's TPE sampler."),
    quiet: bool = typer.Option(True, "--quiet/--progress", help="Hide (default) or show each trial's training progress."),
) -> None:
    """Tune hyper-parameters: each trial is a full patient-grouped cross-validation.

    The objective is the trial's pooled out-of-fold metric; the external test fold is never
    seen. The best value is optimistic (chosen among trials): train best_config.yaml and judge
    it on the external test fold or new data.

    Several workers (processes, machines) given the same --storage and --study share one
    search: no trial runs twice and --trials is the study's total.

    Example: osteolens tune configs/boneage.yaml --space configs/boneage_space.yaml --trials 30 --epochs 10
    Shared: osteolens tune configs/boneage.yaml --space configs/boneage_space.yaml --trials 30 --storage postgresql://osteo@db:5432/optuna --study boneage
    """
    from rich.table import Table

    from osteolens.training import load_config
    from osteolens.training.tune import load_space
    from osteolens.training.tune import tune as run_tune

    cfg = load_config(config, {"epochs": epochs})
    result = run_tune(cfg, load_space(space), trials, out, metric=metric, seed=seed, storage=storage,
                      study_name=study, heartbeat=heartbeat, quiet=quiet, console=console)
    table = Table(title=f"study '{result.study}' ({result.storage}): {len(result.trials)} trial(s), "
                        f"{result.metric} ({result.direction})")
    for column in result.trials.columns:
        table.add_column(str(column))
    for row in result.trials.itertuples(index=False):
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)
    if result.best_value is not None:
        console.print(f"best: {result.metric} {result.best_value:.4f} with {result.best_values} ({result.best_run})")
    if result.pending:
        console.print(f"trial(s) {', '.join(map(str, result.pending))} still running in other workers: "
                      "the last worker to finish writes trials.csv, best.json and best_config.yaml.")
    else:
        console.print(f"best config: {result.out / 'best_config.yaml'} (train it: osteolens train {result.out / 'best_config.yaml'})")


def register(app: typer.Typer) -> None:
    """Attach ``tune``."""
    app.command("tune")(tune)
