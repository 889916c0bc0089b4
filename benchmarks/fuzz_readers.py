"""Fuzz every reader with damaged copies of real files: only OsteolensError may come out.

Sources: radiographs from ``shared/data`` (the smallest PNGs of each set, every DICOM of
``dicom_radiographs``, the same pixels re-saved as JPEG / TIFF / BMP), a few of pydicom's
bundled DICOM files (RLE, JPEG, JPEG-LS, JPEG 2000, big endian), the heads of the label
and landmark tables, and Excel workbooks written from them with formulas. Each fuzzed file
is one source damaged by a seeded mutation: bit flips, truncation, random chunk insert or
delete, header damage (interesting integers over the first bytes), PNG IHDR fields with a
valid CRC, DICOM image tags set to hostile values; tables also get re-encodings (latin-1,
UTF-16 with BOM), a dropped column, non-numeric values and embedded NULs.

Every reader that accepts the file's kind runs on it in a worker process with a hard kill
after ``--kill-after`` seconds: ``read_radiograph``, ``read_image_header`` and ``read_mask``
for images; ``open_dataset``, ``Manifest.read``, ``read_landmarks``, ``read_image_table``
and ``read_masks`` for tables; ``open_dataset`` for workbooks. A finding is any exception that
is not an :class:`~osteolens.errors.OsteolensError`, a run over ``--limit`` seconds, a
killed run or a crashed worker. Peak memory is the largest ``ru_maxrss`` of the workers.

Run: ``.venv/bin/python benchmarks/fuzz_readers.py --files 10000 --workers 1 --seed 0``
"""

from __future__ import annotations

import argparse
import importlib
import io
import multiprocessing as mp
import resource
import struct
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine_description, write_section  # noqa: E402

INTERESTING = (b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00",
               b"\x00\x00\x01\x00", b"\xff\xff", b"\x00\x80", b"\x01")


@dataclass(frozen=True)
class Source:
    """One file to damage: ``kind`` is ``image``, ``table`` or ``xlsx``."""

    name: str
    kind: str
    suffix: str
    data: bytes


# ------------------------------------------------------------------ sources
def _resaved(pixels: np.ndarray, stem: str) -> list[Source]:
    """The same 8-bit pixels as JPEG, TIFF (raw, LZW, deflate) and BMP."""
    from PIL import Image

    image = Image.fromarray(np.clip(pixels * 255 + 0.5, 0, 255).astype(np.uint8))
    out = []
    for fmt, suffix, options in (("JPEG", ".jpg", {"quality": 90}), ("TIFF", ".tif", {}),
                                 ("TIFF", ".tif", {"compression": "tiff_lzw"}),
                                 ("TIFF", ".tif", {"compression": "tiff_adobe_deflate"}), ("BMP", ".bmp", {})):
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        out.append(Source(f"{stem}{suffix}:{options.get('compression', fmt.lower())}", "image", suffix, buffer.getvalue()))
    return out


def _tables_from(frame, stem: str) -> list[Source]:
    """A CSV of ``frame`` and an Excel workbook of it whose last rows hold formulas."""
    import openpyxl

    csv_bytes = frame.to_csv(index=False).encode()
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append([str(c) for c in frame.columns])
    for row in frame.astype(object).where(frame.notna(), None).itertuples(index=False):
        sheet.append(list(row))
    width = len(frame.columns)
    sheet.append([f"=A{2 + k % 3}&\"x\"" if k % 2 else "=1/0" for k in range(width)])
    sheet.append(["=SUM(1,2)"] + ["=NA()"] * (width - 1))
    buffer = io.BytesIO()
    book.save(buffer)
    return [Source(f"{stem}.csv", "table", ".csv", csv_bytes), Source(f"{stem}.xlsx", "xlsx", ".xlsx", buffer.getvalue())]


