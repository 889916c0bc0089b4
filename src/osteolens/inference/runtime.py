"""Run a fold ensemble: torch eager or ONNX Runtime, and the ONNX export with its parity check.

Both backends return the raw outputs of every fold stacked as ``[F, N, K]`` (folds, images,
outputs), so post-processing (probabilities, averaging, calibration) is one numpy path
for both. The ONNX graph holds the whole ensemble: one ``session.run`` per batch, the
folds sharing ONNX Runtime's thread pool. :class:`FlipAveraged` wraps either backend for a
bundle's ``tta: {"hflip": true}``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from osteolens.errors import ModelError

#: ONNX opset used by :func:`export_onnx` (17: LayerNormalization and every op timm nets need).
OPSET = 17
#: Largest tolerated max-abs difference between ONNX Runtime and torch outputs.
PARITY_TOLERANCE = 1e-4


def default_threads() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class Ensemble(torch.nn.Module):
    """The fold models as one module: ``(images[, tabular]) -> [F, N, K]`` raw outputs."""

    def __init__(self, models: Sequence[torch.nn.Module], with_tabular: bool) -> None:
        super().__init__()
        self.models = torch.nn.ModuleList(models)
        self.with_tabular = with_tabular

    def forward(self, images: torch.Tensor, tabular: torch.Tensor | None = None) -> torch.Tensor:
        if self.with_tabular:
            return torch.stack([model(images, tabular) for model in self.models])
        return torch.stack([model(images) for model in self.models])


class TorchBackend:
    """Eager PyTorch on CPU (the fallback, and the reference for the parity check)."""

    name = "torch"

    def __init__(self, models: Sequence[torch.nn.Module], with_tabular: bool) -> None:
        self.ensemble = Ensemble(models, with_tabular).eval()

    def __call__(self, images: np.ndarray, tabular: np.ndarray | None = None) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
            t = None if tabular is None else torch.from_numpy(np.ascontiguousarray(tabular, dtype=np.float32))
            return self.ensemble(x, t).float().numpy()


class OnnxBackend:
    """ONNX Runtime ``InferenceSession`` (CPU), created once and shared by every request.

    ``InferenceSession.run`` is thread-safe, so one session serves concurrent requests.
    """

    name = "onnx"

    def __init__(self, model: bytes, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or default_threads())
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle worker threads sleep instead of spinning: on a CPU shared with other work (a
        # hospital server, a busy laptop) spinning threads slow everything down, measured 2x.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph types
            raise ModelError(f"ONNX Runtime cannot load the bundle's model.onnx ({exc}). "
                             "Fix: re-run 'osteolens export-onnx' or use --backend torch.") from exc
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, images: np.ndarray, tabular: np.ndarray | None = None) -> np.ndarray:
        feed: dict[str, Any] = {"images": np.ascontiguousarray(images, dtype=np.float32)}
        if "tabular" in self.inputs:
            feed["tabular"] = np.ascontiguousarray(tabular, dtype=np.float32)
        return self.session.run(None, feed)[0]


class FlipAveraged:
    """A backend whose raw outputs are the mean of those of the images and of their horizontal
    flips (the last axis, width, reversed; every view of a multi-view sample): the bundle's
    ``tta: {"hflip": true}``, as the training run's ``tta_hflip`` predictions. The images and
    their mirrors go through ``backend`` in one call of twice the batch."""

    def __init__(self, backend: OnnxBackend | TorchBackend) -> None:
        self.backend = backend
        self.name = backend.name

    def __call__(self, images: np.ndarray, tabular: np.ndarray | None = None) -> np.ndarray:
        images = np.asarray(images, dtype=np.float32)
        n = images.shape[0]
        both = np.concatenate([images, images[..., ::-1]])
        outputs = self.backend(both, None if tabular is None else np.concatenate([tabular, tabular]))
        return (outputs[:, :n] + outputs[:, n:]) / 2


def _sample_shape(input_size: tuple[int, int], in_chans: int, views: int) -> tuple[int, ...]:
    """One sample's network input: ``(C, H, W)``, or ``(V, C, H, W)`` for several views."""
    return (in_chans, *input_size) if views == 1 else (views, in_chans, *input_size)


def export_onnx(
    models: Sequence[torch.nn.Module], input_size: tuple[int, int], in_chans: int = 1, n_tabular: int = 0,
    views: int = 1,
) -> bytes:
    """Serialise the fold ensemble as one ONNX graph with a dynamic batch axis.

    Inputs ``images [N, C, H, W]`` (``[N, V, C, H, W]`` for ``views > 1``) and, with
    covariates, ``tabular [N, T]``; output ``outputs [F, N, K]``.
    Uses the TorchScript-based exporter (``dynamo=False``), which handles every timm
    backbone and ``simple_cnn`` at opset :data:`OPSET`.
    """
    import warnings

    with_tabular = n_tabular > 0
    ensemble = Ensemble(models, with_tabular).eval()
    images = torch.rand(1, *_sample_shape(input_size, in_chans, views))
    args: tuple = (images, torch.zeros(1, n_tabular)) if with_tabular else (images,)
    names = ["images", "tabular"] if with_tabular else ["images"]
    axes = {name: {0: "batch"} for name in names}
    axes["outputs"] = {1: "batch"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter warns about its own deprecation and traced control flow.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(ensemble, args, buffer, input_names=names, output_names=["outputs"],
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False, do_constant_folding=True)
        except Exception as exc:  # exporter errors come in many types (SymbolicValueError, RuntimeError ...)
            raise ModelError(f"ONNX export failed ({type(exc).__name__}: {exc}). Fix: use --backend torch.") from exc
    return buffer.getvalue()


def parity(
    models: Sequence[torch.nn.Module],
    model: bytes,
    input_size: tuple[int, int],
    in_chans: int = 1,
    n_tabular: int = 0,
    batch: int = 2,
    seed: int = 0,
    views: int = 1,
) -> float:
    """Max abs difference between ONNX Runtime and torch outputs on random inputs in [0, 1]."""
    generator = np.random.default_rng(seed)
    images = generator.random((batch, *_sample_shape(input_size, in_chans, views)), dtype=np.float32)
    tabular = generator.standard_normal((batch, n_tabular)).astype(np.float32) if n_tabular else None
    reference = TorchBackend(models, n_tabular > 0)(images, tabular)
    candidate = OnnxBackend(model, threads=1)(images, tabular)
    return float(np.max(np.abs(reference - candidate)))


def export_checked(
    models: Sequence[torch.nn.Module],
    input_size: tuple[int, int],
    in_chans: int = 1,
    n_tabular: int = 0,
    tolerance: float = PARITY_TOLERANCE,
    views: int = 1,
) -> tuple[bytes, float]:
    """:func:`export_onnx`, then refuse the graph unless :func:`parity` is within ``tolerance``.

    Returns:
        (the ONNX bytes, the measured max abs difference).
    """
    model = export_onnx(models, input_size, in_chans, n_tabular, views)
    difference = parity(models, model, input_size, in_chans, n_tabular, views=views)
    if not difference <= tolerance:
        raise ModelError(f"ONNX export differs from torch by {difference:.2e} (> {tolerance:.0e}). "
                         "Fix: use --backend torch for this model.")
    return model, difference
