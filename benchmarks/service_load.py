"""Load on the HTTP service: ``--requests`` concurrent uploads on loopback, latency, errors, memory.

The service is started as ``osteolens serve`` in a child process on 127.0.0.1 (a free port,
no token, two predictions at a time) with an ``efficientnet_b0`` bundle (random init) at
256 x 256. All uploads (a ``--size`` 16-bit PNG of noise, 1024 x 1024 by default; Grad-CAM
on, PNGs shrunk to 512 px) are sent at once from one asyncio client; each has a timeout,
and the child is stopped at the end, so the benchmark always finishes. Latency is from
sending a request to its full answer; p50 / p95 over all requests; an error is any non-200
answer or failed request. The server's memory is read from ``/proc/<pid>/status``: VmRSS
once it is up, and VmHWM (its peak resident set) after the burst; queued requests wait
before their bodies are read, so the peak should not grow with ``--requests``.

Run: ``.venv/bin/python benchmarks/service_load.py [--requests 200] [--size 5000x4000] [--no-write]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import free_port, machine_description, write_section  # noqa: E402

INPUT = 256


def _bundle(path: Path) -> Path:
    import torch

    from osteolens.inference import write_bundle
    from osteolens.models import create_model

    torch.manual_seed(0)
    return write_bundle(path, models=[create_model("efficientnet_b0", "binary", 1).eval()],
                        preprocessing=[{"name": "percentile_normalise"}, {"name": "resize", "params": {"size": INPUT}}],
                        input_size=(INPUT, INPUT), task="binary", labels=["normal", "osteoporosis"], threshold=0.5)


async def _load(url: str, payload: bytes, n: int, timeout: float) -> tuple[list[float], list[str]]:
    import httpx

    latencies: list[float] = []
    errors: list[str] = []

    async def one(client: httpx.AsyncClient) -> None:
        start = time.perf_counter()
        try:
            response = await client.post(url + "/v1/predict", files={"file": ("x.png", payload, "image/png")},
                                         data={"max_side": "512"})
            if response.status_code != 200:
                errors.append(f"HTTP {response.status_code}")
                return
            response.json()
            latencies.append(time.perf_counter() - start)
        except httpx.HTTPError as exc:
            errors.append(type(exc).__name__)

    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        await asyncio.gather(*(one(client) for _ in range(n)))
    return latencies, errors


def _size(text: str) -> tuple[int, int]:
    """``"5000x4000"`` -> (width 5000, height 4000)."""
    width, _, height = text.lower().partition("x")
    if not (width.isdigit() and height.isdigit()) or int(width) < 16 or int(height) < 16:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT (each >= 16), e.g. 5000x4000, got {text!r}")
    return int(width), int(height)


def _memory_mib(pid: int, field: str) -> float:
    """``VmRSS`` / ``VmHWM`` of a process in MiB (Linux /proc; NaN elsewhere)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--size", type=_size, default=(1024, 1024), help="upload WIDTHxHEIGHT (default 1024x1024)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds each request may take")
    parser.add_argument("--no-write", action="store_true", help="print the section, leave docs/benchmarks.md alone")
    args = parser.parse_args()
    width, height = args.size

    from osteolens.io import write_png

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        bundle = _bundle(tmp_path / "bundle")
        image = write_png(np.random.default_rng(0).random((height, width), dtype=np.float32), tmp_path / "x.png")
        payload = image.read_bytes()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "osteolens.cli.main", "serve", "--model", str(bundle), "--host", "127.0.0.1",
             "--port", str(port), "--max-concurrent", "2", "--max-upload-mb", str(max(50, len(payload) / 2**20 + 1))],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            import httpx

            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                try:
                    if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.5)
            else:
                sys.exit("the service did not start within 180 s")
            rss_ready = _memory_mib(server.pid, "VmRSS")
            started = time.perf_counter()
            latencies, errors = asyncio.run(_load(url, payload, args.requests, args.timeout))
            wall = time.perf_counter() - started
            peak = _memory_mib(server.pid, "VmHWM")
        finally:
            server.terminate()
            server.wait(timeout=30)
    load_after = os.getloadavg()[0]
    quantiles = statistics.quantiles(latencies, n=20) if len(latencies) >= 2 else [float("nan")] * 19
    p50, p95 = statistics.median(latencies) if latencies else float("nan"), quantiles[18]
    lines = [
        "## HTTP service under load (concurrent uploads on loopback)",
        "",
        f"Machine: {machine_description()}. Load average {load_before:.1f} before, {load_after:.1f} after"
        + (" (shared machine: other jobs were running)." if load_before > 1.5 else "."),
        "",
        f"`osteolens serve` (efficientnet_b0 random init at {INPUT} x {INPUT}, ONNX Runtime, Grad-CAM on, two "
        f"predictions at a time); {args.requests} uploads of a {width} x {height} 16-bit PNG of noise "
        f"({len(payload) / 2**20:.1f} MiB each) sent at once.",
        "",
        "| requests | errors | p50 latency (s) | p95 latency (s) | wall time (s) | throughput (requests/s) "
        "| server RSS when up (MiB) | server peak RSS (MiB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {args.requests} | {len(errors)} | {p50:.2f} | {p95:.2f} | {wall:.1f} | {len(latencies) / wall:.1f} "
        f"| {rss_ready:.0f} | {peak:.0f} |",
        "",
        "Every request waits for the ones queued before it, so p95 is about the time to serve the whole burst; "
        "the goal is 0 errors. Queued requests are not read until a slot frees, so the peak resident memory "
        "(VmHWM) stays near two requests' worth whatever the burst. Run: "
        f"`.venv/bin/python benchmarks/service_load.py --requests {args.requests} --size {width}x{height}`.",
    ]
    if errors:
        lines.insert(-1, f"Errors: {sorted(set(errors))}.")
    if not args.no_write:
        write_section("service_load", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