def synthetic_sources() -> list[Source]:
    """Small sources made here (no shared data needed): PNG 8/16-bit, DICOM, JPEG, TIFF,
    BMP, pydicom's small test files, a label table, a landmark table and their workbooks."""
    import pandas as pd
    from pydicom.data import get_testdata_file

    from osteolens.io import Radiograph, RadiographMeta, write_dicom, write_png

    rng = np.random.default_rng(0)
    pixels = np.clip(np.linspace(0, 1, 48)[None, :] * 0.6 + rng.random((40, 48)) * 0.4, 0, 1)
    sources = []
    with tempfile.TemporaryDirectory() as tmp:
        for bits in (8, 16):
            path = write_png(pixels, Path(tmp) / f"s{bits}.png", bits=bits)
            sources.append(Source(f"synthetic_{bits}bit.png", "image", ".png", path.read_bytes()))
        meta = RadiographMeta(sex="F", age_years=70.0)
        path = write_dicom(Radiograph(pixels.astype(np.float32), (0.2, 0.2), meta), Path(tmp) / "s.dcm",
                           photometric="MONOCHROME1")
        sources.append(Source("synthetic_mono1.dcm", "image", ".dcm", path.read_bytes()))
    sources += _resaved(pixels, "synthetic")
    for name in ("CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "MR_small_jpeg_ls_lossless.dcm",
                 "JPGExtended.dcm", "MR_small_bigendian.dcm", "no_meta.dcm"):
        found = get_testdata_file(name)
        if found:
            sources.append(Source(f"pydicom/{name}", "image", ".dcm", Path(found).read_bytes()))
    labels = pd.DataFrame({"image": [f"images/{k}.png" for k in range(6)], "patient_id": ["p1", "p1", "p2", "p3", "p4", "p5"],
                           "label": ["normal", "osteoporosis"] * 3, "age": [61, 70.5, 55, 80, 66, 59],
                           "sex": ["F", "M", "F", "F", "M", "F"], "pixel_spacing_mm": [0.14] * 6})
    corners = [(v, c) for v in ("L1", "L2") for c in ("top_left", "top_right", "bottom_left", "bottom_right")]
    landmarks = pd.DataFrame({"image": ["a.png"] * 8 + ["b.png"] * 8, "vertebra": [v for v, _ in corners] * 2,
                              "corner": [c for _, c in corners] * 2, "x": rng.uniform(10, 90, 16).round(2),
                              "y": rng.uniform(10, 200, 16).round(2), "view": "lateral", "pixel_spacing_mm": 0.2,
                              "image_height": 256, "image_width": 128})
    return sources + _tables_from(labels, "labels") + _tables_from(landmarks, "landmarks")


def shared_sources(images_per_set: int = 3, table_rows: int = 40) -> list[Source]:
    """Sources from ``shared/data``: the smallest PNGs of each set, every DICOM, table heads."""
    import pandas as pd

    from osteolens.data.paths import shared_data_dir
    from osteolens.io import read_radiograph

    root = shared_data_dir()
    if root is None:
        return []
    sources = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        pngs = sorted(folder.rglob("*.png"), key=lambda p: p.stat().st_size)[:images_per_set]
        for path in pngs:
            sources.append(Source(f"{folder.name}/{path.name}", "image", ".png", path.read_bytes()))
        if pngs:
            sources += _resaved(read_radiograph(pngs[0]).pixels, f"{folder.name}/{pngs[0].stem}")
        for path in sorted(folder.glob("*.dcm")):
            sources.append(Source(f"{folder.name}/{path.name}", "image", ".dcm", path.read_bytes()))
        for path in sorted(folder.glob("*.csv")):
            sources += _tables_from(pd.read_csv(path, nrows=table_rows), f"{folder.name}/{path.stem}")
    return sources


# ------------------------------------------------------------------ mutations
def _span(rng: np.random.Generator, n: int) -> tuple[int, int]:
    start = int(rng.integers(0, max(n, 1)))
    return start, min(n, start + int(rng.integers(1, 1025)))


def bit_flip(data: bytes, rng: np.random.Generator) -> bytes:
    """Flip 1-32 bits, half the time inside the first 1 KiB (where headers live)."""
    out = bytearray(data)
    limit = min(len(out), 1024) if rng.random() < 0.5 else len(out)
    for _ in range(int(rng.integers(1, 33))):
        out[int(rng.integers(0, limit))] ^= 1 << int(rng.integers(0, 8))
    return bytes(out)


def truncate(data: bytes, rng: np.random.Generator) -> bytes:
    """Cut the file at a random length (often within the header)."""
    n = len(data)
    return data[: int(rng.integers(0, min(n, 2048) if rng.random() < 0.3 else n))]


