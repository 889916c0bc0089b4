"""The model bundle: everything needed to replay a trained model, as safetensors + JSON.

A bundle is a directory (or a ``.zip`` of the same files) holding

* ``bundle.json``: format version, architecture (the exact ``create_model`` kwargs),
  preprocessing pipeline config, input size, task, labels, target and its scaling,
  covariate scaling, decision threshold, calibration, training summary, metrics, and the
  sha256 of every other file, and the test-time augmentation to replay (``"tta": {"hflip": true}``:
  average the raw outputs of the image and its horizontal flip; absent in older bundles);
* ``fold<k>.safetensors``: the weights of each cross-validation fold's model;
* optionally ``model.onnx``: the fold ensemble exported by :func:`osteolens.inference.runtime.export_onnx`,
  attached only when it matches the torch folds (``onnx_parity`` in ``bundle.json`` records the check);
* optionally ``bundle.sig``: a detached Ed25519 signature of ``bundle.json`` (:mod:`osteolens.inference.signing`).

Loading verifies every hash (and, given a trusted key, the signature) before anything is built
and never unpickles: weights are read with ``safetensors`` and the network is rebuilt with
``osteolens.models.create_model`` from an allow-listed set of architecture keys, so a bundle
cannot make timm read a file it names (``checkpoint_path``, ``pretrained_cfg_overlay``).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from osteolens.errors import BundleError, ModelError

#: Version of the bundle layout this code writes; loading refuses newer major versions.
FORMAT_VERSION = 1
MANIFEST_NAME = "bundle.json"
ONNX_NAME = "model.onnx"
CAM_ONNX_NAME = "cam.onnx"
#: Detached signature of ``bundle.json`` (not listed in ``files``: it signs that list).
SIGNATURE_NAME = "bundle.sig"
TASKS = ("binary", "multiclass", "ordinal", "regression")
#: Test-time augmentations a bundle may ask for (``bundle.json`` ``tta``).
TTA_KEYS = ("hflip",)
#: timm keyword arguments a bundle's architecture may carry besides ``create_model``'s own and the
#: osteolens backbone's parameters: regularisation only. Keys that name files or configs
#: (``checkpoint_path``, ``pretrained_cfg``, ``pretrained_cfg_overlay``, ``cache_dir`` ...) are refused.
TIMM_ARCHITECTURE_KEYS = ("drop_rate", "drop_path_rate", "drop_block_rate")
_MODEL_NAME = re.compile(r"[A-Za-z0-9_.]+")
_REQUIRED_KEYS = ("format_version", "architecture", "preprocessing", "input_size", "task", "labels", "files", "folds")


def files_digest(files: dict[str, str]) -> str:
    """sha256 of a manifest's file hashes (sorted by file name): one bundle's identity."""
    return hashlib.sha256("".join(files[name] for name in sorted(files)).encode()).hexdigest()


@dataclass
class Bundle:
    """A loaded, verified bundle.

    Attributes:
        path: where it was loaded from.
        manifest: the parsed ``bundle.json``.
        fold_weights: each fold's safetensors bytes (sha256 checked), by file name.
        onnx_model: the serialised ONNX ensemble when the bundle holds one, else None.
        cam_onnx: the Grad-CAM graph (:mod:`osteolens.inference.cam_graph`) when it holds one.
    """

    path: Path
    manifest: dict[str, Any]
    fold_weights: dict[str, bytes] = field(repr=False)
    onnx_model: bytes | None = field(default=None, repr=False)
    cam_onnx: bytes | None = field(default=None, repr=False)
    _models: list[Any] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def models(self) -> list[Any]:
        """One ``OsteoNet`` per fold, on CPU, in eval mode, built on first use (torch and timm are
        imported then: a bundle predicted and explained through its ONNX graphs never needs them)."""
        with self._lock:
            if self._models is None:
                self._models = _build_folds(self.manifest, self.fold_weights, self.path)
            return self._models

    @property
    def architecture(self) -> dict[str, Any]:
        """The ``create_model`` kwargs."""
        return self.manifest["architecture"]

    @property
    def preprocessing(self) -> list[dict[str, Any]]:
        """The ``osteolens.transforms`` pipeline config replayed before the model."""
        return self.manifest["preprocessing"]

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the network input."""
        height, width = self.manifest["input_size"]
        return int(height), int(width)

    @property
    def task(self) -> str:
        """binary, multiclass, ordinal or regression."""
        return self.manifest["task"]

    @property
    def labels(self) -> list[str]:
        """Class names in output order ([] for regression)."""
        return list(self.manifest["labels"])

    @property
    def views(self) -> list[str]:
        """Names of the views a sample is made of, in the network's order (one view: ``[]``)."""
        count = int(self.architecture.get("views", 1))
        if count == 1:
            return []
        names = [str(name) for name in self.manifest.get("views") or []]
        return names if len(names) == count else [f"view{k + 1}" for k in range(count)]

    @property
    def target(self) -> str | None:
        """Name of the regression target or label column."""
        return self.manifest.get("target")

    @property
    def target_scaling(self) -> dict[str, float] | None:
        """``{"mean", "std"}`` that turn the regression output back into target units."""
        return self.manifest.get("target_scaling")

    @property
    def tabular(self) -> list[str]:
        """Names of the covariates the model takes besides the image (e.g. ``sex``, ``age``)."""
        return list(self.architecture.get("tabular") or [])

    @property
    def tabular_scaling(self) -> dict[str, dict[str, float]]:
        """Per-covariate ``{"mean", "std"}`` used to standardise numeric covariates."""
        return dict(self.manifest.get("tabular_scaling") or {})

    @property
    def threshold(self) -> float | None:
        """Decision threshold on the positive-class probability (binary tasks)."""
        value = self.manifest.get("threshold")
        return None if value is None else float(value)

    @property
    def calibration(self) -> dict[str, Any] | None:
        """``Calibrator.to_dict()`` from ``osteolens.evaluation``, or None."""
        return self.manifest.get("calibration")

    @property
    def tta(self) -> dict[str, Any]:
        """Test-time augmentation: ``{"hflip": True}`` averages the raw outputs of the image and its
        horizontal flip; ``{}`` for none (and for bundles written before this field)."""
        return dict(self.manifest.get("tta") or {})

    @property
    def name(self) -> str:
        """A short human name: the bundle folder / zip stem."""
        return self.path.stem if self.path.suffix == ".zip" else self.path.name

    @property
    def digest(self) -> str:
        """sha256 of the weight files' hashes: identifies the exact model in outputs and logs."""
        return files_digest(self.manifest["files"])

    def model_card(self) -> dict[str, Any]:
        """What a clinician or auditor needs to know about the model (no weights, no hashes of data)."""
        keys = ("format_version", "created", "osteolens_version", "task", "labels", "target", "threshold",
                "input_size", "training_summary", "metrics")
        card = {key: self.manifest.get(key) for key in keys}
        card.update(
            name=self.name,
            digest=self.digest[:16],
            architecture=self.architecture.get("name"),
            covariates=self.tabular,
            views=self.views,
            folds=len(self.manifest["folds"]),
            calibrated=self.calibration is not None,
            preprocessing=[step.get("name") for step in self.preprocessing],
            onnx=self.onnx_model is not None,
            tta=sorted(key for key, on in self.tta.items() if on),
        )
        return card


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _state_bytes(model: Any) -> bytes:
    """Serialise a module's state dict with safetensors (copies break shared storage)."""
    from safetensors.torch import save

    tensors = {key: value.detach().cpu().contiguous().clone() for key, value in model.state_dict().items()}
    return save(tensors)


