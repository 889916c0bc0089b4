"""``osteolens demo``: the main job on the built-in synthetic phantom cohort."""

from __future__ import annotations

from pathlib import Path

import typer

from osteolens.cli.common import console


def demo(
    out: Path = typer.Option(Path("demo_output"), "--out", "-o", help="Output folder."),
    specimens: int = typer.Option(60, help="Phantom specimens (8 images each)."),
    seed: int = typer.Option(0, help="Seed for the cohort, folds and training."),
    folds: int = typer.Option(5, help="Cross-validation folds."),
) -> None:
    """Generate the phantom cohort, check it, make patient-grouped folds, cross-validate models.

    Example: osteolens demo --out demo_output --specimens 60
    """
    from rich.table import Table

    from osteolens.demo import run_demo

    summary = run_demo(out, specimens=specimens, seed=seed, folds=folds, console=console)
    table = Table(title="osteolens demo")
    table.add_column("step")
    table.add_column("result")
    table.add_row("cohort", f"{summary.n_images} images, classes {summary.class_counts}")
    table.add_row("data check", f"{summary.duplicate_groups} duplicate groups; {summary.check_report}")
    table.add_row("folds", str(summary.folds_manifest))
    for name, run in summary.runs.items():
        table.add_row(name, ", ".join(f"{k} {v}" for k, v in run.items()))
    if summary.prediction:
        p = summary.prediction
        table.add_row("prediction", f"{Path(p['image']).name}: {p['label']} (p {p['probability']:.3f}, truth "
                                    f"{p['truth']}); {p['json']}, Grad-CAM overlay {p['overlay']}")
    console.print(table)


def register(app: typer.Typer) -> None:
    """Attach the ``demo`` command."""
    app.command("demo")(demo)
