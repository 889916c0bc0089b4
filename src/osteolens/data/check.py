"""Dataset checks: what is in a manifest, what is broken, and what is duplicated.

Duplicates are found three ways and merged into clusters (union-find):

- ``exact-file``: identical file bytes (SHA-256);
- ``exact-pixels``: identical decoded pixels (quantised to 16 bit), e.g. the same image saved twice as PNG and DICOM;
- ``near``: a perceptual hash (DCT pHash, 64 bit) within ``near_hamming`` bits **and** a
  32 x 32 thumbnail correlation of at least ``near_correlation``. Either alone is too
  loose on radiographs of one body part: on the real knee set, distinct knees reach a pHash
  distance of 6 and a thumbnail correlation of 0.986, so the defaults (6 bits, 0.995)
  catch re-encoded, resized or slightly re-windowed copies, not look-alikes.

A cluster that spans two patients means one radiograph was filed under several patients;
one that spans two classes is a label conflict. Both leak across folds unless merged,
which ``osteolens.data.splits`` does with :attr:`DataCheckReport.cluster_of`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from osteolens.data.builders import list_images
from osteolens.data.manifest import Manifest, file_sha256
from osteolens.errors import OsteolensError

THUMB = 32


@dataclass
class DuplicateGroup:
    """A cluster of images that are the same radiograph (exactly or nearly)."""

    images: list[str]
    patients: list[str]
    labels: list[str]
    kind: str  # exact-file | exact-pixels | near: the loosest link inside the cluster

    @property
    def cross_patient(self) -> bool:
        return len(set(self.patients)) > 1

    @property
    def label_conflict(self) -> bool:
        return len({lab for lab in self.labels if lab}) > 1

    def to_dict(self) -> dict:
        return {
            "images": self.images,
            "patients": self.patients,
            "labels": self.labels,
            "kind": self.kind,
            "cross_patient": self.cross_patient,
            "label_conflict": self.label_conflict,
        }


@dataclass
class DataCheckReport:
    """The outcome of :func:`check_manifest`.

    ``clean`` is the manifest without unreadable, missing and unlabelled rows; duplicates
    are kept (and clustered) because dropping them is a study decision.
    """

    n_images: int
    n_patients: int
    class_counts: dict[str, int]
    images_per_patient: dict[str, float]
    unreadable: list[tuple[str, str]]
    missing_files: list[str]
    unlabelled: list[str]
    unlisted_files: list[str]
    duplicate_groups: list[DuplicateGroup]
    clean: Manifest
    cluster_of: dict[str, str] = field(default_factory=dict)

    @property
    def label_conflicts(self) -> list[DuplicateGroup]:
        return [g for g in self.duplicate_groups if g.label_conflict]

    @property
    def problem_count(self) -> int:
        """Problems that ``--strict`` turns into an error exit."""
        return (
            len(self.unreadable)
            + len(self.missing_files)
            + len(self.unlabelled)
            + len(self.unlisted_files)
            + len(self.duplicate_groups)
        )

    def annotated(self) -> Manifest:
        """The clean manifest with a ``dup_cluster`` column (empty outside clusters) for ``data folds``."""
        frame = self.clean.frame.copy()
        frame["dup_cluster"] = frame["image"].map(self.cluster_of)
        return Manifest(frame, self.clean.root, self.clean.source)

    def write(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Write ``manifest.csv`` (clean, annotated) and ``check.json``; return both paths."""
        import json

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        manifest_path = self.annotated().write(out / "manifest.csv")
        report_path = out / "check.json"
        report_path.write_text(json.dumps(self.to_dict(), indent=2))
        return manifest_path, report_path

    def to_dict(self) -> dict:
        return {
            "n_images": self.n_images,
            "n_patients": self.n_patients,
            "class_counts": self.class_counts,
            "images_per_patient": self.images_per_patient,
            "unreadable": [{"image": i, "reason": r} for i, r in self.unreadable],
            "missing_files": self.missing_files,
            "unlabelled": self.unlabelled,
            "unlisted_files": self.unlisted_files,
            "duplicate_groups": [g.to_dict() for g in self.duplicate_groups],
            "label_conflicts": len(self.label_conflicts),
            "problem_count": self.problem_count,
        }


@dataclass
class _Fingerprint:
    file_hash: str
    pixel_hash: str
    phash: int
    thumb: np.ndarray


def _fingerprint(path: Path) -> _Fingerprint:
    import imagehash
    from PIL import Image

    from osteolens.io import pixel_hash, read_radiograph

    pixels = read_radiograph(path).pixels
    image = Image.fromarray(np.round(pixels * 255).astype(np.uint8))
    thumb = np.asarray(image.resize((THUMB, THUMB), Image.Resampling.BILINEAR), dtype=np.float32).ravel()
    thumb = thumb - thumb.mean()
    norm = np.linalg.norm(thumb)
    return _Fingerprint(
        file_hash=file_sha256(path),
        pixel_hash=pixel_hash(pixels),
        phash=int(str(imagehash.phash(image)), 16),
        thumb=thumb / norm if norm > 0 else thumb,
    )


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


