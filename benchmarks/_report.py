"""Shared by every benchmark: describe the machine and write one section of docs/benchmarks.md.

Each benchmark owns the text between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``,
so benchmarks can be re-run in any order without touching each other's figures.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
_HEADER = "# Benchmarks\n\nFigures written by the scripts in `benchmarks/`; re-run a script to refresh its section.\n"


def machine_description() -> str:
    """One line: CPU model, cores available to this process, memory, Python and torch versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    versions = f"Python {platform.python_version()}"
    try:
        import torch

        versions += f", torch {torch.__version__}"
    except ImportError:
        pass
    return f"{cpu}, {cores} cores{mem}, {platform.system()} {platform.release()}, {versions}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for a server the benchmark starts)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed_runs(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> list[float]:
    """Wall seconds of each of ``repeats`` runs of ``fn()`` after ``warmup`` untimed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` untimed runs."""
    return statistics.median(timed_runs(fn, repeats, warmup))


def write_section(name: str, markdown: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace (or append) the section ``name`` of docs/benchmarks.md with ``markdown``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else _HEADER
    block = f"<!-- bench:{name} -->\n{markdown.strip()}\n<!-- /bench:{name} -->"
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
