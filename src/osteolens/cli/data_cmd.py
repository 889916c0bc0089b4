"""``osteolens data check`` and ``osteolens data folds``."""

from __future__ import annotations

from pathlib import Path

import typer

from osteolens.cli.common import console

data_app = typer.Typer(help="Build, check and split datasets.", no_args_is_help=True)


@data_app.command("check")
def check(
    source: Path = typer.Argument(..., help="A class-folder root, a label table (CSV / Excel) or an osteolens manifest."),
    out: Path = typer.Option(Path("data_check"), "--out", "-o", help="Folder for manifest.csv (clean, with dup_cluster) and check.json."),
    image_col: str = typer.Option(None, help="Table column with the image path (default 'image')."),
    image_template: str = typer.Option(None, help="Image path built from columns, e.g. 'images/{id}.png'."),
    image_root: Path = typer.Option(None, help="Folder image paths are relative to (default: the table's folder)."),
    patient_col: str = typer.Option(None, help="Table column with the patient id."),
    patient_pattern: str = typer.Option(None, help="Regex whose first group is the patient id in the file name."),
    label_col: str = typer.Option(None, help="Table column with the class label."),
    sex_col: str = typer.Option(None, help="Table column with sex (M/F, male/female or 1/0)."),
    age_col: str = typer.Option(None, help="Table column with age in years."),
    near_hamming: int = typer.Option(6, help="Largest perceptual-hash distance for a near duplicate."),
    near_correlation: float = typer.Option(0.995, help="Smallest thumbnail correlation that confirms a near duplicate."),
    jobs: int = typer.Option(2, help="Threads reading images."),
    strict: bool = typer.Option(False, "--strict", help="Exit with code 1 when any problem is found."),
) -> None:
    """Count, validate and de-duplicate a dataset.

    Lists unreadable files, images without labels, labels without images, exact and near
    duplicates across patients and classes (with the conflicting labels), and writes a
    clean manifest for ``data folds``.

    Example: osteolens data check images/ --out checks/   (images/<class>/<file>)
    """
    from rich.progress import Progress
    from rich.table import Table

    from osteolens.data import check_manifest, open_dataset

    manifest = open_dataset(
        source,
        image_col=image_col, image_template=image_template, image_root=image_root,
        patient_col=patient_col, patient_pattern=patient_pattern, label_col=label_col,
        sex_col=sex_col, age_col=age_col,
    )
    image_dir = source if source.is_dir() else image_root
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("reading images", total=len(manifest))
        report = check_manifest(
            manifest, image_dir=image_dir, near_hamming=near_hamming, near_correlation=near_correlation,
            jobs=jobs, progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    manifest_path, report_path = report.write(out)

    table = Table(title=f"{source}: {report.n_images} images, {report.n_patients} patients")
    table.add_column("class")
    table.add_column("images", justify="right")
    for name, count in sorted(report.class_counts.items()):
        table.add_row(name, str(count))
    console.print(table)
    ipp = report.images_per_patient
    console.print(f"images per patient: min {ipp['min']}, median {ipp['median']:g}, max {ipp['max']}")
    for title, items in (
        ("unreadable", [f"{i}: {r}" for i, r in report.unreadable]),
        ("labels without images (missing files)", report.missing_files),
        ("images without labels", report.unlabelled + report.unlisted_files),
    ):
        if items:
            console.print(f"[yellow]{title}: {len(items)} (dropped)[/]")
            for item in items:
                console.print(f"  {item}", markup=False, highlight=False)
    if report.duplicate_groups:
        dups = Table(title=f"{len(report.duplicate_groups)} duplicate groups ({len(report.label_conflicts)} with conflicting labels)")
        for column in ("kind", "images", "patients", "labels", "conflict"):
            dups.add_column(column, overflow="fold")
        for group in report.duplicate_groups:
            dups.add_row(
                group.kind, "\n".join(group.images), ", ".join(sorted(set(group.patients))),
                ", ".join(sorted(set(group.labels))), "[red]yes[/]" if group.label_conflict else "no",
            )
        console.print(dups)
    console.print(f"clean manifest: {manifest_path}\nreport: {report_path}")
    if strict and report.problem_count:
        console.print(f"[red]{report.problem_count} problem(s) found (--strict)[/]")
        raise typer.Exit(1)


@data_app.command("folds")
def folds(
    manifest_path: Path = typer.Argument(..., help="Manifest CSV (from 'data check' or your own with image, patient_id)."),
    out: Path = typer.Option(None, "--out", "-o", help="Where to write the manifest with folds (default: <manifest>_folds.csv)."),
    n_folds: int = typer.Option(5, "--folds", "-k", help="Number of cross-validation folds."),
    seed: int = typer.Option(0, help="Shuffling seed."),
    stratify: str = typer.Option("label", help="Column to balance across folds (class or numeric target); 'none' for none."),
    test_fraction: float = typer.Option(0.0, help="Share of patients kept whole as an external test set (fold -1)."),
) -> None:
    """Stratified K folds grouped by patient, duplicate clusters merged, optional external test set.

    Example: osteolens data folds checks/manifest.csv --folds 5 --test-fraction 0.2
    """
    from rich.table import Table

    from osteolens.data import Manifest, assign_folds, leaks

    manifest = Manifest.read(manifest_path)
    clusters = None
    if "dup_cluster" in manifest.frame.columns:
        clusters = {img: c for img, c in zip(manifest.frame["image"], manifest.frame["dup_cluster"]) if isinstance(c, str)}
    result = assign_folds(
        manifest, n_folds, seed=seed, stratify=None if stratify == "none" else stratify,
        test_fraction=test_fraction, clusters=clusters,
    )
    target = out or manifest_path.with_name(manifest_path.stem + "_folds.csv")
    result.write(target)
    frame = result.frame
    table = Table(title=f"{n_folds} folds grouped by patient (seed {seed})")
    table.add_column("fold")
    table.add_column("images", justify="right")
    table.add_column("patients", justify="right")
    has_label = "label" in frame.columns
    if has_label:
        table.add_column("classes")
    for k, part in frame.groupby("fold"):
        row = ["test" if k == -1 else str(k), str(len(part)), str(part["patient_id"].nunique())]
        if has_label:
            row.append(", ".join(f"{c}:{n}" for c, n in sorted(part["label"].value_counts().items())))
        table.add_row(*row)
    console.print(table)
    console.print(f"patient groups in more than one fold: {len(leaks(result))}\nwritten: {target}")


def register(app: typer.Typer) -> None:
    """Attach the ``data`` command group."""
    app.add_typer(data_app, name="data")