def insert_chunk(data: bytes, rng: np.random.Generator) -> bytes:
    """Insert 1-1024 random bytes at a random offset."""
    at = int(rng.integers(0, len(data) + 1))
    return data[:at] + rng.bytes(int(rng.integers(1, 1025))) + data[at:]


def delete_chunk(data: bytes, rng: np.random.Generator) -> bytes:
    """Delete 1-1024 bytes at a random offset."""
    start, end = _span(rng, len(data))
    return data[:start] + data[end:]


def damage_header(data: bytes, rng: np.random.Generator) -> bytes:
    """Overwrite 1-8 places in the first 512 bytes with interesting integers (0, -1, 2^31, ...)."""
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        value = INTERESTING[int(rng.integers(0, len(INTERESTING)))]
        at = int(rng.integers(0, max(1, min(len(out), 512) - len(value) + 1)))
        out[at: at + len(value)] = value
    return bytes(out[: len(data)])


def png_ihdr(data: bytes, rng: np.random.Generator) -> bytes:
    """Rewrite one IHDR field of a PNG (size, bit depth, colour type, interlace) with a valid CRC."""
    if data[12:16] != b"IHDR":
        return bit_flip(data, rng)
    fields = list(struct.unpack(">IIBBBBB", data[16:29]))
    k = int(rng.integers(0, 7))
    fields[k] = int(rng.choice([0, 1, 3, 65535, 2**31 - 1, 2**32 - 1])) if k < 2 else int(rng.integers(0, 256))
    body = b"IHDR" + struct.pack(">IIBBBBB", *fields)
    return data[:12] + body + struct.pack(">I", zlib.crc32(body)) + data[33:]


_DICOM_TAGS = {"Rows": (0, 1, 65535), "Columns": (0, 1, 65535), "BitsAllocated": (0, 1, 7, 12, 64),
               "BitsStored": (0, 17, 64), "HighBit": (0, 31, 200), "PixelRepresentation": (1, 2),
               "SamplesPerPixel": (0, 2, 3, 4), "NumberOfFrames": (0, 2, 100000),
               "PhotometricInterpretation": ("RGB", "PALETTE COLOR", "YBR_FULL", "XYZ", ""),
               "RescaleSlope": ("0", "-1", "1e308", "nan"), "RescaleIntercept": ("1e308", "x"),
               "WindowWidth": ("0", "-5", "1e-30"), "WindowCenter": ("nan", "1e308"), "PixelSpacing": ("0\\0", "-1\\x", "1"),
               "PlanarConfiguration": (1, 7), "PatientAge": ("999Y", "abc", "070W")}


def dicom_tag(data: bytes, rng: np.random.Generator) -> bytes:
    """Set one image tag of a DICOM file (rows, bits, photometric, rescale, VOI ...) to a hostile value."""
    import pydicom

    try:
        dataset = pydicom.dcmread(io.BytesIO(data), force=True)
        name = list(_DICOM_TAGS)[int(rng.integers(0, len(_DICOM_TAGS)))]
        values = _DICOM_TAGS[name]
        setattr(dataset, name, values[int(rng.integers(0, len(values)))])
        buffer = io.BytesIO()
        dataset.save_as(buffer, enforce_file_format=False)
        return buffer.getvalue()
    except Exception:  # a source pydicom cannot rewrite: damage its bytes instead
        return damage_header(data, rng)


def reencode(text_codec: str) -> Callable[[bytes, np.random.Generator], bytes]:
    """Re-encode a UTF-8 table as ``text_codec`` (with an accented name so latin-1 differs)."""

    def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
        text = data.decode("utf-8", errors="replace").replace("p1", "Jérôme-ü", 1)
        return text.encode(text_codec)

    _mutate.__name__ = f"encoding_{text_codec.replace('-', '')}"
    return _mutate


def drop_column(data: bytes, rng: np.random.Generator) -> bytes:
    """Remove one column (header and cells) from a comma-separated table."""
    lines = data.decode("utf-8", errors="replace").splitlines()
    k = int(rng.integers(0, max(1, lines[0].count(",") + 1))) if lines else 0
    return "\n".join(",".join(c for j, c in enumerate(line.split(",")) if j != k) for line in lines).encode()


