"""``osteolens weights``: the packaged ImageNet weights, and checkpoint import to timm names."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from osteolens.cli.common import console

weights_app = typer.Typer(help="Pretrained weights offline: packaged ImageNet weights, checkpoint import.",
                          no_args_is_help=True)


@weights_app.command("list")
def list_weights(
    as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON on stdout."),
) -> None:
    """List the ImageNet weights usable offline with `weights: imagenet` (or --weights imagenet).

    Each is converted to timm names on first use and cached ($OSTEOLENS_CACHE, else
    ~/.cache/osteolens/weights); the sha256 shown is the cached file's.

    Example: osteolens weights list --json
    """
    from rich.table import Table

    from osteolens.models.weights import list_packaged_weights, weights_cache_dir

    rows = list_packaged_weights()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"packaged ImageNet weights (cache: {weights_cache_dir()})")
    table.add_column("name", no_wrap=True)
    table.add_column("package", overflow="fold")
    table.add_column("licence", no_wrap=True)
    table.add_column("exact")
    table.add_column("sha256", overflow="fold")
    for row in rows:
        package = f"{row['package']} {row['version']}" if row["installed"] else f"{row['package']} (not installed)"
        table.add_row(row["name"], package, row["licence"], "yes" if row["exact"] else "close",
                      row["sha256"] or "not converted yet")
    console.print(table)


@weights_app.command("import")
def import_cmd(
    file: Path = typer.Argument(..., help="Checkpoint: .safetensors, or a .pth/.pt/.bin state dict (timm or torchvision)."),
    model: str = typer.Option(..., "--model", "-m", help="timm model name the tensors belong to (resnet18, ...)."),
    out: Path = typer.Option(..., "--out", "-o", help="The .safetensors file to write (sha256 in OUT with .json)."),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="Write even if some model tensors are absent (they stay random)."),
) -> None:
    """Convert a checkpoint into a safetensors file in timm names, usable as --weights OUT.

    Keys are matched by name, then by timm's converter for the architecture, then by
    position and shape; every tensor that does not map is printed.

    Example: osteolens weights import resnet18-f37072fd.pth --model resnet18 --out resnet18.safetensors
    """
    from osteolens.models.weights import import_weights

    report = import_weights(file, model, out, allow_missing=allow_missing)
    for label, names in (("missing (kept random)", report.missing), ("unused", report.unused),
                         ("shape conflict", report.mismatched)):
        for name in names:
            console.print(f"  {label}: {name}", highlight=False, markup=False)
    console.print(f"{report.mapped} tensors mapped by {report.method} -> {report.out}", highlight=False)
    console.print(f"sha256 {report.sha256}", highlight=False)


def register(app: typer.Typer) -> None:
    """Attach the ``weights`` command group."""
    app.add_typer(weights_app, name="weights")
