"""Small helpers every command module shares: consoles, error reporting, failure lists."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

import typer
from rich.console import Console

console = Console(stderr=True)

#: Files a folder is searched for (DICOM often has no extension).
IMAGE_SUFFIXES = {".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ""}


def image_files(paths: Iterable[Path]) -> list[Path]:
    """Files as given, folders expanded to their radiographs (recursive, sorted, hidden files skipped)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
                            and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(path)
    return files


def run_app(app: typer.Typer) -> None:
    """Run a typer app; an ``OsteolensError`` becomes ``error: <message>`` and exit code 2."""
    from osteolens.errors import OsteolensError

    try:
        app(standalone_mode=False)
    except OsteolensError as exc:
        from rich.markup import escape

        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)  # a message may hold [brackets]
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        console.print("aborted")
        sys.exit(1)
    except Exception as exc:  # click usage errors carry their own exit code
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


def report_failures(failures: Iterable[tuple[str, str]], out: Path | None = None) -> int:
    """Print the files a batch could not process (path, reason) and optionally save them as CSV.

    Returns the number of failures.
    """
    rows = list(failures)
    if not rows:
        return 0
    console.print(f"[yellow]{len(rows)} item(s) failed:[/]")
    for path, reason in rows:
        console.print(f"  {path}: {reason}", highlight=False, markup=False)
    if out is not None:
        import csv

        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "reason"])
            writer.writerows(rows)
        console.print(f"failure list written to {out}")
    return len(rows)


def print_added_value(added: dict | None) -> None:
    """Print what the image adds over each baseline (``EvaluationResult.added_value``), one sentence each."""
    added = added or {}
    for baseline in added.get("baselines", []):
        console.print(f"[bold]what the image adds:[/] {baseline['sentence']}", highlight=False)
    if added.get("verdict") == "not measured":
        console.print(f"what the image adds: not measured ({added.get('reason')}).", highlight=False)
