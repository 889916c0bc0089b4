"""The landmark bundle: a folder or ``.zip`` with ``bundle.json`` (``task: landmarks``), ``fold0.safetensors``
and, when exported, ``model.onnx``.

It follows the layout of :mod:`osteolens.inference.bundle` (same file names, sha256 of every
file, atomic writes, folder or zip, signatures, all through that module's helpers) with the
fields of a landmark detector: ``architecture`` (:data:`osteolens.landmarks.model.ARCHITECTURE_KEYS`
only; the backbone is rebuilt with no weights, so a bundle cannot make timm read a file),
``preprocessing``, ``input_size`` ``[H, W]``, ``stride``, ``labels`` (the vertebra levels,
cranial first), ``view`` (``AP`` or ``lateral``), ``position_prior``
(:class:`~osteolens.landmarks.decode.PositionPrior`, or null), ``landmark_names``
(``<level>.<corner>`` in ``point_index`` order), ``training_summary``, ``metrics`` and, with
the graph, ``onnx`` and ``onnx_parity`` (the check against torch that let it in). Loading
verifies every hash before building anything and never unpickles. The classification
:class:`~osteolens.inference.Predictor` does not read these bundles.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

from osteolens.errors import BundleError, ModelError
from osteolens.inference.bundle import (FORMAT_VERSION, MANIFEST_NAME, ONNX_NAME, _check_hashes, _read_raw, _sha256,
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
        path: the bundle folder or zip.
        manifest: the parsed ``bundle.json``.
        weights: the verified safetensors bytes of the network.
        onnx_model: the verified ONNX graph, or None when the bundle has none.
    """

    path: Path
    manifest: dict[str, Any]
    weights: bytes = field(repr=False)
    onnx_model: bytes | None = field(default=None, repr=False)

    @cached_property
    def model(self) -> Any:
        """The torch network in eval mode, built on first use (a bundle run through its ONNX
        graph never imports torch).

        Raises:
            BundleError: the weights do not fit the architecture.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load as load_tensors

        from osteolens.landmarks.model import build_from_config

        try:
            model = build_from_config(self.manifest["architecture"])
            model.load_state_dict(load_tensors(self.weights), strict=True)
        except (ModelError, SafetensorError, RuntimeError, KeyError) as exc:
            raise BundleError(f"{self.path}: the weights do not fit the architecture {self.manifest['architecture']!r} "
                              f"({str(exc).splitlines()[0]}). Fix: re-export the bundle.") from exc
        return model.eval()

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
    def name(self) -> str:
        """A short human name: the bundle folder / zip stem (as a classifier bundle's)."""
        return self.path.stem if self.path.suffix == ".zip" else self.path.name

    @property
    def description(self) -> str:
        """The bundle's folder name and the start of its digest, e.g. ``bundle (sha256 1a2b3c4d5e6f)``."""
        return f"{self.name} (sha256 {self.digest[:12]})"

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
    onnx_model: bytes | None = None,
) -> Path:
    """Write a landmark bundle, a folder or (path ending ``.zip``) one zip file; an earlier bundle
    there is replaced. ``onnx_model``: the exported graph, stored after
    :func:`check_landmark_graph` compared it with ``model``.

    Raises:
        BundleError: a folder that holds something else, or a graph that is not this network.
    """
    from osteolens import __version__

    path = Path(path)
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
    blobs = {WEIGHTS_NAME: blob}
    if onnx_model is not None:
        _attach_graph(manifest, blobs, model, onnx_model, tuple(input_size), path)
    _store(path, manifest, blobs)
    return path


def _attach_graph(manifest: dict[str, Any], blobs: dict[str, bytes], model: Any, graph: bytes,
                  input_size: tuple[int, int], where: Path, tolerance: float | None = None) -> None:
    """Add the checked graph to a bundle's files: ``blobs``, ``files``, ``onnx`` and ``onnx_parity``."""
    manifest["onnx_parity"] = check_landmark_graph(model, graph, input_size, where, tolerance)
    manifest["onnx"], blobs[ONNX_NAME] = ONNX_NAME, graph
    manifest["files"] = {name: _sha256(data) for name, data in sorted(blobs.items())}