def non_numeric(data: bytes, rng: np.random.Generator) -> bytes:
    """Replace a random number of cells with text, infinities and empty strings."""
    lines = data.decode("utf-8", errors="replace").splitlines()
    junk = ("abc", "inf", "-inf", "NaN", "", "1e999", "1,5", "--", "0x10", "   ")
    for _ in range(int(rng.integers(1, 10))):
        if len(lines) < 2:
            break
        r = int(rng.integers(1, len(lines)))
        cells = lines[r].split(",")
        cells[int(rng.integers(0, len(cells)))] = junk[int(rng.integers(0, len(junk)))]
        lines[r] = ",".join(cells)
    return "\n".join(lines).encode()


def embed_nul(data: bytes, rng: np.random.Generator) -> bytes:
    """Put NUL bytes at random places (also in the header line)."""
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 6))):
        out.insert(int(rng.integers(0, len(out) + 1)), 0)
    return bytes(out)


BYTE_MUTATIONS = (bit_flip, truncate, insert_chunk, delete_chunk, damage_header)
MUTATIONS = {
    ".png": (*BYTE_MUTATIONS, png_ihdr),
    ".dcm": (*BYTE_MUTATIONS, dicom_tag, dicom_tag),
    ".csv": (*BYTE_MUTATIONS, reencode("latin-1"), reencode("utf-16"), drop_column, non_numeric, non_numeric, embed_nul),
}


def mutate(source: Source, rng: np.random.Generator) -> tuple[str, bytes]:
    """One damaged copy of ``source``: ``(mutation name, bytes)``."""
    choices = MUTATIONS.get(source.suffix, BYTE_MUTATIONS)
    mutation = choices[int(rng.integers(0, len(choices)))]
    return mutation.__name__, mutation(source.data, rng)


# ------------------------------------------------------------------ readers
# "module:function", imported in the worker on first use (the parent never imports the readers).
READERS: dict[str, tuple[str, ...]] = {
    "image": ("osteolens.io:read_radiograph", "osteolens.morphometry.inputs:read_image_header",
              "osteolens.morphometry.inputs:read_mask"),
    "table": ("osteolens.data:open_dataset", "osteolens.data:Manifest.read", "osteolens.morphometry:read_landmarks",
              "osteolens.morphometry.inputs:read_image_table", "osteolens.morphometry:read_masks"),
    "xlsx": ("osteolens.data:open_dataset",),
}


def reader_name(reader: str) -> str:
    """``read_mask``, ``manifest_read``: the reader's short name in tables and test ids."""
    return reader.split(":")[1].replace("Manifest.", "manifest_")


def _resolve(reader: str) -> Callable[[Path], object]:
    module, attribute = reader.split(":")
    target: Any = importlib.import_module(module)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target


def run_reader(reader: str, path: Path) -> tuple[str | None, str]:
    """Run one reader: ``(None, "")`` on success, else the exception's class name and message;
    the name is prefixed ``OK:`` for an OsteolensError."""
    from osteolens.errors import OsteolensError

    try:
        _resolve(reader)(path)
    except OsteolensError as exc:
        return f"OK:{type(exc).__name__}", str(exc)[:300]
    except Exception as exc:
        return f"{type(exc).__module__}.{type(exc).__name__}", f"{exc!s}"[:300]
    return None, ""


