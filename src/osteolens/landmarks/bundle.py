"""The landmark bundle: a folder with ``bundle.json`` (``task: landmarks``) and ``fold0.safetensors``.

It follows the layout of :mod:`osteolens.inference.bundle` (same file names, sha256 of every
file, atomic writes through its ``_store``) with the fields of a landmark detector:
``architecture`` (:data:`osteolens.landmarks.model.ARCHITECTURE_KEYS` only; the backbone is
rebuilt with no weights, so a bundle cannot make timm read a file), ``preprocessing``,
``input_size`` ``[H, W]``, ``stride``, ``labels``
(the vertebra levels, cranial first), ``view`` (``AP`` or ``lateral``), ``position_prior``
(:class:`~osteolens.landmarks.decode.PositionPrior`, or null),
``landmark_names`` (``<level>.<corner>`` in ``point_index`` order), ``training_summary`` and
``metrics``. Loading verifies every hash before building anything and never unpickles.
The classification :class:`~osteolens.inference.Predictor` does not read these bundles.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from osteolens.errors import BundleError, ModelError
from osteolens.inference.bundle import (FORMAT_VERSION, MANIFEST_NAME, SIGNATURE_NAME, _safe_member, _sha256,
                                       _state_bytes, _store, files_digest)
from osteolens.landmarks.decode import PositionPrior
from osteolens.landmarks.names import landmark_names
from osteolens.landmarks.preprocess import PREPROCESSING

TASK = "landmarks"
WEIGHTS_NAME = "fold0.safetensors"


@dataclass
class LandmarkBundle:
    """A loaded, verified landmark bundle.

    Attributes:
        path: the bundle folder.
        manifest: the parsed ``bundle.json``.
        model: the network in eval mode.
    """

    path: Path
    manifest: dict[str, Any]
    model: Any

    @property
    def input_size(self) -> tuple[int, int]:
        """``(H, W)`` of the network input."""
        h, w = self.manifest["input_size"]
        return int(h), int(w)

    @property
    def vertebrae(self) -> list[str]:
        """Vertebra levels, cranial first."""
        return [str(v) for v in self.manifest["labels"]]

    @property
    def view(self) -> str:
        """The radiographs' view (``AP`` or ``lateral``); bundles written before it was recorded are AP."""
        return str(self.manifest.get("view", "AP"))

    @property
    def position_prior(self) -> PositionPrior | None:
        """Where the first and last vertebra lay in the training radiographs (counting); None if not recorded."""
        data = self.manifest.get("position_prior")
        return PositionPrior.from_dict(data) if data else None

    @property
    def digest(self) -> str:
        """sha256 of the weight files' hashes, as classifier bundles compute it (:func:`files_digest`)."""
        return files_digest(self.manifest["files"])

    @property
    def description(self) -> str:
        """The bundle's folder name and the start of its digest, e.g. ``bundle (sha256 1a2b3c4d5e6f)``."""
        return f"{self.path.name} (sha256 {self.digest[:12]})"

    @property
    def stride(self) -> int:
        """Input pixels per output cell."""
        return int(self.manifest["stride"])


def write_landmark_bundle(
    path: str | Path,
    model: Any,
    input_size: Sequence[int],
    vertebrae: Sequence[str],
    view: str = "AP",
    position_prior: PositionPrior | None = None,
    training_summary: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> Path:
    """Write a landmark bundle folder (created; an earlier bundle there is replaced).

    Raises:
        BundleError: a ``.zip`` path, or a folder that holds something else.
    """
    from osteolens import __version__

    path = Path(path)
    if path.suffix == ".zip":
        raise BundleError(f"{path}: landmark bundles are folders. Fix: give a folder path without .zip.")
    blob = _state_bytes(model)
    manifest = {
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "osteolens_version": __version__,
        "task": TASK,
        "architecture": dict(model.config),
        "preprocessing": PREPROCESSING,
        "input_size": [int(v) for v in input_size],
        "stride": int(model.stride),
        "labels": [str(v) for v in vertebrae],
        "view": view,
        "position_prior": position_prior.to_dict() if position_prior is not None else None,
        "landmark_names": landmark_names(vertebrae),
        "pretrained_weights": getattr(model, "weights_info", None),
        "training_summary": json.loads(json.dumps(dict(training_summary or {}))),
        "metrics": json.loads(json.dumps(dict(metrics or {}))),
        "folds": [WEIGHTS_NAME],
        "files": {WEIGHTS_NAME: _sha256(blob)},
    }
    _store(path, manifest, {WEIGHTS_NAME: blob})
    return path


def load_landmark_bundle(path: str | Path, trusted_key: Any = None) -> LandmarkBundle:
    """Load and verify a landmark bundle.

    Args:
        path: the bundle folder.
        trusted_key: an Ed25519 public key (PEM path or key): the bundle must then be signed by
            it (``osteolens bundle sign``, :mod:`osteolens.inference.signing`).

    Raises:
        BundleError: missing, not a landmark bundle, unsigned or not signed by ``trusted_key``,
            altered (signature or hash), or weights that do not fit.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as load_tensors

    from osteolens.landmarks.model import build_from_config

    path = Path(path)
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BundleError(f"{path}: no {MANIFEST_NAME} here. Fix: pass the folder written by 'osteolens landmarks train'.")
    try:
        manifest = json.loads(manifest_path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{manifest_path}: not valid JSON ({exc}). Fix: re-export the bundle.") from exc
    if not isinstance(manifest, dict) or manifest.get("task") != TASK:
        task = manifest.get("task") if isinstance(manifest, dict) else None
        raise BundleError(f"{path}: a bundle of task {task!r}, not '{TASK}'. Fix: pass a landmark bundle "
                          "('osteolens landmarks train'); classifiers go to 'osteolens predict'.")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise BundleError(f"{path}: bundle format {manifest['format_version']} is newer than this osteolens reads. "
                          "Fix: upgrade osteolens.")
    missing = [k for k in ("architecture", "input_size", "stride", "labels", "files", "folds") if k not in manifest]
    if missing:
        raise BundleError(f"{manifest_path}: lacks {', '.join(missing)}. Fix: re-export the bundle.")
    if trusted_key is not None:
        from osteolens.inference.signing import check_signature

        signature = path / SIGNATURE_NAME
        check_signature(manifest, signature.read_bytes() if signature.is_file() else None, trusted_key, path)
    blobs = {}
    for name, expected in manifest["files"].items():
        member = path / _safe_member(name, path)
        if not member.is_file():
            raise BundleError(f"{member}: listed in {MANIFEST_NAME} but missing. Fix: re-export the bundle.")
        blobs[name] = member.read_bytes()
        if _sha256(blobs[name]) != expected:
            raise BundleError(f"{member}: sha256 differs from {MANIFEST_NAME} (altered or damaged). "
                              "Fix: copy or re-export the bundle.")
    try:
        model = build_from_config(manifest["architecture"])
        model.load_state_dict(load_tensors(blobs[manifest["folds"][0]]), strict=True)
    except (ModelError, SafetensorError, RuntimeError, KeyError) as exc:
        raise BundleError(f"{path}: the weights do not fit the architecture {manifest['architecture']!r} "
                          f"({str(exc).splitlines()[0]}). Fix: re-export the bundle.") from exc
    return LandmarkBundle(path=path, manifest=manifest, model=model.eval())
