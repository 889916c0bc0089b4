"""Predict vertebral corners on radiographs, at each radiograph's own resolution.

The image is prepared as in training (:mod:`osteolens.landmarks.preprocess`), the network runs
through ONNX Runtime (the bundle's ``model.onnx``) or torch (:mod:`osteolens.landmarks.runtime`),
its maps are decoded (:mod:`osteolens.landmarks.decode`) in input pixels, and the corners are
mapped back to the original pixel grid through the stored per-axis scale. The table written
is the shared data's landmark format, ``image, vertebra, corner, point_index, x, y``, plus
``confidence`` (the vertebra's peak heatmap value), ``low_confidence`` and, per image,
``levels_uncertain`` (:attr:`~osteolens.landmarks.decode.Detection.levels_uncertain`): it reads straight
into ``osteolens morphometry --landmarks`` and ``osteolens landmarks evaluate``, and a person
can correct it by hand.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from osteolens.errors import ConfigError, OsteolensError
from osteolens.landmarks.bundle import LandmarkBundle, load_landmark_bundle
from osteolens.landmarks.decode import Detection
from osteolens.landmarks.preprocess import resize_stretch
from osteolens.morphometry.vertebra import CORNERS

if TYPE_CHECKING:
    from osteolens.io import Radiograph

COLUMNS = ["image", "vertebra", "corner", "point_index", "x", "y", "confidence", "low_confidence", "levels_uncertain"]


@dataclass
class SpinePrediction:
    """The corners found on one radiograph.

    Attributes:
        image: the image as named by the caller.
        vertebrae: level names, cranial first.
        detection: corners in original pixels and per-vertebra confidence.
        image_shape: ``(rows, columns)`` of the radiograph.
        seconds: wall time of reading, preparing, the network and decoding.
    """

    image: str
    vertebrae: list[str]
    detection: Detection
    image_shape: tuple[int, int]
    seconds: float

    def rows(self) -> list[dict[str, object]]:
        """One row per corner in the landmark-table format (see the module docstring)."""
        out = []
        low, uncertain = self.detection.low_confidence, self.detection.levels_uncertain
        for k, name in enumerate(self.vertebrae):
            for c, corner in enumerate(CORNERS):
                x, y = self.detection.corners[k, c]
                out.append({"image": self.image, "vertebra": name, "corner": corner, "point_index": 4 * k + c,
                            "x": round(float(x), 2), "y": round(float(y), 2),
                            "confidence": round(float(self.detection.confidence[k]), 4),
                            "low_confidence": bool(low[k]), "levels_uncertain": uncertain})
        return out


BACKENDS = ("onnx", "torch")


class LandmarkDetector:
    """A loaded landmark bundle, ready to predict.

    Args:
        bundle: a loaded bundle (:func:`osteolens.landmarks.bundle.load_landmark_bundle`).
        backend: ``onnx`` (ONNX Runtime on the bundle's ``model.onnx``; a bundle without one is
            exported and checked at load, which takes seconds: ``osteolens export-onnx`` stores
            it once) or ``torch``.
        threads: ONNX Runtime's threads (default: the cores this process may use).
        position_prior: count the vertebrae with the bundle's position prior (where the training
            radiographs had their first and last vertebra, :func:`~osteolens.landmarks.decode.count_levels`);
            False keeps the strongest peaks, for radiographs framed unlike the training images
            (a full-length spine, say).

    Raises:
        ConfigError: an unknown backend.
        BundleError: a graph exported at load that does not reproduce the network.
    """

    def __init__(self, bundle: LandmarkBundle, backend: str = "onnx", threads: int | None = None,
                 position_prior: bool = True) -> None:
        from osteolens.landmarks.runtime import OnnxMaps, TorchMaps

        if backend not in BACKENDS:
            raise ConfigError("--backend", f"unknown backend '{backend}'.", f"use one of {', '.join(BACKENDS)}.")
        self.bundle = bundle
        self.prior = bundle.position_prior if position_prior else None
        self.exported_at_load = backend == "onnx" and bundle.onnx_model is None
        if backend == "torch":
            self.maps: object = TorchMaps(bundle.model)
        else:
            graph = bundle.onnx_model
            if graph is None:
                from osteolens.landmarks.bundle import check_landmark_graph
                from osteolens.landmarks.runtime import export_landmark_onnx

                graph = export_landmark_onnx(bundle.model, bundle.input_size)
                check_landmark_graph(bundle.model, graph, bundle.input_size, bundle.path)
            self.maps = OnnxMaps(graph, bundle.stride, threads)
        self.model_info = {"name": bundle.name, "digest": bundle.digest[:16],
                           "architecture": bundle.manifest["architecture"].get("backbone"), "backend": backend}

    @classmethod
    def from_path(cls, path: str | Path, trusted_key: object = None, backend: str = "onnx",
                  threads: int | None = None, position_prior: bool = True) -> LandmarkDetector:
        """Load and verify the bundle at ``path`` (signed by ``trusted_key`` when one is given)."""
        return cls(load_landmark_bundle(path, trusted_key, lazy=True), backend, threads, position_prior)

    @property
    def backend(self) -> str:
        """``onnx`` or ``torch``: what runs the network."""
        return str(self.maps.name)  # type: ignore[attr-defined]

    def detect(self, pixels: np.ndarray) -> Detection:
        """Corners of an ``(H, W)`` image in [0, 1], in its own pixels."""
        from osteolens.landmarks.runtime import predict_prepared

        image, scale = resize_stretch(pixels, self.bundle.input_size)
        return predict_prepared(self.maps, [image], [scale], len(self.bundle.vertebrae), prior=self.prior)[0]

    def predict_radiograph(self, radiograph: Radiograph, name: str, started: float | None = None) -> SpinePrediction:
        """Find the corners of a read :class:`~osteolens.io.Radiograph` (``started``: when its reading began)."""
        start = time.perf_counter() if started is None else started
        found = self.detect(radiograph.pixels)
        return SpinePrediction(name, list(self.bundle.vertebrae), found, tuple(radiograph.pixels.shape),
                               time.perf_counter() - start)

    def predict_file(self, path: str | Path, name: str | None = None) -> SpinePrediction:
        """Read a radiograph (any format :func:`osteolens.io.read_radiograph` reads) and find its corners.

        Raises:
            RadiographReadError: the file cannot be read.
        """
        from osteolens.io import read_radiograph

        start = time.perf_counter()
        return self.predict_radiograph(read_radiograph(path), name if name is not None else str(path), start)


def iter_detections(detector: LandmarkDetector, paths: Iterable[str | Path], root: Path | None,
                    failures: list[tuple[str, str]]) -> Iterator[tuple[SpinePrediction, Radiograph]]:
    """Read each file once and find its corners, one file at a time: yields the prediction with
    its radiograph; a file that fails is appended to ``failures`` as ``(path, message)`` and the
    batch goes on. Each prediction is named by its path as given, or relative to ``root`` (the
    folder searched)."""
    from osteolens.io import read_radiograph

    for path in paths:
        try:
            name = Path(path).relative_to(root).as_posix() if root is not None else str(path)
            started = time.perf_counter()
            radiograph = read_radiograph(path)
            yield detector.predict_radiograph(radiograph, name, started), radiograph
        except OsteolensError as exc:
            failures.append((str(path), str(exc)))


def predict_files(detector: LandmarkDetector, paths: Iterable[str | Path],
                  root: Path | None = None) -> tuple[list[SpinePrediction], list[tuple[str, str]]]:
    """Predict every file (:func:`iter_detections`); returns the predictions and the ``(path, message)``
    of each file that failed."""
    failures: list[tuple[str, str]] = []
    return [prediction for prediction, _ in iter_detections(detector, paths, root, failures)], failures


def predictions_table(predictions: Iterable[SpinePrediction]) -> pd.DataFrame:
    """All predictions as one landmark table (:data:`COLUMNS`)."""
    rows = [row for prediction in predictions for row in prediction.rows()]
    return pd.DataFrame(rows, columns=COLUMNS)
