"""Beyond one process: feature extraction and batch prediction on Dask (one process vs a local cluster),
and data-parallel training (2 DDP processes vs 1).

Part ``dask`` (section ``scale_dask`` of docs/benchmarks.md): 2,000 phantom radiographs
(``generate_cohort``, 250 specimens, 64 x 64 PNG, masks), each measured in one process and on a
``LocalCluster`` of ``--workers`` processes (one thread each, started once, outside the timing):

* feature extraction (``extract_features``; the families of ``--families``, rectangle ROI inside
  the phantom's vertebral-body mask), one task per image;
* batch prediction (``Predictor.predict_many`` in one process against ``predict_on_cluster``: one
  task per model batch of 8 images) with a tiny random-init ``simple_cnn`` bundle (48 x 48 input),
  so that the figures measure the reading, the preprocessing and the scheduling, not a network;
* the scheduling overhead: 2,000 no-op tasks through the same submit-and-gather path
  (``run_tasks``), and for each workload ``(wall on the cluster - wall in one process / workers) / tasks``.

Part ``ddp`` (section ``ddp_scale``): one fold (``osteolens train CONFIG --fold 0``) of a synthetic
binary cohort (``tests.training``'s bright-square images, 64 x 64, 240 patients), ``simple_cnn``
(3 conv blocks, 16 filters), global batch 32 (16 per process with 2), 3 epochs, no augmentation,
with ``--devices 1`` and ``--devices 2``: training samples per second from the epoch times of
``fold0/history.csv`` (process start-up, preprocessing and prediction not counted), each run a
fresh command. Both take the same optimiser steps over the same global batches.

Every figure is the median of ``--repeats`` runs after one untimed warm-up (which also loads the
bundle once in each worker). Each part is a function returning its markdown; ``main`` runs the
parts asked for and writes each to its own section, so parts can be added and rerun independently.

Run: ``.venv/bin/python benchmarks/scale.py [--images 2000] [--workers 2] [--repeats 3] [--no-write]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.training's synthetic cohort
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine_description, timed_runs, write_section  # noqa: E402

PREPROCESSING = [{"name": "percentile_normalise", "params": {}}, {"name": "crop_to_content", "params": {}},
                 {"name": "pad_to_square", "params": {}}, {"name": "resize", "params": {"size": 48}}]


def _timed(fn: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    """Median wall seconds of ``fn()`` over ``repeats`` runs after one untimed warm-up, and every run."""
    times = timed_runs(fn, repeats)
    return statistics.median(times), times


def _bundle(path: Path) -> Path:
    import torch

    from osteolens.inference import write_bundle
    from osteolens.models import create_model

    torch.manual_seed(0)
    models = [create_model("simple_cnn", "multiclass", 3, conv_layers=2, filters=4, dense_units=8).eval() for _ in range(2)]
    return write_bundle(path, models=models, preprocessing=PREPROCESSING, input_size=(48, 48), task="multiclass",
                        labels=["normal", "osteopenia", "osteoporosis"], target="label")


def dask_part(args: argparse.Namespace) -> tuple[str, str]:
    """Feature extraction and batch prediction, one process against a local Dask cluster; returns (section, markdown)."""
    from distributed import Client

    from osteolens.features import ExtractionConfig, extract_features
    from osteolens.inference import Predictor
    from osteolens.phantom import generate_cohort
    from osteolens.scale import local_cluster, predict_on_cluster, run_tasks

    families = [name.strip() for name in args.families.split(",") if name.strip()]
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest = generate_cohort(root / "cohort", specimens=-(-args.images // 8), seed=0, size=args.size,
                                   formats=("png",), jobs=2)
        manifest = manifest.subset([i < args.images for i in range(len(manifest))])
        n = len(manifest)
        config = ExtractionConfig(families=families, roi="rectangle")
        bundle = _bundle(root / "bundle")
        predictor = Predictor(bundle, threads=1)
        paths = [str(p) for p in manifest.image_paths()]

        def predict_serial() -> int:
            return sum(1 for _ in predictor.predict_many(paths, batch_size=args.batch_size))

        started = time.perf_counter()
        with local_cluster(args.workers) as cluster, Client(cluster) as client:
            startup = time.perf_counter() - started
            address = cluster.scheduler_address

            def predict_cluster() -> int:
                return sum(1 for _ in predict_on_cluster(str(bundle), predictor.bundle.digest, paths, [None] * n,
                                                         batch_size=args.batch_size, threads=1, scheduler=address))

            def noop() -> int:
                return sum(1 for _ in run_tasks(client, abs, [(i,) for i in range(n)], "noop"))

            measured = {
                "features, 1 process": _timed(lambda: extract_features(manifest, config), args.repeats),
                f"features, {args.workers} workers": _timed(lambda: extract_features(manifest, config, scheduler=address), args.repeats),
                "prediction, 1 process": _timed(predict_serial, args.repeats),
                f"prediction, {args.workers} workers": _timed(predict_cluster, args.repeats),
                "no-op tasks": _timed(noop, args.repeats),
            }
    load_after = os.getloadavg()[0]

    w = args.workers
    batches = -(-n // args.batch_size)
    per_task = {
        "features": (measured[f"features, {w} workers"][0] - measured["features, 1 process"][0] / w) / n,
        "prediction": (measured[f"prediction, {w} workers"][0] - measured["prediction, 1 process"][0] / w) / batches,
    }
    noop_ms = measured["no-op tasks"][0] / n * 1000
    rows = []
    for name, (seconds, runs) in measured.items():
        workload = name.split(",")[0]
        tasks = "-" if name.endswith("1 process") else batches if workload == "prediction" else n
        rate = f"({n / seconds:.0f} tasks / s)" if workload == "no-op tasks" else f"{n / seconds:.0f}"
        serial = measured.get(f"{workload}, 1 process")
        speedup = f"x {serial[0] / seconds:.2f}" if serial and not name.endswith("1 process") else "-"
        rows.append(f"| {name} | {tasks} | {seconds:.2f} | {rate} | {speedup} | {', '.join(f'{t:.2f}' for t in runs)} |")
    f1 = n / measured["features, 1 process"][0]
    p1 = n / measured["prediction, 1 process"][0]
    lines = [
        "## Feature extraction and batch prediction on Dask (`benchmarks/scale.py`, part `dask`)",
        "",
        f"Machine: {machine_description()}. Load average {load_before:.1f} before, {load_after:.1f} after"
        + (" (shared machine: other jobs were running, so the figures are a lower bound)." if load_before > 1.5 else "."),
        "",
        f"{n} phantom radiographs ({args.size} x {args.size} PNG with vertebral-body masks). Features: "
        f"{', '.join(families)} inside the largest rectangle in the mask, one task per image. Prediction: a tiny "
        f"random-init simple_cnn bundle (2 folds, 48 x 48 input, ONNX Runtime, 1 thread per task), batches of "
        f"{args.batch_size} images, one task per batch. Cluster: `LocalCluster` of {w} worker processes with one "
        f"thread each, started once ({startup:.1f} s, not in the figures). Median of {args.repeats} runs after a warm-up.",
        "",
        "| workload | cluster tasks | seconds | images / s | speed-up | runs (s) |",
        "|---|---:|---:|---:|---:|---|",
        *rows,
        "",
        f"Scheduling overhead: a no-op task costs {noop_ms:.2f} ms of wall time end to end (submit, schedule, run, "
        f"gather, release; client, scheduler and workers sharing the cores). Measured against the ideal "
        f"(one-process wall / {w}), the cluster costs {per_task['features'] * 1000:.1f} ms per feature task and "
        f"{per_task['prediction'] * 1000:.1f} ms per prediction task (negative: faster than ideal).",
        "",
        "**What a cluster of N machines should give.** A worker's rate r (images / s per core) is the one-process "
        f"rate here ({f1:.0f} images / s for these features, {p1:.0f} for this prediction, on one core of this "
        "machine; on real radiographs, 2000 x 2500 px, reading and the ROI dominate and r is 10-100 x lower). With "
        "N machines of c worker processes each, throughput ~ N c r as long as (1) each task is long against the "
        f"scheduling overhead: one client and scheduler handled {1000 / noop_ms:.0f} no-op tasks / s here "
        f"({noop_ms:.1f} ms each, on cores shared with the workers; Dask documents about 1 ms of scheduler time "
        "per task on a core of its own), which caps the cluster's task rate whatever N is, so per-image tasks "
        "that take tens of milliseconds or more (every real radiograph) scale, while tasks as small as these "
        "64-pixel feature sets cost more to schedule than to compute (prediction is batched by `--batch-size` "
        "for this reason); (2) the shared filesystem delivers N c r x "
        "(image size) bytes / s (1,000 images / s of 10 MB DICOM is 10 GB / s: a parallel filesystem, or local "
        "copies); (3) the client, which gathers every result and writes one table, keeps up: it handles results "
        "at about the no-op rate above, and holds the table in memory; (4) workers are not oversubscribed: one "
        "worker thread per core, one model thread per task. On this machine the client, the scheduler and "
        f"both workers share {len(os.sched_getaffinity(0))} cores (with other jobs), which bounds the speed-up measured here.",
        "",
        f"Run: `.venv/bin/python benchmarks/scale.py --images {args.images} --workers {w}`.",
    ]
    return "scale_dask", "\n".join(lines)


DDP_CONFIG = {
    "manifest": "cohort/manifest.csv", "target": "label", "task": "binary", "input_size": [64, 64],
    "model": {"name": "simple_cnn", "params": {"conv_layers": 3, "filters": 16, "dense_units": 64}},
    "augmentation": "none", "folds": 2, "epochs": 3, "batch_size": 32, "warmup_epochs": 0, "report": False,
    "accelerator": "cpu", "seed": 0, "out": "runs", "patience": 100,
}


def samples_per_second(folder: Path, devices: int, name: str) -> float:
    """Training images per second of one fresh ``osteolens train --fold 0 --devices N`` run."""
    command = [str(Path(sys.executable).with_name("osteolens")), "train", "config.yaml", "--fold", "0", "--quiet",
               "--devices", str(devices), "--name", name]
    subprocess.run(command, cwd=folder, check=True, capture_output=True)
    run = folder / "runs" / name / "fold0"
    history = pd.read_csv(run / "history.csv")
    n_train = int(pd.read_json(run / "result.json", typ="series")["n_train"])
    steps = n_train // DDP_CONFIG["batch_size"]  # full global batches per epoch (the last partial one is dropped)
    return len(history) * steps * DDP_CONFIG["batch_size"] / float(history["seconds"].sum())


def ddp_part(args: argparse.Namespace) -> tuple[str, str]:
    """Training samples per second of 2 DDP processes against 1 on this machine's CPU cores; returns (section, markdown)."""
    from tests.training.conftest import make_cohort

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_cohort(folder / "cohort", patients=240, images_per_patient=1, size=64)
        (folder / "config.yaml").write_text(yaml.safe_dump(DDP_CONFIG))
        rates = {devices: [samples_per_second(folder, devices, f"d{devices}_{i}") for i in range(args.repeats)]
                 for devices in (1, 2)}
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    cores = len(os.sched_getaffinity(0))
    lines = [
        "## Data-parallel training on CPU processes (`benchmarks/scale.py`, part `ddp`)",
        "",
        f"Machine: {machine_description()}. Load average {os.getloadavg()[0]:.1f} at the end.",
        "",
        "One fold of a 240-patient synthetic cohort, 64 x 64, simple_cnn (3 blocks, 16 filters), global batch 32, "
        f"3 epochs; samples per second of the training loop (epoch times of history.csv), median of {args.repeats} fresh runs.",
        "",
        "| processes (`--devices`) | samples / s (median) | min - max | speed-up |",
        "|---:|---:|---:|---:|",
        f"| 1 | {one:.0f} | {min(rates[1]):.0f} - {max(rates[1]):.0f} | 1.00x |",
        f"| 2 (DDP, gloo) | {two:.0f} | {min(rates[2]):.0f} - {max(rates[2]):.0f} | {two / one:.2f}x |",
        "",
        f"Both settings use the same {cores} cores: the single process through torch's intra-op threads "
        f"({cores}), each DDP process with {cores} / 2 thread(s) (Lightning sets this for CPU processes), so a "
        "gain here comes from splitting the work into whole batches per core (small convolutions parallelise "
        "poorly inside one batch, and threads suffer more from other jobs on a shared machine), not from "
        "more compute. DDP is meant for several accelerators or machines: N GPUs (or N machines) should give "
        "close to N times one device's samples per second while the per-process batch keeps each device busy "
        "and the all-reduce of the gradients (the model's size, once per step) stays small against a step's "
        "compute; data loading must keep up (preprocessing cache on a shared or local disk, `num_workers`).",
        "",
        "Run: `.venv/bin/python benchmarks/scale.py --parts ddp`.",
    ]
    return "ddp_scale", "\n".join(lines)


#: The parts of this benchmark, each writing its own section of docs/benchmarks.md.
PARTS: dict[str, Callable[[argparse.Namespace], tuple[str, str]]] = {"dask": dask_part, "ddp": ddp_part}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, among {', '.join(PARTS)}")
    parser.add_argument("--images", type=int, default=2000, help="phantom images (8 per specimen)")
    parser.add_argument("--size", type=int, default=64, help="image side, pixels")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the local cluster")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8, help="images per prediction task and model call")
    parser.add_argument("--families", default="fourier,variogram,lbp,fractal", help="feature families")
    parser.add_argument("--no-write", action="store_true", help="print the sections, leave docs/benchmarks.md alone")
    args = parser.parse_args()
    for part in args.parts.split(","):
        section, markdown = PARTS[part.strip()](args)
        if not args.no_write:
            write_section(section, markdown)
        print(markdown, flush=True)


if __name__ == "__main__":
    main()
