"""``osteolens preprocess``: run a transform pipeline over every image of a manifest."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from osteolens.cli.common import console, report_failures

if TYPE_CHECKING:
    from osteolens.data.manifest import Manifest
    from osteolens.transforms import Pipeline, PreprocessCache


@dataclass
class PreprocessResult:
    """What :func:`preprocess_manifest` produced."""

    manifest: Manifest
    manifest_path: Path
    failures: list[tuple[str, str]] = field(default_factory=list)
    cache_hits: int = 0


def _output_name(value: str, sha256: str, suffix: str, taken: set[Path]) -> Path:
    """Relative output path: the manifest's relative path with a new suffix, or stem + hash for
    absolute / parent-relative paths and for names already taken (``a.png`` and ``a.jpg``),
    so two inputs never share an output."""
    path = Path(value)
    outside = path.is_absolute() or ".." in path.parts
    name = Path(path.name if outside else path).with_suffix(suffix)
    if outside or name in taken:
        name = name.with_name(f"{path.stem}_{sha256[:8]}{suffix}")
    taken.add(name)
    return name


def preprocess_manifest(
    manifest: Manifest,
    pipeline: Pipeline,
    out: Path,
    *,
    fmt: str = "png",
    cache: PreprocessCache | None = None,
    progress: Callable[[], object] | None = None,
) -> PreprocessResult:
    """Run ``pipeline`` on every image of ``manifest``; write ``OUT/images/...``, ``OUT/manifest.csv``
    (the input rows, ``image`` pointing at the outputs, the original in ``source_image``) and
    ``OUT/pipeline.json``. Bad files are recorded as (path, reason), never raised.
    """
    from osteolens.data.manifest import Manifest, file_sha256
    from osteolens.errors import OsteolensError
    from osteolens.io import read_radiograph, write_png

    out = Path(out)
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    pipeline.to_json(out / "pipeline.json")
    suffix = ".png" if fmt == "png" else ".npy"
    failures: list[tuple[str, str]] = []
    keep: list[int] = []
    outputs: list[str] = []
    hits = 0
    taken: set[Path] = set()
    for index, row in enumerate(manifest.frame.to_dict("records")):
        path = manifest.resolve(row["image"])
        try:
            digest = file_sha256(path)
            computed = []

            def compute(path: Path = path) -> object:
                computed.append(True)
                return pipeline(read_radiograph(path).pixels)

            pixels = cache.get_or_compute(digest, pipeline, compute) if cache is not None else compute()
            hits += not computed
            target = images_dir / _output_name(row["image"], digest, suffix, taken)
            target.parent.mkdir(parents=True, exist_ok=True)
            if fmt == "png":
                write_png(pixels, target, bits=16)
            else:
                import numpy as np

                np.save(target, np.asarray(pixels, dtype=np.float32), allow_pickle=False)
        except OsteolensError as exc:
            failures.append((str(path), str(exc)))
        except Exception as exc:  # a batch never dies on one bad file: record it and go on
            failures.append((str(path), f"{type(exc).__name__}: {exc}"))
        else:
            keep.append(index)
            outputs.append(str(target.resolve()))
        if progress is not None:
            progress()
    frame = manifest.frame.iloc[keep].copy()
    frame["source_image"] = [str(manifest.resolve(v).resolve()) for v in frame["image"]]
    frame["image"] = outputs
    if "mask" in frame.columns:  # masks stay where they are; make them findable from OUT
        frame["mask"] = [str(manifest.resolve(v).resolve()) if isinstance(v, str) and v else v for v in frame["mask"]]
    if "sha256" in frame.columns:
        frame = frame.drop(columns="sha256")
    result = Manifest(frame, out, manifest.source)
    manifest_path = result.write(out / "manifest.csv")
    return PreprocessResult(result, manifest_path, failures, hits)


def preprocess(
    manifest: Path = typer.Argument(..., help="Manifest CSV/Parquet (columns image, patient_id, ...)."),
    pipeline: Path = typer.Option(..., "--pipeline", "-p", help="Pipeline file (.yaml/.yml/.json); see docs/transforms.md."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: images/, manifest.csv, pipeline.json, failures.csv."),
    cache: Path | None = typer.Option(None, "--cache", help="Cache folder, shared between runs (default: OUT/.cache)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the cache."),
    fmt: str = typer.Option("png", "--format", "-f", help="png (16-bit, values clipped to [0, 1]) or npy (float32, exact)."),
) -> None:
    """Preprocess every image of a manifest and write a new manifest that points at the results.

    Each image is read, run through the pipeline and saved; results are cached by file hash
    and pipeline fingerprint, so a re-run only computes new images. A file that cannot be read
    or processed is listed at the end (and in OUT/failures.csv) and the run goes on.

    Example: osteolens preprocess data/manifest.csv --pipeline dental.yaml --out data/dental --format png
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from osteolens.data.manifest import Manifest
    from osteolens.errors import ConfigError
    from osteolens.transforms import Pipeline, PreprocessCache

    if fmt not in ("png", "npy"):
        raise ConfigError(None, f"--format {fmt!r} is not supported.", "use --format png or --format npy.")
    source = Manifest.read(manifest)
    pipe = Pipeline.from_file(pipeline)
    store = None if no_cache else PreprocessCache(cache if cache is not None else out / ".cache")
    steps = " -> ".join(step.name for step in pipe) or "(no steps)"
    console.print(f"pipeline {pipe.fingerprint()[:12]}: {steps}", highlight=False)
    with Progress(
        TextColumn("preprocessing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True
    ) as bar:
        task = bar.add_task("preprocess", total=len(source))
        result = preprocess_manifest(source, pipe, out, fmt=fmt, cache=store, progress=lambda: bar.advance(task))
    console.print(
        f"{len(result.manifest)} of {len(source)} image(s) written to {out / 'images'} "
        f"({result.cache_hits} from the cache); manifest: {result.manifest_path}",
        highlight=False,
    )
    report_failures(result.failures, out / "failures.csv" if result.failures else None)


def register(app: typer.Typer) -> None:
    """Attach the ``preprocess`` command."""
    app.command("preprocess")(preprocess)
