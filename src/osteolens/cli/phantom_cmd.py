"""``osteolens phantom``: write the synthetic biplanar vertebral cohort."""

from __future__ import annotations

from pathlib import Path

import typer

from osteolens.cli.common import console


def phantom(
    out: Path = typer.Option(Path("phantom"), "--out", "-o", help="Output folder (dicom/, png/, masks/, labels.csv)."),
    specimens: int = typer.Option(100, "--specimens", "-n", help="Specimens; each gives L1-L4 x AP + lateral = 8 images."),
    seed: int = typer.Option(0, "--seed", help="Cohort seed: the same seed gives the same bytes."),
    size: int = typer.Option(160, "--size", help="Image side in pixels (pixel spacing = 64 mm / size)."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Worker processes."),
    formats: str = typer.Option("dicom,png", "--format", help="Comma-separated output formats: dicom, png or both."),
) -> None:
    """Generate synthetic AP + lateral radiographs of vertebrae L1-L4 with known BMD and geometry.

    Writes dicom/, png/, masks/ and labels.csv (an osteolens manifest with the WHO class, BMD,
    T-score, Genant grade and true heights per image). Same seed, same bytes.

    Example: osteolens phantom --specimens 100 --out phantom --seed 0 --jobs 2
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from osteolens.phantom import generate_cohort

    with Progress(
        TextColumn("simulating specimens"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    ) as bar:
        task = bar.add_task("phantom", total=specimens)
        manifest = generate_cohort(
            out, specimens=specimens, seed=seed, size=size, formats=formats, jobs=jobs,
            progress=lambda done: bar.update(task, completed=done),
        )
    frame = manifest.frame
    table = Table(title=f"{out}: {len(frame)} images of {frame['patient_id'].nunique()} specimens")
    for column in ("class", "vertebrae", "BMD mg/cm3 (median)", "fractured"):
        table.add_column(column, justify="left" if column == "class" else "right")
    vertebrae = frame[frame["view"] == "AP"]
    for name in ("normal", "osteopenia", "osteoporosis"):
        group = vertebrae[vertebrae["label"] == name]
        bmd = f"{group['bmd'].median():.0f}" if len(group) else "-"
        table.add_row(name, str(len(group)), bmd, str(int((group["fracture_grade"] > 0).sum())))
    console.print(table)
    console.print(f"labels: {out / 'labels.csv'}")


def register(app: typer.Typer) -> None:
    """Attach the ``phantom`` command."""
    app.command("phantom")(phantom)
