"""Run the detector's network (torch eager or ONNX Runtime) and decode its maps, with the test-time flip.

A backend maps normalised inputs ``(N, 1, H, W)`` to the three output maps as numpy arrays:
heatmap probabilities ``(N, h, w)`` (after the sigmoid), sub-cell centre offsets
``(N, 2, h, w)`` and corner offsets ``(N, 8, h, w)``, with ``h = H / stride``. The ONNX graph
(:func:`export_landmark_onnx`) holds the same network with the sigmoid inside, so
:class:`OnnxMaps` needs ONNX Runtime only, not torch;
:func:`osteolens.landmarks.bundle.check_landmark_graph` compares it with the torch network
before a bundle stores it.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from osteolens.errors import ModelError
from osteolens.landmarks.decode import MAX_SHIFT, Detection, PositionPrior, decode, unflip
from osteolens.landmarks.preprocess import normalise

OUTPUTS = ("heatmap", "offset", "corners")
"""Output names of the ONNX graph, in the order of a backend's maps."""

OPSET = 17
"""ONNX opset of the export (the one :mod:`osteolens.inference.runtime` uses for classifiers)."""

PARITY_TOLERANCE = 1e-3
"""Largest max-abs difference accepted between ONNX Runtime's and torch's maps (heatmap
probabilities, and offsets in output cells: 1e-3 cell is 0.004 input pixels at stride 4)."""


class TorchMaps:
    """The torch network in eval mode, on ``device``."""

    name = "torch"

    def __init__(self, model: Any, device: Any = "cpu") -> None:
        self.model, self.device, self.stride = model, device, int(model.stride)

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import torch

        self.model.eval()
        with torch.inference_mode():
            out = self.model(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).to(self.device))
            return (torch.sigmoid(out["heatmap"][:, 0]).float().cpu().numpy(), out["offset"].float().cpu().numpy(),
                    out["corners"].float().cpu().numpy())


class OnnxMaps:
    """An ONNX Runtime session of the exported graph (CPU; one session serves concurrent requests)."""

    name = "onnx"

    def __init__(self, graph: bytes, stride: int, threads: int | None = None) -> None:
        from osteolens.inference.session import OnnxBackend

        self.session = OnnxBackend(graph, threads).session
        self.stride = int(stride)

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        heat, offset, corners = self.session.run(list(OUTPUTS), {"images": np.ascontiguousarray(images, dtype=np.float32)})
        return heat[:, 0], offset, corners


def export_landmark_onnx(model: Any, input_size: tuple[int, int]) -> bytes:
    """The network as one ONNX graph: input ``images [N, 1, H, W]`` (dynamic batch), outputs
    :data:`OUTPUTS` (the heatmap after its sigmoid). TorchScript-based exporter at :data:`OPSET`,
    as for classifiers.

    Raises:
        ModelError: the exporter failed.
    """
    import warnings

    import torch

    class _Maps(torch.nn.Module):
        def __init__(self, net: Any) -> None:
            super().__init__()
            self.net = net

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            out = self.net(images)
            return torch.sigmoid(out["heatmap"]), out["offset"], out["corners"]

    wrapper = _Maps(model).eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter warns about its own deprecation
        try:
            torch.onnx.export(wrapper, (torch.zeros(1, 1, *input_size),), buffer, input_names=["images"],
                              output_names=list(OUTPUTS), dynamic_axes={k: {0: "batch"} for k in ("images", *OUTPUTS)},
                              opset_version=OPSET, dynamo=False, do_constant_folding=True)
        except Exception as exc:  # exporter errors come in many types (SymbolicValueError, RuntimeError ...)
            raise ModelError(f"ONNX export of the landmark detector failed ({type(exc).__name__}: {exc}). "
                             "Fix: use --backend torch.") from exc
    return buffer.getvalue()


def landmark_onnx_difference(model: Any, graph: bytes, input_size: tuple[int, int], seed: int = 0,
                             batch: int = 2) -> float:
    """Max abs difference between the graph's and the torch network's maps on random inputs in [-1, 1)."""
    images = np.random.default_rng(seed).uniform(-1.0, 1.0, (batch, 1, *input_size)).astype(np.float32)
    reference = TorchMaps(model)(images)
    candidate = OnnxMaps(graph, model.stride, threads=1)(images)
    if any(a.shape != b.shape for a, b in zip(reference, candidate, strict=True)):
        return float("inf")
    return max(float(np.max(np.abs(a - b))) for a, b in zip(reference, candidate, strict=True))


def predict_prepared(maps: Any, images: list[np.ndarray], scales: list[tuple[float, float]], n: int,
                     batch_size: int = 8, flip: bool = True, prior: PositionPrior | None = None,
                     max_shift: int = MAX_SHIFT) -> list[Detection]:
    """Detections (corners in original pixels, confidences) of resized [0, 1] images.

    ``maps``: a backend (:class:`TorchMaps`, :class:`OnnxMaps`). ``flip``: test-time flip, the
    maps of the image and of its mirror image (brought back by
    :func:`osteolens.landmarks.decode.unflip`) averaged before decoding; both go through the
    backend in one call. ``prior`` and ``max_shift``: the counting
    (:func:`osteolens.landmarks.decode.count_levels`).
    """
    found = []
    for start in range(0, len(images), batch_size):
        batch = np.stack([normalise(x) for x in images[start:start + batch_size]])[:, None]
        count = len(batch)
        outputs = maps(np.concatenate([batch, batch[..., ::-1]]) if flip else batch)
        for k in range(count):
            one = [m[k] for m in outputs]
            if flip:
                one = [(a + b) / 2 for a, b in zip(one, unflip(*(m[count + k] for m in outputs)), strict=True)]
            found.append(decode(*one, maps.stride, n, prior, max_shift).scaled(*scales[start + k]))
    return found