# ------------------------------------------------------------------ workers
def _worker(conn, memory_limit: int) -> None:
    """Serve ``(kind, reader index, path)`` jobs until the pipe closes."""
    import warnings

    warnings.simplefilter("ignore")  # decoders warn on damaged files; the outcome is what counts
    if memory_limit:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    for module in ("openpyxl", "pandas", "PIL.Image", "pydicom", "tifffile", "osteolens.data", "osteolens.morphometry"):
        importlib.import_module(module)  # import time is not the readers' time
    conn.send("ready")
    while True:
        try:
            kind, index, path = conn.recv()
        except EOFError:
            return
        start = time.perf_counter()
        outcome, message = run_reader(READERS[kind][index], Path(path))
        conn.send((outcome, message, time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


class Worker:
    """A reader process that is killed and replaced when a job runs past its deadline."""

    def __init__(self, memory_limit: int) -> None:
        self.memory_limit = memory_limit
        self.process = None
        self.conn = None

    def _start(self) -> None:
        context = mp.get_context("forkserver")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker, args=(child, self.memory_limit), daemon=True)
        self.process.start()
        child.close()
        if not self.conn.poll(300) or self.conn.recv() != "ready":
            raise RuntimeError("a fuzzing worker did not start")

    def run(self, kind: str, index: int, path: Path, kill_after: float) -> tuple[str | None, str, float, int]:
        """Outcome, message, seconds and the worker's peak RSS (KiB); ``KILLED`` / ``CRASHED`` outcomes."""
        if self.process is None or not self.process.is_alive():
            self._start()
        self.conn.send((kind, index, str(path)))
        start = time.perf_counter()
        try:
            if self.conn.poll(kill_after):
                return self.conn.recv()
            outcome = "KILLED"
        except EOFError:
            outcome = f"CRASHED (exit code {self.process.exitcode})"
        self.close()
        return outcome, "", time.perf_counter() - start, 0

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.join()
            self.conn.close()
            self.process = None


@dataclass
class FuzzResult:
    """Counts of one fuzzing run."""

    files: int = 0
    runs: int = 0
    seconds: float = 0.0
    outcomes: Counter = field(default_factory=Counter)  # (reader, outcome) -> count
    mutations: Counter = field(default_factory=Counter)
    findings: list[tuple[str, str, str, str, str]] = field(default_factory=list)  # source, mutation, reader, outcome, message
    slow: list[tuple[str, str, str, float]] = field(default_factory=list)
    max_seconds: float = 0.0
    peak_rss_kib: int = 0


def fuzz(sources: list[Source], files: int, seed: int, *, limit: float = 2.0, kill_after: float = 10.0,
         workers: int = 1, memory_limit: int = 4 << 30, budget_s: float | None = None, keep: Path | None = None) -> FuzzResult:
    """Damage ``files`` copies of the sources (round robin, seeded) and run every reader on each.

    Files are written to a temporary folder (or ``keep``, where findings are left for replay).
    ``budget_s`` stops early when the wall time is spent.
    """
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(seed)
    result = FuzzResult()
    pool = [Worker(memory_limit) for _ in range(workers)]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(workers) as threads:
        folder = keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)

        def one(job: tuple[int, Source, str, bytes]) -> list[tuple]:
            number, source, mutation, data = job
            path = folder / f"{number:05d}{source.suffix}"
            path.write_bytes(data)
            worker = pool[number % workers]
            rows = []
            for index, reader in enumerate(READERS[source.kind]):
                outcome, message, seconds, rss = worker.run(source.kind, index, path, kill_after)
                rows.append((source, mutation, reader_name(reader), outcome, message, seconds, rss, path))
            return rows

        number = 0
        while number < files and (budget_s is None or time.perf_counter() - started < budget_s):
            batch = []
            for _ in range(min(workers * 4, files - number)):
                source = sources[number % len(sources)]
                mutation, data = mutate(source, rng)
                batch.append((number, source, mutation, data))
                number += 1
            for rows in threads.map(one, batch):
                result.files += 1
                result.mutations[rows[0][1]] += 1
                keep_file = False
                for source, mutation, reader, outcome, message, seconds, rss, path in rows:
                    result.runs += 1
                    result.outcomes[(reader, outcome or "read")] += 1
                    result.max_seconds = max(result.max_seconds, seconds)
                    result.peak_rss_kib = max(result.peak_rss_kib, rss)
                    if outcome is not None and not outcome.startswith("OK:"):
                        result.findings.append((source.name, mutation, reader, outcome, message))
                        keep_file = True
                    if seconds > limit:
                        result.slow.append((source.name, mutation, reader, seconds))
                        keep_file = True
                if keep is None or not keep_file:
                    rows[0][-1].unlink(missing_ok=True)
        for worker in pool:
            worker.close()
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # also workers that were killed
    result.peak_rss_kib = max(result.peak_rss_kib, children)
    result.seconds = time.perf_counter() - started
    return result