def _jsonable(value: Any, name: str) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise BundleError(f"write_bundle: field '{name}' is not JSON-serialisable ({exc}). "
                          "Fix: pass plain dicts, lists, numbers and strings.") from exc


def write_bundle(
    path: str | Path,
    *,
    models: Sequence[Any],
    preprocessing: list[dict[str, Any]],
    input_size: tuple[int, int] | Sequence[int],
    task: str,
    labels: Sequence[str],
    target: str | None = None,
    target_scaling: Mapping[str, float] | None = None,
    tabular_scaling: Mapping[str, Mapping[str, float]] | None = None,
    threshold: float | None = None,
    calibration: Mapping[str, Any] | None = None,
    training_summary: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    onnx_model: bytes | None = None,
    views: Sequence[str] | None = None,
    tta: Mapping[str, Any] | None = None,
) -> Path:
    """Write a bundle directory, or a zip when ``path`` ends with ``.zip``.

    Args:
        path: output directory (created; must be empty or absent) or ``*.zip`` file.
        models: one ``OsteoNet`` per fold; all must share the same ``config``.
        preprocessing: the ``Pipeline.to_config()`` list applied before the network.
        input_size: (height, width) fed to the network.
        task: binary, multiclass, ordinal or regression.
        labels: class names in output order (binary: [negative, positive]); [] for regression.
        target: the label / target column name.
        target_scaling: ``{"mean", "std"}``: regression output * std + mean = target units.
        tabular_scaling: ``{"age": {"mean", "std"}}`` for numeric covariates.
        threshold: decision threshold on the positive-class probability (binary).
        calibration: ``Calibrator.to_dict()`` fitted on out-of-fold predictions.
        training_summary: free-form JSON (epochs, folds, seed, data fingerprint ...).
        metrics: cross-validated metrics with intervals.
        onnx_model: serialised ONNX ensemble to store beside the weights, attached with
            :func:`add_onnx` (refused unless it reproduces the folds' outputs).
        views: names of the views of a multi-view model, in input order (e.g. ``["AP", "LAT"]``).
        tta: test-time augmentation the Predictor replays: ``{"hflip": True}`` averages the raw
            outputs of the image and its horizontal flip (as the run's ``tta_hflip`` predictions).

    Returns:
        The path written.

    Raises:
        BundleError: inconsistent arguments (no models, mixed architectures, bad task, an
            architecture key a bundle may not carry, an ONNX graph that differs from the folds ...).
    """
    from osteolens import __version__

    path = Path(path)
    if not models:
        raise BundleError("write_bundle: no models given. Fix: pass one trained model per fold.")
    configs = []
    for k, model in enumerate(models):
        config = getattr(model, "config", None)
        if not isinstance(config, dict):
            raise BundleError(f"write_bundle: model {k} has no 'config' dict. "
                              "Fix: build models with osteolens.models.create_model.")
        configs.append(_jsonable(config, f"models[{k}].config"))
    if any(config != configs[0] for config in configs[1:]):
        raise BundleError("write_bundle: the fold models have different architectures. "
                          "Fix: bundle only folds of one training run.")
    check_architecture(configs[0], path)
    if task not in TASKS:
        raise BundleError(f"write_bundle: unknown task {task!r}. Fix: use one of {', '.join(TASKS)}.")
    labels = [str(label) for label in labels]
    if task in ("binary", "multiclass", "ordinal") and len(labels) < 2:
        raise BundleError(f"write_bundle: task {task} needs at least two labels, got {labels}. "
                          "Fix: pass the class names in output order.")
    if task == "regression" and labels:
        raise BundleError("write_bundle: regression bundles take labels=[]. Fix: drop the labels.")
    view_count = int(configs[0].get("views", 1))
    view_names = [str(v) for v in views or [] if v is not None]
    if view_names and len(view_names) != view_count:
        raise BundleError(f"write_bundle: {len(view_names)} view names {view_names} for a {view_count}-view model. "
                          "Fix: name every view, in input order.")
    unknown = sorted(set(tta or {}) - set(TTA_KEYS))
    if unknown or not all(isinstance(on, bool) for on in (tta or {}).values()):
        raise BundleError(f"write_bundle: tta {dict(tta or {})} is not understood. "
                          f"Fix: pass {{name: true|false}} with names among {list(TTA_KEYS)}.")
    size = [int(v) for v in input_size]
    if len(size) != 2 or min(size) <= 0:
        raise BundleError(f"write_bundle: input_size must be (height, width), got {input_size!r}.")

    blobs: dict[str, bytes] = {f"fold{k}.safetensors": _state_bytes(model) for k, model in enumerate(models)}
    manifest = {
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "osteolens_version": __version__,
        "architecture": configs[0],
        "preprocessing": _jsonable(list(preprocessing), "preprocessing"),
        "input_size": size,
        "task": task,
        "labels": labels,
        "views": view_names or None,
        "tta": {key: bool(on) for key, on in tta.items()} if tta else None,
        "target": target,
        "target_scaling": _jsonable(dict(target_scaling), "target_scaling") if target_scaling else None,
        "tabular_scaling": _jsonable({k: dict(v) for k, v in tabular_scaling.items()}, "tabular_scaling")
        if tabular_scaling else None,
        "threshold": None if threshold is None else float(threshold),
        "calibration": _jsonable(dict(calibration), "calibration") if calibration else None,
        "training_summary": _jsonable(dict(training_summary), "training_summary") if training_summary else None,
        "metrics": _jsonable(dict(metrics), "metrics") if metrics else None,
        "folds": [f"fold{k}.safetensors" for k in range(len(models))],
        "onnx": None,
        "files": {name: _sha256(data) for name, data in sorted(blobs.items())},
    }
    _store(path, manifest, blobs)
    if onnx_model is not None:
        try:
            add_onnx(path, onnx_model)
        except BundleError:  # nothing is left behind when the graph is refused
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
            raise
    return path


