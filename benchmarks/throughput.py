"""Batch inference throughput: ONNX Runtime against torch eager, end-to-end against model-only.

Model: ``efficientnet_b0`` (random init, one channel) at 512 x 512, one fold, binary.
Images: ``--images`` synthetic 1024 x 1024 16-bit PNG radiographs on disk.

* model-only: the backend on already preprocessed tensors, in batches of ``--batch``;
* end-to-end: ``Predictor.predict_many`` from the files (read, preprocess
  ``percentile_normalise`` + ``resize`` 512, model, post-processing), same batches, the
  next batch read by worker threads while the model runs.

Images per second are the median of ``--repeats`` passes over all images after one
warm-up pass. Goals from the issue: ONNX >= 2x torch eager; end-to-end >= 75 % of model-only.

Run: ``.venv/bin/python benchmarks/throughput.py [--images 16] [--batch 8] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
# As `osteolens predict` / `serve` do: OpenMP threads sleep instead of busy-waiting.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from _report import machine_description, median_seconds, write_section  # noqa: E402

INPUT = 512
PREPROCESSING = [{"name": "percentile_normalise", "params": {}}, {"name": "resize", "params": {"size": INPUT}}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="thread counts (torch and ONNX Runtime alike; default: all cores, then 1)")
    args = parser.parse_args()

    import torch

    from osteolens.inference import Predictor, write_bundle
    from osteolens.inference.runtime import default_threads
    from osteolens.io import write_png
    from osteolens.models import create_model

    settings = args.threads or sorted({default_threads(), 1}, reverse=True)
    load_before = os.getloadavg()[0]
    rng = np.random.default_rng(0)
    results: dict[tuple[str, int, str], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        files = [write_png(rng.random((1024, 1024), dtype=np.float32), tmp_path / f"img{i}.png") for i in range(args.images)]
        torch.manual_seed(0)
        bundle = write_bundle(tmp_path / "bundle", models=[create_model("efficientnet_b0", "binary", 1).eval()],
                              preprocessing=PREPROCESSING, input_size=(INPUT, INPUT), task="binary",
                              labels=["normal", "osteoporosis"], threshold=0.5)
        batches = [files[i : i + args.batch] for i in range(0, len(files), args.batch)]
        for threads in settings:
            torch.set_num_threads(threads)
            for backend in ("torch", "onnx"):
                measure(results, Predictor(bundle, backend=backend, threads=threads), batches, args, threads)
    load_after = os.getloadavg()[0]
    lines = [
        "## Batch inference throughput (ONNX Runtime vs torch eager)",
        "",
        f"Machine: {machine_description()}. Load average {load_before:.1f} before, {load_after:.1f} after"
        + (" (shared machine: other jobs were running)." if load_before > 1.5 else "."),
        "",
        f"efficientnet_b0 (random init) at {INPUT} x {INPUT}, {args.images} synthetic 1024 x 1024 16-bit PNGs, "
        f"batches of {args.batch}; median of {args.repeats} passes after a warm-up; torch and ONNX Runtime "
        "given the same number of threads.",
        "",
        "| backend | threads | model-only (images/s) | end-to-end from files (images/s) | end-to-end / model-only |",
        "|---|---:|---:|---:|---:|",
    ]
    for threads in settings:
        for backend in ("torch", "onnx"):
            m, e = results[(backend, threads, "model")], results[(backend, threads, "end")]
            lines.append(f"| {backend} | {threads} | {m:.1f} | {e:.1f} | {100 * e / m:.0f} % |")
    lines.append("")
    for threads in settings:
        speedup = results[("onnx", threads, "model")] / results[("torch", threads, "model")]
        share = results[("onnx", threads, "end")] / results[("onnx", threads, "model")]
        lines.append(f"- {threads} thread(s): ONNX Runtime / torch eager (model-only) {speedup:.2f}x (goal >= 2x); "
                     f"ONNX end-to-end / model-only {100 * share:.0f} % (goal >= 75 %).")
    lines += ["", "Run: `.venv/bin/python benchmarks/throughput.py`."]
    write_section("throughput", "\n".join(lines))
    print("\n".join(lines))


def measure(results: dict, predictor, batches: list, args, threads: int) -> None:
    """Images per second of one predictor, model-only (preprocessed tensors) and end-to-end (files)."""
    tensors = [np.stack([predictor.prepare(predictor.read_sample(f))[0] for f in batch]) for batch in batches]
    n_images = sum(len(batch) for batch in batches)

    def model_only() -> None:
        for x in tensors:
            predictor.backend(x)

    files = [f for batch in batches for f in batch]

    def end_to_end() -> None:  # reads the next batch while the model runs (Predictor.predict_many)
        for _, result in predictor.predict_many(files, batch_size=len(batches[0])):
            assert not isinstance(result, Exception), result

    backend = predictor.backend_name
    results[(backend, threads, "model")] = n_images / median_seconds(model_only, args.repeats)
    results[(backend, threads, "end")] = n_images / median_seconds(end_to_end, args.repeats)

if __name__ == "__main__":
    main()
