"""``osteolens features extract`` and ``osteolens features list``."""

from __future__ import annotations

from pathlib import Path

import typer

from osteolens.cli.common import console, report_failures

features_app = typer.Typer(help="Feature tables: radiomics (pyradiomics, wavelet, Fourier, variogram ISV, LBP, fractal) and pretrained CNN embeddings.", no_args_is_help=True)


@features_app.command("extract")
def extract(
    manifest: Path = typer.Argument(..., help="Manifest (CSV / Parquet) with image, patient_id and optionally mask columns."),
    out: Path = typer.Option(Path("features.parquet"), "--out", "-o", help="Feature table: .parquet (default), .csv or .xlsx."),
    families: str = typer.Option("radiomics,wavelet,fourier,variogram", help="Comma-separated family names (see 'features list')."),
    family_params: str = typer.Option(None, help='Parameters per family as JSON, e.g. \'{"cnn": {"input_size": 384, "hflip": true}}\'.'),
    config: Path = typer.Option(None, help="YAML/JSON with 'families: [{name, params}]' (and roi, equalise, max_size); overrides --families."),
    roi: str = typer.Option("auto", help="mask | rectangle (largest rectangle inside the mask, the seed's) | box (box_x, box_y, box_width, box_height columns) | none | auto."),
    equalise: bool = typer.Option(True, "--equalise/--no-equalise", help="Histogram-equalise each ROI first (the seed did)."),
    max_size: int = typer.Option(None, help="Downscale each ROI so its longer side is at most this many pixels."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Worker processes of a local Dask cluster (reading, ROI, radiomics families); the cnn family's network runs in the main process on torch threads."),
    scheduler: str = typer.Option(None, "--scheduler", help="Dask scheduler address (tcp://HOST:8786): run the per-image work on its workers (docs/scaling.md); overrides --jobs."),
    csv: bool = typer.Option(False, "--csv", help="Also write a CSV copy."),
    excel: bool = typer.Option(False, "--excel", help="Also write an Excel copy (as the seed did)."),
) -> None:
    """Extract radiomics or CNN-embedding features for every image of a manifest.

    Writes the table (manifest columns, then one column per feature), a JSON sidecar with
    every parameter and package version, and a failure list for images that could not be
    processed (the others are kept).

    Example: osteolens features extract labels.csv --families radiomics,fourier,variogram --roi rectangle --jobs 2 --out features.parquet --csv

    Example: osteolens features extract manifest.csv --families cnn --family-params '{"cnn": {"input_size": 384}}' --out cnn.parquet

    Example (a Dask cluster): osteolens features extract /shared/labels.csv --scheduler tcp://head:8786 --out features.parquet
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from osteolens.data.manifest import Manifest
    from osteolens.features import ExtractionConfig, extract_features

    settings: dict = {"families": [{"name": n.strip(), "params": {}} for n in families.split(",") if n.strip()], "roi": roi, "equalise": equalise, "max_size": max_size}
    if config is not None:
        settings.update(_read_config(config))
    if family_params:
        settings["families"] = _with_params(settings["families"], family_params)
    cfg = ExtractionConfig(**settings)
    table = Manifest.read(manifest)
    columns = (TextColumn("extracting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("extract", total=len(table))
        result = extract_features(table, cfg, jobs=jobs, scheduler=scheduler, on_progress=lambda done, total: bar.update(task, completed=done, total=total))
    # The absolute path, so that 'classic cv' finds the manifest (for its baselines) from anywhere.
    written = result.write(out, csv=csv, excel=excel, manifest_source=str(manifest.resolve()))
    console.print(
        f"[green]{len(result.table)}[/] of {len(table)} images, {len(result.feature_columns)} features "
        f"({', '.join(f['name'] for f in cfg.families)}; ROI: {result.roi})"
    )
    for path in written:
        console.print(f"  wrote {path}", highlight=False)
    report_failures(result.failures)


def _with_params(families: list, text: str) -> list:
    """``families`` with ``{name: params}`` from the JSON ``text`` merged into their params."""
    import json

    from osteolens.errors import ConfigError

    try:
        extra = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError("--family-params", f"not valid JSON ({exc}).", 'write e.g. \'{"cnn": {"input_size": 384}}\'.') from None
    names = [f if isinstance(f, str) else f.get("name") for f in families]
    if not isinstance(extra, dict) or not all(isinstance(v, dict) for v in extra.values()):
        raise ConfigError("--family-params", "expected a JSON object {family: {parameter: value}}.", 'write e.g. \'{"cnn": {"input_size": 384}}\'.')
    unknown = sorted(set(extra) - set(names))
    if unknown:
        raise ConfigError("--family-params", f"family(ies) {unknown} are not among the extracted families {names}.", "add them to --families or fix the name.")
    out = []
    for family, name in zip(families, names, strict=True):
        spec = {"name": family, "params": {}} if isinstance(family, str) else {"name": name, "params": dict(family.get("params") or {})}
        spec["params"].update(extra.get(name, {}))
        out.append(spec)
    return out


def _read_config(path: Path) -> dict:
    import json

    import yaml

    from osteolens.errors import ConfigError

    if not path.is_file():
        raise ConfigError(path, "config file not found.", "check the path.")
    data = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    allowed = {"families", "roi", "equalise", "max_size"}
    if not isinstance(data, dict) or set(data) - allowed:
        raise ConfigError(path, f"expected a mapping with keys among {sorted(allowed)}.", "e.g. 'families: [{name: radiomics, params: {bin_width: 25}}]'.")
    return data


@features_app.command("list")
def list_families() -> None:
    """List the feature families and their parameters (defaults).

    Example: osteolens features list
    """
    from rich.table import Table

    from osteolens.features import build_feature_family, feature_family_names

    table = Table(title="feature families")
    table.add_column("name")
    table.add_column("parameters (defaults)", overflow="fold")
    table.add_column("summary", overflow="fold")
    for name in feature_family_names():
        family = build_feature_family(name)
        summary = (type(family).__doc__ or "").strip().splitlines()[0]
        table.add_row(name, ", ".join(f"{k}={v}" for k, v in family.params.items()), summary)
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the ``features`` command group."""
    app.add_typer(features_app, name="features")
