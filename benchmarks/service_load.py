"""Load on the HTTP service: ``--requests`` concurrent uploads on loopback, latency and errors.

The service is started as ``osteolens serve`` in a child process on 127.0.0.1 (a free port,
no token, two predictions at a time) with an ``efficientnet_b0`` bundle (random init) at
256 x 256. All uploads (a 1024 x 1024 16-bit PNG, Grad-CAM on, PNGs shrunk to 512 px) are
sent at once from one asyncio client; each has a timeout, and the child is stopped at the
end, so the benchmark always finishes. Latency is from sending a request to its full
answer; p50 / p95 over all requests; an error is any non-200 answer or failed request.

Run: ``.venv/bin/python benchmarks/service_load.py [--requests 200]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine_description, write_section  # noqa: E402

INPUT = 256


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds each request may take")
    args = parser.parse_args()

    from osteolens.io import write_png

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        bundle = _bundle(tmp_path / "bundle")
        image = write_png(np.random.default_rng(0).random((1024, 1024), dtype=np.float32), tmp_path / "x.png")
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [sys.executable, "-m", "osteolens.cli.main", "serve", "--model", str(bundle), "--host", "127.0.0.1",
             "--port", str(port), "--max-concurrent", "2"],
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
            started = time.perf_counter()
            latencies, errors = asyncio.run(_load(url, image.read_bytes(), args.requests, args.timeout))
            wall = time.perf_counter() - started
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
        f"predictions at a time); {args.requests} uploads of a 1024 x 1024 16-bit PNG sent at once.",
        "",
        "| requests | errors | p50 latency (s) | p95 latency (s) | wall time (s) | throughput (requests/s) |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {args.requests} | {len(errors)} | {p50:.2f} | {p95:.2f} | {wall:.1f} | {len(latencies) / wall:.1f} |",
        "",
        "Every request waits for the ones queued before it, so p95 is about the time to serve the whole burst; "
        "the goal is 0 errors. Run: `.venv/bin/python benchmarks/service_load.py`.",
    ]
    if errors:
        lines.insert(-1, f"Errors: {sorted(set(errors))}.")
    write_section("service_load", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