# ------------------------------------------------------------------ report
def report(result: FuzzResult, args: argparse.Namespace, n_sources: int, shared: bool) -> str:
    findings = Counter((reader, outcome) for _, _, reader, outcome, _ in result.findings)
    lines = [
        "## Reader fuzzing: damaged files raise only OsteolensError (`benchmarks/fuzz_readers.py`)",
        "",
        f"Machine: {machine_description()}; {args.workers} worker process(es); "
        f"{result.files:,} fuzzed files ({result.runs:,} reader runs) in {result.seconds:.0f} s, seed {args.seed}.",
        "",
        f"Sources: {n_sources} files ({'shared/data' if shared else 'synthetic only: shared/data absent'} "
        "and pydicom's test files), damaged by the mutations counted below. Goal (issue 13): "
        "10,000 files, only OsteolensError, none over 2 s, peak memory under 2 GiB. Workers run under a "
        f"{args.memory_limit_gib:g} GiB address-space limit (RLIMIT_AS), so an unbounded allocation shows up as "
        "MemoryError instead of swapping the machine.",
        "",
        "| | result |",
        "|---|---:|",
        f"| fuzzed files | {result.files:,}{'' if result.files >= args.files else f' of {args.files:,} asked (time budget {args.budget:.0f} s spent)'} |",
        f"| exceptions that are not OsteolensError | {sum(1 for f in result.findings if not f[3].startswith(('KILLED', 'CRASHED')))} |",
        f"| runs over {args.limit:g} s | {len(result.slow)} |",
        f"| runs killed after {args.kill_after:g} s | {sum(1 for f in result.findings if f[3] == 'KILLED')} |",
        f"| crashed workers | {sum(1 for f in result.findings if f[3].startswith('CRASHED'))} |",
        f"| slowest run | {result.max_seconds:.2f} s |",
        f"| peak memory of a worker (ru_maxrss) | {result.peak_rss_kib / 2**20:.2f} GiB |",
        "",
        "| reader | outcome | runs |",
        "|---|---|---:|",
    ]
    for (reader, outcome), count in sorted(result.outcomes.items()):
        lines.append(f"| {reader} | {outcome.removeprefix('OK:')} | {count:,} |")
    lines += ["", "Mutations: " + ", ".join(f"{name} {count:,}" for name, count in sorted(result.mutations.items())) + " (files)."]
    if result.slow:
        lines += ["", f"Runs over {args.limit:g} s (wall time on a shared machine; the slowest 10):", ""]
        for source, mutation, reader, seconds in sorted(result.slow, key=lambda s: -s[3])[:10]:
            lines.append(f"- {reader} {seconds:.1f} s: {source}, {mutation}")
    if findings:
        lines += ["", "Findings:", ""]
        seen = set()
        for source, mutation, reader, outcome, message in result.findings:
            if (reader, outcome) in seen:
                continue
            seen.add((reader, outcome))
            lines.append(f"- {reader}: {outcome} x{findings[(reader, outcome)]} (e.g. {source}, {mutation}): {message[:160]}")
    lines += ["", f"Reproduce: `.venv/bin/python benchmarks/fuzz_readers.py --files {args.files} --workers {args.workers} "
                  f"--seed {args.seed}`"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--limit", type=float, default=2.0, help="a run longer than this is a finding (s)")
    parser.add_argument("--kill-after", type=float, default=10.0, help="hard kill of a run (s)")
    parser.add_argument("--memory-limit-gib", type=float, default=4.0, help="address-space limit of a worker")
    parser.add_argument("--budget", type=float, default=600.0, help="stop after this many seconds")
    parser.add_argument("--keep", type=Path, default=None, help="leave the files of findings in this folder")
    parser.add_argument("--no-write", action="store_true", help="print, do not update docs/benchmarks.md")
    args = parser.parse_args()
    shared = shared_sources()
    sources = shared + synthetic_sources()
    result = fuzz(sources, args.files, args.seed, limit=args.limit, kill_after=args.kill_after, workers=args.workers,
                  memory_limit=int(args.memory_limit_gib * 2**30), budget_s=args.budget, keep=args.keep)
    text = report(result, args, len(sources), bool(shared))
    if not args.no_write:
        write_section("fuzz_readers", text)
    print(text)


if __name__ == "__main__":
    main()