_KIND_RANK = {"exact-file": 0, "exact-pixels": 1, "near": 2}


def check_manifest(
    manifest: Manifest,
    *,
    image_dir: str | Path | None = None,
    near_hamming: int = 6,
    near_correlation: float = 0.995,
    jobs: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> DataCheckReport:
    """Check a manifest: counts, unreadable / missing / unlabelled images, duplicates.

    Args:
        manifest: the images to check.
        image_dir: if given, image files under it that the manifest does not list are
            reported as ``unlisted_files`` (images without labels).
        near_hamming: largest pHash Hamming distance for a near-duplicate candidate.
        near_correlation: smallest thumbnail correlation that confirms a near duplicate.
        jobs: threads reading images.
        progress: called with (done, total) after each image.
    """
    frame = manifest.frame
    paths = manifest.image_paths()
    missing = [img for img, p in zip(frame["image"], paths) if not p.is_file()]
    unlabelled = []
    if "label" in frame.columns:
        unlabelled = list(frame.loc[frame["label"].isna(), "image"])

    unlisted: list[str] = []
    if image_dir is not None:
        listed = {p.resolve() for p in paths}
        unlisted = [str(p) for p in list_images(Path(image_dir)) if p.resolve() not in listed]

    present = [i for i, p in enumerate(paths) if p.is_file()]
    fingerprints: dict[int, _Fingerprint] = {}
    unreadable: list[tuple[str, str]] = []

    def work(i: int) -> tuple[int, _Fingerprint | None, str | None]:
        try:
            return i, _fingerprint(paths[i]), None
        except OsteolensError as exc:
            return i, None, str(exc)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for done, (i, fp, error) in enumerate(pool.map(work, present), start=1):
            if fp is None:
                unreadable.append((frame["image"].iloc[i], error or "unreadable"))
            else:
                fingerprints[i] = fp
            if progress is not None:
                progress(done, len(present))

    groups, cluster_of = _duplicate_groups(frame, fingerprints, near_hamming, near_correlation)

    bad = set(missing) | set(unlabelled) | {img for img, _ in unreadable}
    clean = manifest.subset(~frame["image"].isin(bad))
    per_patient = frame.groupby("patient_id").size()
    return DataCheckReport(
        n_images=len(frame),
        n_patients=int(frame["patient_id"].nunique()),
        class_counts=dict(Counter(frame["label"].dropna())) if "label" in frame.columns else {},
        images_per_patient={
            "min": int(per_patient.min()),
            "median": float(per_patient.median()),
            "max": int(per_patient.max()),
        },
        unreadable=unreadable,
        missing_files=missing,
        unlabelled=unlabelled,
        unlisted_files=unlisted,
        duplicate_groups=groups,
        clean=clean,
        cluster_of=cluster_of,
    )


def _duplicate_groups(
    frame: pd.DataFrame, fps: dict[int, _Fingerprint], near_hamming: int, near_correlation: float
) -> tuple[list[DuplicateGroup], dict[str, str]]:
    index = sorted(fps)
    uf = _UnionFind(len(frame))
    link_kind: dict[tuple[int, int], str] = {}

    def link(i: int, j: int, kind: str) -> None:
        # a looser link between images already joined says nothing new about the cluster
        if uf.find(i) != uf.find(j):
            link_kind[(i, j)] = kind
            uf.union(i, j)

    for attr, kind in (("file_hash", "exact-file"), ("pixel_hash", "exact-pixels")):
        first: dict[str, int] = {}
        for i in index:
            key = getattr(fps[i], attr)
            if key in first:
                link(first[key], i, kind)
            else:
                first[key] = i

    if len(index) > 1:
        hashes = np.array([fps[i].phash for i in index], dtype=np.uint64)
        thumbs = np.stack([fps[i].thumb for i in index])
        xor = hashes[:, None] ^ hashes[None, :]
        hamming = np.unpackbits(xor.view(np.uint8).reshape(len(index), len(index), 8), axis=-1).sum(-1)
        corr = thumbs @ thumbs.T
        rows, cols = np.nonzero(np.triu((hamming <= near_hamming) & (corr >= near_correlation), k=1))
        for a, b in zip(rows, cols):
            link(index[a], index[b], "near")

    members: dict[int, list[int]] = {}
    for i in index:
        members.setdefault(uf.find(i), []).append(i)
    groups: list[DuplicateGroup] = []
    cluster_of: dict[str, str] = {}
    has_label = "label" in frame.columns
    for root, rows_ in members.items():
        if len(rows_) < 2:
            continue
        kinds = [k for (i, j), k in link_kind.items() if uf.find(i) == root]
        kind = max(kinds, key=_KIND_RANK.__getitem__) if kinds else "exact-file"
        images = [frame["image"].iloc[i] for i in rows_]
        groups.append(
            DuplicateGroup(
                images=images,
                patients=[frame["patient_id"].iloc[i] for i in rows_],
                labels=[frame["label"].iloc[i] or "" for i in rows_] if has_label else [],
                kind=kind,
            )
        )
        for image in images:
            cluster_of[image] = f"dup:{images[0]}"
    groups.sort(key=lambda g: g.images[0])
    return groups, cluster_of
