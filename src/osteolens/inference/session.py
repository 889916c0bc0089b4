"""ONNX Runtime sessions for a fold ensemble, without torch.

:class:`OnnxBackend` runs ``model.onnx`` (raw outputs ``[F, N, K]``, as
:class:`osteolens.inference.runtime.TorchBackend`); :class:`FlipAveraged` wraps either backend
for a bundle's ``tta: {"hflip": true}``. Importing this module costs ONNX Runtime only, so a
Predictor that runs a bundle's graphs never loads torch.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from osteolens.errors import ModelError


def default_threads() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


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

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.name = backend.name

    def __call__(self, images: np.ndarray, tabular: np.ndarray | None = None) -> np.ndarray:
        images = np.asarray(images, dtype=np.float32)
        n = images.shape[0]
        both = np.concatenate([images, images[..., ::-1]])
        outputs = self.backend(both, None if tabular is None else np.concatenate([tabular, tabular]))
        return (outputs[:, :n] + outputs[:, n:]) / 2


__all__ = ["FlipAveraged", "OnnxBackend", "default_threads"]