def check_landmark_graph(model: Any, graph: bytes, input_size: tuple[int, int], where: Path,
                         tolerance: float | None = None) -> dict[str, Any]:
    """Compare an ONNX graph's maps with the torch network's on random inputs
    (:func:`osteolens.landmarks.runtime.landmark_onnx_difference`).

    Returns:
        ``{"max_abs_difference", "tolerance", "inputs"}``, as stored in ``bundle.json``.

    Raises:
        BundleError: the graph does not load or run, or its maps differ by more than ``tolerance``.
    """
    from osteolens.landmarks.runtime import PARITY_TOLERANCE, landmark_onnx_difference

    tolerance = PARITY_TOLERANCE if tolerance is None else float(tolerance)
    fix = "Fix: attach the graph exported from this bundle ('osteolens export-onnx BUNDLE')."
    try:
        difference = landmark_onnx_difference(model, graph, input_size)
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidArgument types; ModelError when it cannot load
        reason = (str(exc.__cause__ or exc).splitlines() or [""])[0]
        raise BundleError(f"{where}: the ONNX graph does not run as this landmark detector ({reason}). {fix}") from exc
    if not difference <= tolerance:
        raise BundleError(f"{where}: the ONNX graph's maps differ from the detector's by {difference:.2e} "
                          f"(> tolerance {tolerance:.0e}): it is another model or a broken export. {fix}")
    return {"max_abs_difference": difference, "tolerance": tolerance,
            "inputs": {"seed": 0, "images": [2, 1, *input_size], "images_distribution": "uniform [-1, 1)"}}


def add_landmark_onnx(path: str | Path, onnx_model: bytes | None = None,
                      tolerance: float | None = None) -> tuple[bytes, dict[str, Any]]:
    """Store (or replace) the ONNX graph in an existing landmark bundle after :func:`check_landmark_graph`;
    without ``onnx_model``, the graph exported from the bundle's own network
    (:func:`osteolens.landmarks.runtime.export_landmark_onnx`). The bundle changes, so a signature
    is dropped: sign it again (``osteolens bundle sign``).

    Returns:
        The stored graph and the parity check stored as ``onnx_parity``.

    Raises:
        BundleError: the bundle does not load, or the graph is not its network.
    """
    path = Path(path)
    bundle = load_landmark_bundle(path)
    if onnx_model is None:
        from osteolens.landmarks.runtime import export_landmark_onnx

        onnx_model = export_landmark_onnx(bundle.model, bundle.input_size)
    manifest, blobs = dict(bundle.manifest), {WEIGHTS_NAME: bundle.weights}
    _attach_graph(manifest, blobs, bundle.model, onnx_model, bundle.input_size, path, tolerance)
    _store(path, manifest, blobs)
    return onnx_model, manifest["onnx_parity"]


def load_landmark_bundle(path: str | Path, trusted_key: Any = None, lazy: bool = False) -> LandmarkBundle:
    """Load and verify a landmark bundle folder or zip.

    Args:
        path: the bundle folder or zip.
        trusted_key: an Ed25519 public key (PEM path or key): the bundle must then be signed by
            it (``osteolens bundle sign``, :mod:`osteolens.inference.signing`).
        lazy: verify the files now but build the torch network on first use of ``model``
            (a detector that runs the bundle's ONNX graph never imports torch).

    Raises:
        BundleError: missing, not a landmark bundle, unsigned or not signed by ``trusted_key``,
            altered (signature or hash), or weights that do not fit.
    """
    path = Path(path)
    if not path.exists():
        raise BundleError(f"{path}: no such landmark bundle. Fix: pass the folder (or .zip) written by "
                          "'osteolens landmarks train'.")
    manifest, blobs, signature = _read_raw(path, any_task=True)
    if manifest.get("task") != TASK:
        raise BundleError(f"{path}: a bundle of task {manifest.get('task')!r}, not '{TASK}'. Fix: pass a landmark bundle "
                          "('osteolens landmarks train'); classifiers go to 'osteolens predict'.")
    missing = [k for k in ("architecture", "input_size", "stride", "labels") if k not in manifest]
    if missing:
        raise BundleError(f"{path}: {MANIFEST_NAME} lacks {', '.join(missing)}. Fix: re-export the bundle.")
    if trusted_key is not None:
        from osteolens.inference.signing import check_signature

        check_signature(manifest, signature, trusted_key, path)
    _check_hashes(manifest, blobs, path)
    graph = blobs.get(manifest["onnx"]) if manifest.get("onnx") else None
    bundle = LandmarkBundle(path=path, manifest=manifest, weights=blobs[manifest["folds"][0]], onnx_model=graph)
    if not lazy:
        bundle.model  # noqa: B018 (build now, so that weights that do not fit fail here)
    return bundle
