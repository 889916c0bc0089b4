"""``osteolens explain RUN_DIR``: Grad-CAM figure grids of a finished training run."""

from __future__ import annotations

from pathlib import Path

import typer

from osteolens.cli.common import console, report_failures


def explain(
    run_dir: Path = typer.Argument(..., help="A finished run directory (bundle/ and oof_predictions.csv)."),
    per_class: int = typer.Option(None, "--per-class", help="N random images of each true class (dental seed: 20)."),
    best_worst: int = typer.Option(None, "--best-worst", help="The N best and N worst predictions (bone-age seed: 5)."),
    out: Path = typer.Option(None, "--out", "-o", help="Output folder (default RUN_DIR/explain)."),
    method: str = typer.Option("gradcam", help="gradcam or gradcam++."),
    columns: int = typer.Option(5, help="Panels per row."),
    seed: int = typer.Option(0, help="Seed of the random per-class choice."),
) -> None:
    """Draw Grad-CAM overlays of out-of-fold predictions in figure grids (PNG).

    Each image is explained by the fold model that never trained on it, titled with its
    out-of-fold prediction.

    Example: osteolens explain runs/knee --per-class 20

    Example: osteolens explain runs/boneage --best-worst 5 --method gradcam++
    """
    from osteolens.cli.predict_cmd import inference_process

    inference_process(None)
    import pandas as pd

    from osteolens.errors import ConfigError
    from osteolens.explain.grid import explain_rows, figure_grid, run_paths, select_best_worst, select_per_class
    from osteolens.inference import Predictor

    if (per_class is None) == (best_worst is None):
        raise ConfigError("explain", "give exactly one of --per-class N or --best-worst N.",
                          "e.g. --per-class 20 (dental seed) or --best-worst 5 (bone-age seed).")
    count = per_class if per_class is not None else best_worst
    if count < 1:
        raise ConfigError("explain", f"N must be at least 1, got {count}.", "e.g. --per-class 20.")
    bundle, predictions, resolve = run_paths(run_dir)
    predictor = Predictor(bundle, backend="torch")
    frame = pd.read_csv(predictions)
    out = out or run_dir / "explain"
    task, labels = predictor.bundle.task, predictor.bundle.labels
    if per_class is not None:
        if task == "regression":
            raise ConfigError("--per-class", "a regression run has no classes.", "use --best-worst N.")
        groups = {f"per_class_{label}": rows for label, rows in
                  select_per_class(frame, per_class, seed).groupby("y_true", sort=True)}
    else:
        best, worst = select_best_worst(frame, best_worst, task, labels)
        groups = {"best": best, "worst": worst}
    failures: list[tuple[str, str]] = []
    for name, rows in groups.items():
        panels, failed = explain_rows(predictor, rows, resolve, method=method)
        failures += failed
        if panels:
            title = f"{run_dir.name}: {name.replace('_', ' ')} ({'Grad-CAM++' if method == 'gradcam++' else 'Grad-CAM'}, out-of-fold)"
            path = figure_grid(panels, out / f"{name}.png", title, columns=columns)
            console.print(f"{path}: {len(panels)} image(s)")
    if report_failures(failures, out / "failures.csv" if failures else None):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``explain`` to the main app."""
    app.command("explain")(explain)
