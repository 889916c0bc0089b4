"""Run a fold ensemble: torch eager or ONNX Runtime, and the ONNX export with its parity check.

Both backends return the raw outputs of every fold stacked as ``[F, N, K]`` (folds, images,
outputs), so post-processing (probabilities, averaging, calibration) is one numpy path
for both. The ONNX graph holds the whole ensemble: one ``session.run`` per batch, the
folds sharing ONNX Runtime's thread pool. :class:`FlipAveraged` wraps either backend for a
bundle's ``tta: {"hflip": true}``. The torch-free parts live in :mod:`osteolens.inference.session`.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import torch

from osteolens.errors import ModelError
from osteolens.inference.session import FlipAveraged, OnnxBackend, default_threads  # noqa: F401 (re-exported)

#: ONNX opset used by :func:`export_onnx` (17: LayerNormalization and every op timm nets need).
OPSET = 17
#: Largest tolerated max-abs difference between ONNX Runtime and torch outputs.
PARITY_TOLERANCE = 1e-4


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
