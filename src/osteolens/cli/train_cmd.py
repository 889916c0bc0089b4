"""``osteolens train`` (patient-grouped cross-validation) and ``osteolens cv merge``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from osteolens.cli.common import console

cv_app = typer.Typer(help="Cross-validation run directories.", no_args_is_help=True)

_SHOWN = {
    "binary": ("auc", "balanced_accuracy", "sensitivity", "specificity", "f1"),
    "multiclass": ("auc_macro", "accuracy", "balanced_accuracy", "f1_macro"),
    "ordinal": ("auc_macro", "accuracy", "balanced_accuracy", "kappa_quadratic"),
    "regression": ("mae", "rmse", "r2", "within_6", "within_12"),
}


def results_table(metrics: dict[str, Any], title: str):
    """A rich table: one row per fold, then pooled and mean +- sd over folds."""
    from rich.table import Table

    keys = [k for k in _SHOWN[metrics["task"]] if k in metrics["pooled"]]
    table = Table(title=title)
    table.add_column("fold")
    for key in keys:
        table.add_column(key, justify="right")
    table.add_column("n", justify="right")
    for fold, values in metrics["per_fold"].items():
        table.add_row(fold, *(f"{values[k]:.3f}" for k in keys), f"{values['n']:.0f}")
    pooled = metrics["pooled"]
    table.add_row("pooled (out of fold)", *(f"{pooled[k]:.3f}" for k in keys), f"{pooled['n']:.0f}", style="bold")
    spread = metrics.get("fold_std", {})
    table.add_row("mean +- sd of folds", *(f"{metrics['fold_mean'][k]:.3f} +- {spread.get(k, float('nan')):.3f}" for k in keys), "")
    if "external_test" in metrics:
        ext = metrics["external_test"]
        table.add_row("external test (fold ensemble)", *(f"{ext[k]:.3f}" for k in keys), f"{ext['n']:.0f}")
    return table


def _report(result) -> None:
    from osteolens.cli.common import print_added_value, report_failures

    report_failures(result.failures, result.run_dir / "failures.csv" if result.failures else None)
    if result.metrics is not None:
        console.print(results_table(result.metrics, f"{result.run_dir.name}: {result.metrics['task']}"))
        print_added_value(result.metrics.get("added_value"))
        console.print(f"run directory: {result.run_dir}")
        console.print(f"bundle: {result.bundle}")
        if result.report is not None:
            console.print(f"report: {result.report / 'report.html'}")


def train(
    config: Path = typer.Argument(..., help="Training YAML (see docs/training.md)."),
    fold: int = typer.Option(None, "--fold", help="Train only this fold (a job-array task); merge later with 'osteolens cv merge'."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its last finished epoch."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    epochs: int = typer.Option(None, help="Override 'epochs'."),
    model: str = typer.Option(None, "--model", help="Override model.name (timm name or simple_cnn)."),
    weights: Path = typer.Option(None, "--weights", help="Initial weights: imagenet (packaged, offline; osteolens weights list) or a local safetensors / timm checkpoint."),
    pretrained: bool = typer.Option(None, "--pretrained/--no-pretrained", help="Override model.pretrained (hub weights, online)."),
    finetune: str = typer.Option(None, help="Override model.finetune: all, head or last:N."),
    tabular: str = typer.Option(None, "--tabular", help="Override model.tabular: comma-separated covariates, e.g. age,sex."),
    batch_size: int = typer.Option(None, help="Override 'batch_size'."),
    lr: float = typer.Option(None, help="Override 'lr'."),
    input_size: int = typer.Option(None, help="Override 'input_size' (square)."),
    augmentation: str = typer.Option(None, help="Override 'augmentation': none, default, dental, fracture."),
    folds: int = typer.Option(None, help="Override 'folds' (when the manifest has no fold column)."),
    seed: int = typer.Option(None, help="Override 'seed'."),
    num_workers: int = typer.Option(None, help="Override 'num_workers' (data-loader processes)."),
    accelerator: str = typer.Option(None, help="Override 'accelerator': auto, cpu, gpu."),
    precision: str = typer.Option(None, help="Override 'precision': 32-true, bf16-mixed, 16-mixed."),
    devices: int = typer.Option(None, "--devices", help="Override 'devices': training processes on this machine (GPUs, or CPU processes); > 1 is DDP (docs/scaling.md)."),
    strategy: str = typer.Option(None, "--strategy", help="Override 'strategy': auto or ddp."),
    num_nodes: int = typer.Option(None, "--num-nodes", help="Override 'num_nodes': machines of a multi-node DDP run (started by torchrun or Slurm)."),
    name: str = typer.Option(None, help="Run name (folder under 'out'; default: the manifest's stem)."),
    out: Path = typer.Option(None, "--out", "-o", help="Override 'out' (parent folder of run directories)."),
) -> None:
    """Cross-validate an image model with folds grouped by patient.

    Writes runs/<name>/ with the resolved config, environment, per-fold weights and
    histories, out-of-fold predictions, metrics, plots, a model bundle and the evaluation
    report. Early stopping uses a validation split drawn by patient from the training folds.

    Example: osteolens train configs/knee.yaml --epochs 3 --model resnet18

    Example (job array): osteolens train knee.yaml --fold 2 --quiet; then osteolens cv merge runs/knee

    Example (2 processes, DDP): osteolens train knee.yaml --devices 2
    """
    from osteolens.training import load_config, run_training

    overrides = {
        "epochs": epochs, "model.name": model, "model.weights": str(weights) if weights else None,
        "model.pretrained": pretrained, "model.finetune": finetune,
        "model.tabular": [c.strip() for c in tabular.split(",") if c.strip()] if tabular else None, "batch_size": batch_size, "lr": lr,
        "input_size": [input_size, input_size] if input_size else None, "augmentation": augmentation,
        "folds": folds, "seed": seed, "num_workers": num_workers, "accelerator": accelerator,
        "precision": precision, "name": name, "out": str(out) if out else None,
        "devices": devices, "strategy": strategy, "num_nodes": num_nodes,
    }
    cfg = load_config(config, overrides)
    result = run_training(cfg, fold=fold, resume=resume, quiet=quiet, console=console)
    if result.global_rank:  # a DDP process other than rank 0: rank 0 reports
        return
    if fold is not None:
        console.print(f"fold {fold} done in {result.run_dir}; when every fold is done: osteolens cv merge {result.run_dir}")
    _report(result)


@cv_app.command("merge")
def merge(
    run_dir: Path = typer.Argument(..., help="Run directory whose folds were trained with --fold."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display."),
) -> None:
    """Join per-fold outputs into oof_predictions.csv, metrics.json, plots, the bundle and the report.

    Example: osteolens cv merge runs/knee
    """
    from osteolens.training import merge_run

    _report(merge_run(run_dir, quiet=quiet, console=console))


def register(app: typer.Typer) -> None:
    """Attach ``train`` and ``cv merge``."""
    app.command("train")(train)
    app.add_typer(cv_app, name="cv")
