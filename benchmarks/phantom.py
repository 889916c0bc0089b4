"""Benchmark: time to generate the phantom cohort (100 specimens = 800 images, DICOM + PNG + masks).

Goal from the issue: <= 60 s on 2 cores. Measures ``generate_cohort`` with 1 and 2 worker
processes (median wall time of several runs) and the CPU seconds each run used (this
process plus its workers), which stays meaningful when other jobs share the machine.

Run: ``.venv/bin/python benchmarks/phantom.py [--specimens 100] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine_description, median_seconds, write_section  # noqa: E402

from osteolens.phantom import generate_cohort  # noqa: E402
from osteolens.phantom.cohort import DEFAULT_SIZE  # noqa: E402

GOAL_SECONDS = 60.0


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(specimens: int, jobs: int, repeats: int) -> dict[str, float]:
    """Median wall seconds and median CPU seconds of ``repeats`` cohort generations."""
    cpu: list[float] = []
    workdir = Path(tempfile.mkdtemp(prefix="phantom-bench-"))

    def run() -> None:
        out = workdir / "cohort"
        shutil.rmtree(out, ignore_errors=True)
        before = _cpu_seconds()
        generate_cohort(out, specimens=specimens, seed=0, size=DEFAULT_SIZE, jobs=jobs)
        cpu.append(_cpu_seconds() - before)

    try:
        wall = median_seconds(run, repeats=repeats, warmup=0)
        files = sum(1 for p in (workdir / "cohort").rglob("*") if p.is_file())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"wall": wall, "cpu": statistics.median(cpu), "files": files}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specimens", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results = {jobs: measure(args.specimens, jobs, args.repeats) for jobs in (1, 2)}
    load_after = os.getloadavg()[0]
    images = args.specimens * 8
    lines = [
        "## Phantom cohort generation",
        "",
        f"`generate_cohort` of {args.specimens} specimens ({images} images of {DEFAULT_SIZE} x {DEFAULT_SIZE} px, "
        f"each written as DICOM + 16-bit PNG + mask, plus labels.csv); median of {args.repeats} runs; "
        f"goal from the issue: <= {GOAL_SECONDS:.0f} s on 2 cores.",
        "",
        f"Machine: {machine_description()}. Measured {started}; 1-minute load average "
        f"{load_before:.1f} before and {load_after:.1f} after (other jobs shared the cores).",
        "",
        "| workers | wall time (s) | CPU time (s) | images / s | goal (<= 60 s on 2 cores) |",
        "|---:|---:|---:|---:|---|",
    ]
    for jobs, r in results.items():
        verdict = ("met" if r["wall"] <= GOAL_SECONDS else "missed") if jobs == 2 else "-"
        lines.append(f"| {jobs} | {r['wall']:.1f} | {r['cpu']:.1f} | {images / r['wall']:.1f} | {verdict} |")
    lines += [
        "",
        "CPU time is this process plus its workers; on an otherwise idle 2-core machine the "
        "2-worker wall time approaches half of it.",
        "",
        f"Reproduce: `.venv/bin/python benchmarks/phantom.py --specimens {args.specimens} --repeats {args.repeats}`",
    ]
    markdown = "\n".join(lines)
    write_section("phantom", markdown)
    print(markdown)


if __name__ == "__main__":
    main()
