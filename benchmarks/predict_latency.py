"""Latency of one prediction with Grad-CAM: osteolens against a dental-seed-style pipeline.

Input: a synthetic 2048 x 2500, 16-bit DICOM (``osteolens.io.write_dicom``) with trabecular
texture. Model: ``efficientnet_b0`` (random init, one channel) at 512 x 512, one fold.

* osteolens: ``Predictor(backend="onnx")`` loaded once and warmed up, then per image: read
  the DICOM, replay the bundle's preprocessing (``percentile_normalise``, ``rolling_ball``
  radius 180 on the fast path, ``resize`` 512), ONNX Runtime with Grad-CAM (the bundle's
  ``cam.onnx``), heat map and overlay at 2048 x 2500, and the JSON record written with
  ``write_prediction``.
  Median of ``--runs`` (>= 10) warm runs.
* osteolens cold start (issue 13): the whole process of ``osteolens predict knee.dcm --model
  bundle --cam`` on a 1024 x 1024 DICOM, each run a fresh process (imports, bundle load,
  first prediction with Grad-CAM, PNGs + JSON, exit), median of ``--cold-runs`` after one
  untimed run (numba's kernel cache and the OS file cache warm, as on a machine in use);
  beside it the same image predicted by a Predictor already loaded and warmed up. The
  bundle carries its ONNX graphs (``model.onnx`` and ``cam.onnx``), as bundles written by
  ``osteolens train`` do; the same bundle without ``cam.onnx`` (Grad-CAM through torch, as
  before issue 13's cold-start work) is measured beside it.
* dental-seed style (the seed's runner rebuilt with osteolens' pieces, model loaded once):
  read, rolling ball radius 180 (paraboloid, presmoothing) exactly at full resolution with
  scikit-image (``_reference.skimage_rolling_ball``), resize to 512, torch eager forward, plain
  gradient saliency (a full backward pass to the input), matplotlib figures (hot colour
  map and red overlay) saved as PNG. Run ``--baseline-runs`` times (it is slow).

Run: ``.venv/bin/python benchmarks/predict_latency.py [--runs 10] [--baseline-runs 1] [--cold-runs 5]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
# As `osteolens predict` / `serve` do: OpenMP threads sleep instead of busy-waiting.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from _reference import skimage_rolling_ball  # noqa: E402
from _report import machine_description, write_section  # noqa: E402

SHAPE = (2500, 2048)  # rows, columns
KNEE = (1024, 1024)  # the cold-start image (issue 13's knee radiograph)
INPUT = 512
PREPROCESSING = [
    {"name": "percentile_normalise", "params": {"low": 0.5, "high": 99.5}},
    {"name": "rolling_ball", "params": {"radius": 180}},
    {"name": "resize", "params": {"size": INPUT}},
]


def synthetic_dicom(path: Path, shape: tuple[int, int] = SHAPE) -> Path:
    """A 16-bit DICOM (by default the size of a panoramic / spine radiograph) with bone-like texture."""
    from osteolens.io import Radiograph, RadiographMeta, write_dicom

    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    half_r, half_c = 700 * shape[0] / SHAPE[0], 500 * shape[1] / SHAPE[1]  # the bone's extent scales with the image
    bone = np.exp(-(((rows - shape[0] / 2) / half_r) ** 2 + ((cols - shape[1] / 2) / half_c) ** 2))
    texture = 0.15 * np.sin(rows / 6.0) * np.cos(cols / 8.0)
    image = 0.15 + 0.35 * bone + texture * bone + 0.2 * rows / shape[0] + 0.02 * rng.standard_normal(shape)
    meta = RadiographMeta(patient_id="BENCH", sex="F", age_years=68.0)
    return write_dicom(Radiograph(np.clip(image, 0, 1).astype(np.float32), (0.1, 0.1), meta), path, bits_stored=16)


def make_bundle(path: Path, cam_graph: bool = True) -> Path:
    import torch

    from osteolens.inference import add_cam_onnx, export_onnx, write_bundle
    from osteolens.inference.cam_graph import export_cam_onnx
    from osteolens.models import create_model

    torch.manual_seed(0)
    model = create_model("efficientnet_b0", "binary", 1).eval()
    write_bundle(path, models=[model], preprocessing=PREPROCESSING, input_size=(INPUT, INPUT), task="binary",
                 labels=["normal", "osteoporosis"], target="label", threshold=0.5,
                 onnx_model=export_onnx([model], (INPUT, INPUT)))
    if not cam_graph:  # as bundles written before cam.onnx existed: Grad-CAM through torch
        return path
    return add_cam_onnx(path, export_cam_onnx([model], (INPUT, INPUT)))  # model.onnx + cam.onnx, as training stores them


def osteolens_runs(
    bundle: Path, dicom: Path, out: Path, runs: int, threads: int
) -> tuple[list[float], dict[str, float], dict]:
    import torch

    from osteolens.inference import Predictor
    from osteolens.inference.report import write_prediction

    torch.set_num_threads(threads)  # as `osteolens predict --threads N` does
    predictor = Predictor(bundle, backend="onnx", threads=threads)
    predictor.warm_up()
    times, stages, record = [], [], {}
    for i in range(runs + 1):  # the first run is a warm-up on the real image size
        start = time.perf_counter()
        prediction = predictor.predict(dicom, cam=True)
        mark = time.perf_counter()
        record = write_prediction(prediction, out, f"run{i}", str(dicom))
        end = time.perf_counter()
        if i:
            times.append(end - start)
            stages.append({**prediction.timing_ms, "write PNGs + JSON": (end - mark) * 1000})
    median_stages = {k: statistics.median(s[k] for s in stages) for k in stages[0]}
    return times, median_stages, record


def cold_runs(bundle: Path, dicom: Path, out: Path, runs: int) -> tuple[list[float], list[float]]:
    """Whole-process seconds of ``osteolens predict DICOM --model BUNDLE --cam``, each run a fresh
    process, after one untimed run: (wall times, CPU times of the child, user + system)."""
    import resource

    script = Path(sys.executable).with_name("osteolens")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "osteolens.cli.main"]
    command += ["predict", str(dicom), "--model", str(bundle), "--cam", "--out", str(out)]
    walls, cpus = [], []
    for i in range(runs + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if i:
            walls.append(wall)
            cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return walls, cpus


def seed_style_run(bundle: Path, dicom: Path, out: Path) -> dict[str, float]:
    """One request of the dental seed's runner: exact rolling ball, eager model, saliency, matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from osteolens.explain import cam_target, gradient_saliency
    from osteolens.inference import load_bundle
    from osteolens.io import read_radiograph
    from osteolens.transforms import PercentileNormalise, Resize

    stages: dict[str, float] = {}
    model = load_bundle(bundle).models[0]
    mark = start = time.perf_counter()
    pixels = read_radiograph(dicom).pixels
    stages["read"] = time.perf_counter() - mark
    mark = time.perf_counter()
    flat = skimage_rolling_ball(PercentileNormalise()(pixels), 180, paraboloid=True, presmooth=True)
    stages["rolling ball (scikit-image, full resolution)"] = time.perf_counter() - mark
    mark = time.perf_counter()
    x = torch.from_numpy(Resize(size=INPUT)(flat))[None, None]
    with torch.no_grad():
        label = int(torch.sigmoid(model(x))[0, 0] >= 0.5)
    saliency = gradient_saliency([model], x, [cam_target("binary", label)])[0]
    stages["model + saliency (torch eager)"] = time.perf_counter() - mark
    mark = time.perf_counter()
    import cv2

    big = cv2.resize(saliency, (pixels.shape[1], pixels.shape[0]))
    for name, draw in (("saliency", lambda ax: ax.imshow(big, cmap="hot")),
                       ("overlay", lambda ax: (ax.imshow(pixels, cmap="gray"),
                                               ax.imshow(big, cmap="Reds", alpha=0.5)))):
        figure, ax = plt.subplots(figsize=(pixels.shape[1] / 100, pixels.shape[0] / 100), dpi=100)
        ax.axis("off")
        draw(ax)
        figure.savefig(out / f"seed_{name}.png", bbox_inches="tight", pad_inches=0)
        plt.close(figure)
    stages["matplotlib figures"] = time.perf_counter() - mark
    stages["total"] = time.perf_counter() - start
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--baseline-runs", type=int, default=1)
    parser.add_argument("--cold-runs", type=int, default=5, help="fresh `osteolens predict` processes (cold start)")
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="thread counts to measure (default: all cores, then 1)")
    args = parser.parse_args()
    import torch

    from osteolens.inference.runtime import default_threads

    settings = args.threads or sorted({default_threads(), 1}, reverse=True)
    default_torch_threads = torch.get_num_threads()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        dicom = synthetic_dicom(tmp_path / "radiograph.dcm")
        bundle = make_bundle(tmp_path / "bundle")
        measured = {n: osteolens_runs(bundle, dicom, tmp_path / "out", max(args.runs, 10), n) for n in settings}
        knee = synthetic_dicom(tmp_path / "knee.dcm", KNEE)
        knee_warm = osteolens_runs(bundle, knee, tmp_path / "knee_warm", 5, default_threads())[0]
        torch.set_num_threads(default_torch_threads)
        knee_cold, knee_cold_cpu = cold_runs(bundle, knee, tmp_path / "knee_cold", max(args.cold_runs, 1))
        torch_cam = make_bundle(tmp_path / "bundle_torch_cam", cam_graph=False)
        torch_cold, torch_cold_cpu = cold_runs(torch_cam, knee, tmp_path / "knee_torch", max(args.cold_runs, 1))
        baseline = [seed_style_run(bundle, dicom, tmp_path) for _ in range(args.baseline_runs)]
    best = min(measured, key=lambda n: statistics.median(measured[n][0]))
    times, stages, record = measured[best]
    ours = statistics.median(times)
    seed_total = statistics.median(b["total"] for b in baseline) if baseline else float("nan")
    load_after = os.getloadavg()[0]
    lines = [
        "## Prediction latency (one 2048 x 2500 DICOM -> JSON + Grad-CAM PNGs)",
        "",
        f"Machine: {machine_description()}. Load average {load_before:.1f} before, {load_after:.1f} after"
        + (" (a shared machine: other jobs were running, so absolute times are inflated)." if load_before > 1.5 else "."),
        "",
        "efficientnet_b0 (random init) at 512 x 512, one fold; synthetic 16-bit DICOM 2048 x 2500. "
        f"osteolens: median of {len(times)} warm runs per thread setting; "
        f"dental-seed style: {len(baseline)} run(s) with torch's default {default_torch_threads} thread(s).",
        "",
        "| pipeline | threads | seconds per image (median) | min - max | speed-up |",
        "|---|---:|---:|---:|---:|",
        f"| dental-seed style (scikit-image rolling ball r=180 at full resolution, torch eager, gradient saliency, "
        f"matplotlib) | {default_torch_threads} | {seed_total:.2f} | - | 1x |",
    ]
    for n, (t, _, _) in measured.items():
        lines.append(f"| osteolens Predictor (ONNX Runtime with Grad-CAM graph, PNGs on two threads) | {n} | {statistics.median(t):.3f} | "
                     f"{min(t):.3f} - {max(t):.3f} | {seed_total / statistics.median(t):.0f}x |")
    cold = statistics.median(knee_cold)
    lines += [
        "",
        f"Cold start, whole process (issue 13): `osteolens predict knee.dcm --model bundle --cam` on a synthetic "
        f"16-bit {KNEE[1]} x {KNEE[0]} DICOM, the same efficientnet_b0 bundle carrying its model.onnx and cam.onnx "
        f"(as training writes them); each run a fresh process (imports, bundle load, first prediction with Grad-CAM, PNGs + JSON, "
        f"exit), median of {len(knee_cold)} after one untimed run (numba's kernel cache and the OS file cache warm).",
        "",
        "| same image | seconds (median) | min - max | CPU seconds of the process (median) |",
        "|---|---:|---:|---:|",
        f"| cold: whole `osteolens predict --cam` process (Grad-CAM from cam.onnx, no torch imported) | {cold:.2f} | "
        f"{min(knee_cold):.2f} - {max(knee_cold):.2f} | {statistics.median(knee_cold_cpu):.2f} |",
        f"| cold: the same bundle without cam.onnx (Grad-CAM through torch and pytorch-grad-cam) | "
        f"{statistics.median(torch_cold):.2f} | {min(torch_cold):.2f} - {max(torch_cold):.2f} | "
        f"{statistics.median(torch_cold_cpu):.2f} |",
        f"| warm: Predictor already loaded and warmed up ({default_threads()} threads) | "
        f"{statistics.median(knee_warm):.3f} | {min(knee_warm):.3f} - {max(knee_warm):.3f} | - |",
        "",
        "Goal (issue 13): <= 3 s whole process, with Grad-CAM PNGs.",
        "",
        f"osteolens stages with {best} thread(s) (median ms): " + ", ".join(f"{k} {v:.0f}" for k, v in stages.items()) + ".",
        "",
        "Dental-seed-style stages (s): " + "; ".join(", ".join(f"{k} {v:.1f}" for k, v in b.items()) for b in baseline) + ".",
        "",
        f"Goal: <= 0.5 s and >= 100x faster. Output record keys: {', '.join(list(record)[:4])}, ... "
        "Run: `.venv/bin/python benchmarks/predict_latency.py`.",
    ]
    write_section("predict_latency", "\n".join(lines))
    print("\n".join(lines))
    print(json.dumps({"osteolens_s": ours, "seed_s": seed_total, "cold_start_s": cold}))


if __name__ == "__main__":
    main()