def _store(path: Path, manifest: dict[str, Any], blobs: Mapping[str, bytes]) -> None:
    """Write the files atomically enough: to a temporary sibling, then moved into place."""
    import io

    from osteolens.io._files import write_atomic

    text = json.dumps(manifest, indent=2, sort_keys=False) + "\n"
    if path.suffix == ".zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(MANIFEST_NAME, text)
            for name, data in blobs.items():
                archive.writestr(name, data)
        write_atomic(path, buffer.getvalue())
        return
    if path.exists() and (not path.is_dir() or any(path.iterdir())) and not (path / MANIFEST_NAME).exists():
        raise BundleError(f"{path}: exists and is not an empty folder or an earlier bundle. "
                          "Fix: choose a new output path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        for name, data in blobs.items():
            write_atomic(tmp / name, data)
        write_atomic(tmp / MANIFEST_NAME, text)
        if path.exists():
            shutil.rmtree(path)
        tmp.replace(path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _safe_member(name: str, where: Path) -> str:
    """Refuse file names that could escape the bundle (absolute, ``..``, nested)."""
    pure = PurePosixPath(name)
    if pure.is_absolute() or len(pure.parts) != 1 or pure.name in ("", ".", ".."):
        raise BundleError(f"{where}: bundle.json lists an unsafe file name {name!r}. "
                          "Fix: the bundle was tampered with; re-export it.")
    return pure.name


def _read_raw(path: Path, any_task: bool = False) -> tuple[dict[str, Any], dict[str, bytes], bytes | None]:
    """Read ``bundle.json``, the bytes of every file it lists and the signature (None when
    unsigned), from a folder or a zip. ``any_task``: also a landmark bundle (signing and
    verifying need only the file list)."""
    if not path.exists():
        raise BundleError(f"{path}: no such model bundle. Fix: check the path, or train one with "
                          "'osteolens train' / write one with osteolens.inference.write_bundle.")
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise BundleError(f"{path}: not a bundle (neither a folder nor a zip archive). "
                              "Fix: pass the bundle folder or its .zip.")
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
                if MANIFEST_NAME not in names:
                    raise BundleError(f"{path}: the zip has no {MANIFEST_NAME}. Fix: pass a bundle written by write_bundle.")
                manifest = _parse_manifest(archive.read(MANIFEST_NAME), path, any_task)
                blobs = {}
                for name in manifest["files"]:
                    member = _safe_member(name, path)
                    if member not in names:
                        raise BundleError(f"{path}: file '{member}' listed in {MANIFEST_NAME} is missing. "
                                          "Fix: re-export the bundle.")
                    blobs[member] = archive.read(member)
                signature = archive.read(SIGNATURE_NAME) if SIGNATURE_NAME in names else None
        except (zipfile.BadZipFile, OSError) as exc:
            raise BundleError(f"{path}: the zip archive is damaged ({exc}). Fix: copy the bundle again.") from exc
        return manifest, blobs, signature
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BundleError(f"{path}: no {MANIFEST_NAME} in this folder. Fix: pass a bundle folder written by write_bundle.")
    manifest = _parse_manifest(manifest_path.read_bytes(), manifest_path, any_task)
    blobs = {}
    for name in manifest["files"]:
        member = path / _safe_member(name, path)
        if not member.is_file():
            raise BundleError(f"{member}: listed in {MANIFEST_NAME} but missing. Fix: re-export the bundle.")
        blobs[member.name] = member.read_bytes()
    signature = path / SIGNATURE_NAME
    return manifest, blobs, signature.read_bytes() if signature.is_file() else None


def bundle_task(path: str | Path) -> str | None:
    """The ``task`` in a bundle's ``bundle.json`` (folder or zip); None when it cannot be read, which
    the bundle's loader then explains."""
    path = Path(path)
    try:
        if path.is_file():
            with zipfile.ZipFile(path) as archive:
                data = archive.read(MANIFEST_NAME)
        else:
            data = (path / MANIFEST_NAME).read_bytes()
        task = json.loads(data).get("task")
    except (OSError, ValueError, KeyError, AttributeError, zipfile.BadZipFile):  # no manifest, not JSON, not an object
        return None
    return str(task) if task is not None else None


def _parse_manifest(data: bytes, where: Path, any_task: bool = False) -> dict[str, Any]:
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{where}: {MANIFEST_NAME} is not valid JSON ({exc}). Fix: re-export the bundle.") from exc
    if not isinstance(manifest, dict):
        raise BundleError(f"{where}: {MANIFEST_NAME} must hold a JSON object.")
    version = manifest.get("format_version")
    if not isinstance(version, int):
        raise BundleError(f"{where}: {MANIFEST_NAME} has no integer 'format_version'. Fix: re-export the bundle.")
    if version > FORMAT_VERSION:
        raise BundleError(f"{where}: bundle format version {version} is newer than this osteolens reads "
                          f"({FORMAT_VERSION}). Fix: upgrade osteolens.")
    if manifest.get("task") == "landmarks" and not any_task:
        raise BundleError(f"{where}: is a vertebral landmark detector, not an image classifier or regressor. "
                          "Fix: use 'osteolens landmarks predict IMAGES --model BUNDLE' (osteolens.landmarks).")
    missing = [key for key in (("files", "folds") if any_task else _REQUIRED_KEYS) if key not in manifest]
    if missing:
        raise BundleError(f"{where}: {MANIFEST_NAME} lacks {', '.join(missing)}. Fix: re-export the bundle.")
    if manifest.get("task") not in TASKS and not any_task:
        raise BundleError(f"{where}: unknown task {manifest['task']!r}; this osteolens knows {', '.join(TASKS)}. "
                          "Fix: upgrade osteolens.")
    unknown_tta = sorted(set(manifest.get("tta") or {}) - set(TTA_KEYS))
    if unknown_tta:
        raise BundleError(f"{where}: the bundle asks for test-time augmentation {unknown_tta}, which this osteolens "
                          f"cannot replay (it knows {list(TTA_KEYS)}). Fix: upgrade osteolens.")
    if not isinstance(manifest["files"], dict) or not manifest["folds"]:
        raise BundleError(f"{where}: {MANIFEST_NAME} lists no weight files. Fix: re-export the bundle.")
    for name in manifest["folds"]:
        if name not in manifest["files"]:
            raise BundleError(f"{where}: fold file '{name}' has no sha256 in 'files'. Fix: re-export the bundle.")
    return manifest


def allowed_architecture_keys(name: str) -> set[str]:
    """The ``architecture`` keys a bundle of backbone ``name`` may carry: :func:`create_model`'s own
    arguments, the parameters of osteolens' backbone ``name`` (``simple_cnn``: ``conv_layers``,
    ``filters``, ``dense_units``) or, for a timm backbone, :data:`TIMM_ARCHITECTURE_KEYS`."""
    from osteolens.models import create_model
    from osteolens.models.registry import get_builder

    own = {p.name for p in inspect.signature(create_model).parameters.values() if p.kind is not p.VAR_KEYWORD}
    builder = get_builder(name)
    family = set(TIMM_ARCHITECTURE_KEYS) if builder is None else set(inspect.signature(builder).parameters) - {"in_chans"}
    return own | family


def check_architecture(architecture: Mapping[str, Any], where: Path) -> None:
    """Refuse an architecture whose name is not a plain model name or that carries a key outside
    :func:`allowed_architecture_keys` (keys such as ``checkpoint_path`` would make timm read files).

    Raises:
        BundleError: naming the bundle, the keys and the fix.
    """
    if not isinstance(architecture, Mapping):
        raise BundleError(f"{where}: {MANIFEST_NAME} 'architecture' must be a JSON object. Fix: re-export the bundle.")
    name = architecture.get("name")
    if not isinstance(name, str) or not _MODEL_NAME.fullmatch(name):
        raise BundleError(f"{where}: {MANIFEST_NAME} names architecture {name!r}, not a plain osteolens or timm model "
                          "name (hub, URL and folder references are refused). Fix: re-export the bundle with osteolens.")
    allowed = allowed_architecture_keys(name)
    unknown = sorted(set(architecture) - allowed)
    if unknown:
        raise BundleError(f"{where}: {MANIFEST_NAME} 'architecture' holds key(s) {unknown} that osteolens never writes "
                          f"for {name!r} and refuses to pass to the model builder (they could make it read files). "
                          f"Fix: delete them from 'architecture' or re-export the bundle; allowed keys: {sorted(allowed)}.")


def _build_model(architecture: dict[str, Any], where: Path) -> Any:
    from osteolens.errors import OsteolensError

    try:
        from osteolens.models import create_model
    except ImportError as exc:
        raise BundleError(f"{where}: osteolens.models is unavailable ({exc}).") from exc
    try:
        # Bundles written before covariate fusion had a choice appended covariates to the head.
        legacy = {"fusion": "concat"} if architecture.get("tabular") and "fusion" not in architecture else {}
        return create_model(**{**architecture, **legacy, "pretrained": False, "weights": None})
    except (OsteolensError, TypeError, ValueError, RuntimeError) as exc:
        raise BundleError(f"{where}: cannot rebuild architecture {architecture.get('name')!r} ({exc}). "
                          "Fix: use the osteolens version that trained it.") from exc


def _check_hashes(manifest: dict[str, Any], blobs: Mapping[str, bytes], where: Path) -> None:
    for name, expected in manifest["files"].items():
        if _sha256(blobs[name]) != expected:
            raise BundleError(f"{where}: '{name}' is corrupt (sha256 differs from {MANIFEST_NAME}). "
                              "Fix: copy or re-export the bundle.")


def _build_folds(manifest: dict[str, Any], blobs: Mapping[str, bytes], path: Path) -> list[Any]:
    """The fold networks: the allow-listed architecture rebuilt, the weights loaded strictly."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_tensors

    check_architecture(manifest["architecture"], path)
    models = []
    for name in manifest["folds"]:
        model = _build_model(manifest["architecture"], path)
        try:
            state = load_tensors(blobs[name])
            model.load_state_dict(state, strict=True)
        except (SafetensorError, RuntimeError) as exc:
            raise BundleError(f"{path}: '{name}' does not fit architecture {manifest['architecture'].get('name')!r} "
                              f"({str(exc).splitlines()[0]}). Fix: re-export the bundle.") from exc
        models.append(model.eval())
    return models


def _load(path: Path, trusted_key: Any, lazy: bool = False) -> tuple[Bundle, dict[str, bytes]]:
    manifest, blobs, signature = _read_raw(path)
    if trusted_key is not None:
        from osteolens.inference.signing import check_signature

        check_signature(manifest, signature, trusted_key, path)
    _check_hashes(manifest, blobs, path)
    graphs = {key: blobs[manifest[key]] if manifest.get(key) else None for key in ("onnx", "cam_onnx")}
    bundle = Bundle(path=path, manifest=manifest, fold_weights={name: blobs[name] for name in manifest["folds"]},
                    onnx_model=graphs["onnx"], cam_onnx=graphs["cam_onnx"])
    if not lazy:
        bundle.models  # noqa: B018 (build now, so that a bundle that does not fit fails here)
    return bundle, blobs


def load_bundle(path: str | Path, trusted_key: Any = None, lazy: bool = False) -> Bundle:
    """Load and verify a bundle folder or zip.

    Every file listed in ``bundle.json`` must exist with the recorded sha256; the weights are
    read with ``safetensors`` (no pickle) into a network rebuilt from the stored architecture
    (allow-listed keys only, see :func:`check_architecture`), with strict key and shape checking.

    Args:
        path: the bundle folder or zip.
        trusted_key: an Ed25519 public key (PEM file path or key object): the bundle must then
            carry a valid signature by it (``osteolens bundle sign``); None accepts unsigned bundles.
        lazy: verify the files now but build the torch networks on first use of ``models``
            (a Predictor that runs the bundle's ONNX graphs then never imports torch).

    Raises:
        BundleError: missing, corrupt (hash mismatch, bad JSON, damaged zip), incompatible
            (newer format, unknown task or architecture, weights that do not fit) or, with
            ``trusted_key``, unsigned or not signed by that key.
    """
    return _load(Path(path), trusted_key, lazy)[0]


def check_onnx(bundle: Bundle, onnx_model: bytes, tolerance: float | None = None, seed: int = 0,
               batch: int = 2) -> dict[str, Any]:
    """Run ``onnx_model`` with ONNX Runtime and the bundle's torch folds on the same random inputs.

    Images are uniform in [0, 1) and covariates standard normal (``numpy.random.default_rng(seed)``).

    Returns:
        ``{"max_abs_difference", "tolerance", "inputs": {...}}``, as stored in ``bundle.json``.

    Raises:
        BundleError: the graph cannot run on the bundle's inputs, its outputs have another
            shape, or they differ from torch by more than ``tolerance``.
    """
    import numpy as np

    from osteolens.inference.runtime import PARITY_TOLERANCE, OnnxBackend, TorchBackend

    tolerance = PARITY_TOLERANCE if tolerance is None else float(tolerance)
    architecture = bundle.architecture
    views, n_tabular = int(architecture.get("views", 1)), len(bundle.tabular)
    sample = (int(architecture.get("in_chans", 1)), *bundle.input_size)
    shape = (batch, *sample) if views == 1 else (batch, views, *sample)
    generator = np.random.default_rng(seed)
    images = generator.random(shape, dtype=np.float32)
    tabular = generator.standard_normal((batch, n_tabular)).astype(np.float32) if n_tabular else None
    reference = TorchBackend(bundle.models, n_tabular > 0)(images, tabular)
    fix = "Fix: attach the graph exported from this bundle ('osteolens export-onnx BUNDLE')."
    try:
        backend = OnnxBackend(onnx_model, threads=1)
    except ModelError as exc:
        reason = str(exc.__cause__ or exc).splitlines()[0]
        raise BundleError(f"{bundle.path}: ONNX Runtime cannot load the graph to attach ({reason}). {fix}") from exc
    try:
        candidate = np.asarray(backend(images, tabular))
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidArgument types
        reason = (str(exc).splitlines() or [""])[0]
        raise BundleError(f"{bundle.path}: the ONNX graph does not run on this bundle's inputs "
                          f"({type(exc).__name__}: {reason}). {fix}") from exc
    if candidate.shape != reference.shape:
        raise BundleError(f"{bundle.path}: the ONNX graph outputs shape {list(candidate.shape)}, the bundle's folds "
                          f"{list(reference.shape)}: it is another model. {fix}")
    difference = float(np.max(np.abs(reference - candidate)))
    if not difference <= tolerance:
        raise BundleError(f"{bundle.path}: the ONNX graph differs from the bundle's torch folds by {difference:.2e} "
                          f"(> tolerance {tolerance:.0e}): it is another model or a broken export. {fix}")
    inputs = {"seed": seed, "images": list(shape), "images_distribution": "uniform [0, 1)",
              "tabular": [batch, n_tabular] if n_tabular else None}
    return {"max_abs_difference": difference, "tolerance": tolerance, "inputs": inputs}


def add_onnx(path: str | Path, onnx_model: bytes, tolerance: float | None = None) -> Path:
    """Store (or replace) the ONNX ensemble in an existing bundle after :func:`check_onnx`.

    ``bundle.json`` records the graph's sha256 and the parity result (``onnx_parity``). The
    bundle changes, so a signature is dropped: sign it again (``osteolens bundle sign``).

    Raises:
        BundleError: the bundle does not load, or the graph is not this bundle's model.
    """
    path = Path(path)
    bundle, blobs = _load(path, None)
    _replace_graph(path, bundle, blobs, "onnx", ONNX_NAME, onnx_model, check_onnx(bundle, onnx_model, tolerance))
    return path


def add_cam_onnx(path: str | Path, cam_model: bytes, tolerance: float | None = None) -> Path:
    """Store (or replace) the Grad-CAM graph (:func:`osteolens.inference.cam_graph.export_cam_onnx`)
    after :func:`~osteolens.inference.cam_graph.check_cam_onnx` compared its outputs and heat maps
    with the torch folds'; ``bundle.json`` records its sha256 and ``cam_onnx_parity``.

    Raises:
        BundleError: the bundle does not load, or the graph is not this bundle's model.
    """
    from osteolens.inference.cam_graph import CAM_TOLERANCE, check_cam_onnx

    path = Path(path)
    bundle, blobs = _load(path, None)
    parity = check_cam_onnx(bundle, cam_model, CAM_TOLERANCE if tolerance is None else tolerance)
    _replace_graph(path, bundle, blobs, "cam_onnx", CAM_ONNX_NAME, cam_model, parity)
    return path


def _replace_graph(path: Path, bundle: Bundle, blobs: dict[str, bytes], key: str, name: str, graph: bytes,
                   parity: dict[str, Any]) -> None:
    """Rewrite the bundle with ``graph`` stored as ``name``, named by ``manifest[key]`` with its parity."""
    manifest = dict(bundle.manifest)
    blobs[name] = graph
    manifest[key] = name
    manifest[f"{key}_parity"] = parity
    manifest["files"] = {file: _sha256(data) for file, data in sorted(blobs.items())}
    _store(path, manifest, blobs)


__all__ = ["FORMAT_VERSION", "Bundle", "add_cam_onnx", "add_onnx", "check_architecture", "check_onnx", "load_bundle", "write_bundle"]
