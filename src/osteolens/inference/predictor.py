"""The Predictor: file -> exact preprocessing -> fold ensemble -> calibrated probability -> label.

Everything expensive happens once: the bundle is verified and loaded, the preprocessing
rebuilt, the ONNX Runtime session created on first use (from the bundle's ``model.onnx``, or
exported in memory and parity-checked when the bundle has none). A prediction then costs one
file read, the preprocessing, one ``session.run`` and, when asked, one Grad-CAM pass.

Without torch: a bundle that carries ``model.onnx`` and its Grad-CAM graph ``cam.onnx``
(:mod:`osteolens.inference.cam_graph`; training stores both) is predicted and explained by ONNX
Runtime alone. The torch networks are built only when something needs them (``--backend
torch``, saliency, a bundle without the graphs, a multi-view model's Grad-CAM), so a one-image
``osteolens predict --cam`` does not import torch, timm or pytorch-grad-cam. A prediction with
Grad-CAM then runs the image once, through ``cam.onnx``, which gives both the outputs and the
map (with test-time augmentation the outputs still come from ``model.onnx``).

Post-processing (``osteolens.models.tasks``):

* the ensemble is the **mean of the folds' raw outputs** (logits, cumulative logits or
  standardised values), as the fracture seed did and as ``osteolens train`` predicts its
  external test set, so a bundle reproduces the run's reported predictions; the mean then
  becomes probabilities (binary: sigmoid; multiclass: softmax; ordinal: CORAL cumulative ->
  class probabilities) or target values (regression: ``mean + std * z``);
* binary: the calibration map fitted on out-of-fold predictions (``Calibrator`` from
  ``osteolens.evaluation``) is applied to the positive-class probability, and the label is
  the positive class when ``p >= threshold`` (the bundle's, default 0.5);
* multiclass / ordinal: the stored temperature scaling (fitted on out-of-fold predictions)
  is applied to the class probabilities; the label is the most probable class (multiclass)
  or, for ordinal models, the number of cumulative probabilities ``P(y > k)`` above 0.5,
  decided on the uncalibrated probabilities as in the run's out-of-fold predictions.

Test-time augmentation: a bundle with ``tta: {"hflip": true}`` (trained with ``tta_hflip``)
has each fold's raw outputs averaged over the image and its horizontal flip before the
fold mean, on both backends (:class:`~osteolens.inference.runtime.FlipAveraged`), so the
Predictor reproduces the run's out-of-fold and external-test predictions. Grad-CAM and
saliency explain the unflipped image only.

Thread safety: ONNX Runtime sessions and eager inference are safe to share; Grad-CAM
hooks the model, so explanations are serialised by a lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from osteolens.errors import BundleError, ModelError, OsteolensError
from osteolens.evaluation.metrics import predicted_classes
from osteolens.inference.bundle import Bundle, load_bundle
from osteolens.inference.covariates import encode_covariates
from osteolens.inference.preprocess import AxisMap, Preprocessor
from osteolens.inference.session import default_threads
from osteolens.io.radiograph import Radiograph

BACKENDS = ("onnx", "torch")

Source = str | Path | Radiograph
#: One prediction's input: an image, or for a multi-view model ``{view: image}`` or images in view order.
Sample = Source | Mapping[str, Source] | Sequence[Source]


@dataclass
class ViewMaps:
    """One view of a multi-view prediction, on its own original grid."""

    image: np.ndarray
    heatmap: np.ndarray | None = None
    saliency: np.ndarray | None = None


@dataclass
class Prediction:
    """One image's prediction.

    Attributes:
        task: binary, multiclass, ordinal or regression.
        label: predicted class (None for regression).
        probability: binary: calibrated probability of the positive class; multiclass /
            ordinal: probability of the predicted class; None for regression.
        probabilities: probability of every class, in label order (None for regression).
        value: regression prediction in target units (None for classification).
        threshold: decision threshold applied to ``probability`` (binary only).
        target: name of the predicted quantity.
        model: name, digest and architecture of the bundle.
        timing_ms: milliseconds spent reading, preprocessing, in the model, explaining, in total.
        image: the original pixels ``(H, W)`` (for overlays; not serialised); the first
            view's for a multi-view model.
        heatmap: Grad-CAM map on the original image grid in [0, 1], when asked.
        saliency: plain gradient saliency on the original image grid, when asked.
        views: multi-view models: each view's pixels and maps by view name (None otherwise).
        cam_method: ``gradcam`` / ``gradcam++`` when a heat map was computed.
        cam_class: the class the explanation is for (the predicted one unless another was chosen).
    """

    task: str
    label: str | None
    probability: float | None
    probabilities: dict[str, float] | None
    value: float | None
    threshold: float | None
    target: str | None
    model: dict[str, Any]
    timing_ms: dict[str, float] = field(default_factory=dict)
    image: np.ndarray | None = field(default=None, repr=False)
    heatmap: np.ndarray | None = field(default=None, repr=False)
    saliency: np.ndarray | None = field(default=None, repr=False)
    cam_method: str | None = None
    cam_class: str | None = None
    views: dict[str, ViewMaps] | None = field(default=None, repr=False)

    @property
    def diagnosis(self) -> str:
        """One readable line: the label, or ``target = value`` for regression."""
        if self.label is not None:
            return self.label
        name = self.target or "value"
        return f"{name} = {self.value:.4g}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (no arrays)."""
        return {
            "task": self.task,
            "label": self.label,
            "diagnosis": self.diagnosis,
            "probability": self.probability,
            "probabilities": self.probabilities,
            "value": self.value,
            "threshold": self.threshold,
            "target": self.target,
            "model": self.model,
            "cam_method": self.cam_method,
            "cam_class": self.cam_class,
            "views": list(self.views) if self.views else None,
            "timing_ms": {k: round(v, 2) for k, v in self.timing_ms.items()},
        }


class Predictor:
    """Serve a bundle.

    Args:
        bundle: a loaded :class:`Bundle` or the path of a bundle folder / zip.
        backend: ``onnx`` (ONNX Runtime, default) or ``torch`` (eager).
        threads: ONNX Runtime intra-op threads (default: every core this process may use).
        cam_method: default explanation method, ``gradcam`` or ``gradcam++``.

    Example:
        >>> predictor = Predictor("runs/knee/bundle")  # doctest: +SKIP
        >>> result = predictor.predict("knee.dcm", cam=True)  # doctest: +SKIP
        >>> result.label, round(result.probability, 2), result.heatmap.shape  # doctest: +SKIP
        ('osteoporosis', 0.87, (2500, 2048))
    """

    def __init__(
        self, bundle: Bundle | str | Path, backend: str = "onnx", threads: int | None = None, cam_method: str = "gradcam"
    ) -> None:
        from osteolens.explain.cam_arrays import METHODS as CAM_METHODS

        if backend not in BACKENDS:
            raise ModelError(f"unknown backend '{backend}'. Fix: use one of {', '.join(BACKENDS)}.")
        if cam_method not in CAM_METHODS:
            raise ModelError(f"unknown CAM method '{cam_method}'. Fix: use one of {', '.join(CAM_METHODS)}.")
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, lazy=True)
        self.cam_method = cam_method
        architecture = self.bundle.architecture
        self.in_chans = int(architecture.get("in_chans", 1))
        self.covariates = self.bundle.tabular
        self.views = self.bundle.views
        self.preprocessor = Preprocessor(self.bundle.preprocessing, self.bundle.input_size, self.in_chans)
        self.calibrator = self._calibrator()
        self.backend_name = backend
        self.threads = threads or default_threads()
        self._models: list[Any] | None = None
        self._backend: Any = None
        self._cam_graph: Any = None
        self._build_lock = threading.Lock()
        self._cam_lock = threading.Lock()
        if backend == "torch" or self.bundle.onnx_model is None:
            self.backend  # noqa: B018 (build the networks and the session now; errors surface at start)
        self.model_info = {
            "name": self.bundle.name,
            "digest": self.bundle.digest[:16],
            "architecture": architecture.get("name"),
            "folds": len(self.bundle.manifest["folds"]),
            "backend": backend,
            "tta": sorted(key for key, on in self.bundle.tta.items() if on),
        }

    @property
    def models(self) -> list[Any]:
        """The fold networks in eval mode, without gradients on the weights, channels-last (built on first use)."""
        with self._build_lock:
            if self._models is None:
                import torch

                # Convolutions run about 15 % faster on CPU with channels-last weights (Grad-CAM, eager backend).
                self._models = [model.requires_grad_(False).eval().to(memory_format=torch.channels_last)
                                for model in self.bundle.models]
            return self._models

    @property
    def backend(self) -> Any:
        """``(images, tabular) -> raw outputs [F, N, K]``: ONNX Runtime on ``model.onnx`` (exported
        and parity-checked from the torch folds when the bundle has none) or torch eager; created on first use."""
        if self._backend is None:
            from osteolens.inference.session import FlipAveraged, OnnxBackend

            if self.backend_name == "torch":
                from osteolens.inference.runtime import TorchBackend

                backend: Any = TorchBackend(self.models, bool(self.covariates))
            else:
                model = self.bundle.onnx_model
                if model is None:
                    from osteolens.inference.runtime import export_checked

                    model, _ = export_checked(self.models, self.bundle.input_size, self.in_chans, len(self.covariates),
                                              views=max(1, len(self.views)))
                backend = OnnxBackend(model, self.threads)
            with self._build_lock:
                if self._backend is None:
                    self._backend = FlipAveraged(backend) if self.bundle.tta.get("hflip") else backend
        return self._backend

    @property
    def cam_graph(self) -> Any:
        """The bundle's Grad-CAM graph in ONNX Runtime (:class:`~osteolens.inference.cam_graph.OnnxGradCam`),
        or None: the bundle has none, or the predictor runs torch."""
        if self._cam_graph is None and self.bundle.cam_onnx is not None and self.backend_name == "onnx":
            from osteolens.inference.cam_graph import OnnxGradCam

            graph = OnnxGradCam(self.bundle.cam_onnx, self.threads)
            with self._build_lock:
                if self._cam_graph is None:
                    self._cam_graph = graph
        return self._cam_graph

    def _calibrator(self) -> Any:
        data = self.bundle.calibration
        if data is None:
            return None
        from osteolens.evaluation.calibration import Calibrator

        try:
            calibrator = Calibrator.from_dict(data)
        except (OsteolensError, KeyError, TypeError) as exc:
            raise BundleError(f"{self.bundle.path}: the stored calibration is unusable ({exc}). "
                              "Fix: re-export the bundle.") from exc
        expected = {"binary": ("platt", "isotonic"), "multiclass": ("temperature",), "ordinal": ("temperature",)}
        if calibrator.method not in expected.get(self.bundle.task, ()):
            raise BundleError(f"{self.bundle.path}: a {calibrator.method} calibration is stored for a {self.bundle.task} "
                              f"model, which takes {' or '.join(expected.get(self.bundle.task, ('none',)))}. "
                              "Fix: re-export the bundle with a matching calibration, or without one.")
        return calibrator

    # ------------------------------------------------------------------ steps
    def read(self, source: Source) -> Radiograph:
        """The radiograph itself, or read from a file (format sniffed from its bytes)."""
        if isinstance(source, Radiograph):
            return source
        from osteolens.io import read_radiograph

        return read_radiograph(source)

    def read_sample(self, sample: Sample) -> list[Radiograph]:
        """The radiographs of one sample: one image, or one per view in the model's view order.

        A multi-view sample is a mapping ``{view name: image}`` (names matched ignoring case)
        or a sequence in the model's view order.
        """
        if not self.views:
            if isinstance(sample, Mapping | list | tuple):
                raise ModelError("this model takes one image per prediction, not several views. "
                                 "Fix: pass a single file.")
            return [self.read(sample)]
        example = ", ".join(f"{name}=FILE" for name in self.views)
        if isinstance(sample, Mapping):
            given = {str(name).lower(): source for name, source in sample.items()}
            wanted = [name.lower() for name in self.views]
            missing = [name for name in self.views if name.lower() not in given]
            unknown = [name for name in sample if str(name).lower() not in wanted]
            if missing or unknown:
                problem = f"lacks view(s) {missing}" if missing else f"has unknown view(s) {unknown}"
                raise ModelError(f"the sample {problem}; this model takes the views {self.views}. Fix: pass {example}.")
            sources = [given[name] for name in wanted]
        elif isinstance(sample, list | tuple) and len(sample) == len(self.views):
            sources = list(sample)
        else:
            got = f"{len(sample)} images" if isinstance(sample, list | tuple) else "one image"
            raise ModelError(f"this model takes {len(self.views)} views {self.views} per prediction, got {got}. "
                             f"Fix: pass one image per view ({example}).")
        return [self.read(source) for source in sources]

    def prepare(
        self, radiographs: Sequence[Radiograph], covariates: Mapping[str, Any] | None = None
    ) -> tuple[np.ndarray, np.ndarray | None, list[AxisMap]]:
        """Network input ``(C, H, W)`` (``(V, C, H, W)`` for several views), encoded covariates
        ``[1, T]`` (or None; DICOM tags read from the first view) and each view's map back."""
        tabular = encode_covariates(self.covariates, self.bundle.tabular_scaling, covariates, radiographs[0].meta)
        prepared = [self.preprocessor(radiograph.pixels) for radiograph in radiographs]
        return self._network_input([image for image, _ in prepared]), tabular, [geometry for _, geometry in prepared]

    def _network_input(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """One sample's ``(C, H, W)`` image, or its views stacked as ``(V, C, H, W)``."""
        return np.stack(images) if self.views else images[0]

    def postprocess(self, outputs: np.ndarray) -> list[dict[str, Any]]:
        """Raw ``[F, N, K]`` outputs -> per-image label, probabilities or value (see the module docstring)."""
        from osteolens.inference.outputs import probabilities, regression_values

        task, labels = self.bundle.task, self.bundle.labels
        # The ensemble averages the folds' raw outputs (as the training run's external-test predictions do).
        raw = np.asarray(outputs, dtype=np.float32).mean(0)
        results = []
        if task == "regression":
            values = regression_values(raw, self.bundle.target_scaling)
            return [{"label": None, "probability": None, "probabilities": None, "value": float(v), "threshold": None,
                     "class_index": None} for v in values.tolist()]
        probs = probabilities(task, raw).astype(np.float64)
        if task == "binary":
            positive = self.calibrator(probs) if self.calibrator is not None else probs
            threshold = self.bundle.threshold if self.bundle.threshold is not None else 0.5
            for p in np.atleast_1d(positive):
                index = int(p >= threshold)
                results.append({"label": labels[index], "probability": float(p),
                                "probabilities": {labels[0]: float(1 - p), labels[1]: float(p)},
                                "value": None, "threshold": float(threshold), "class_index": index})
            return results
        # Decided before calibration, as in the run's out-of-fold predictions (temperature
        # scaling never changes the argmax, but can move an ordinal model's median class).
        decided = predicted_classes(probs, cumulative=task == "ordinal")
        if self.calibrator is not None:
            probs = self.calibrator(probs)
        for row, index in zip(probs, decided.tolist()):
            results.append({"label": labels[index], "probability": float(row[index]),
                            "probabilities": {label: float(v) for label, v in zip(labels, row)},
                            "value": None, "threshold": None, "class_index": index})
        return results

    # ------------------------------------------------------------------ public
    def predict(
        self,
        source: Sample,
        covariates: Mapping[str, Any] | None = None,
        cam: bool = False,
        saliency: bool = False,
        cam_method: str | None = None,
        cam_class: str | None = None,
    ) -> Prediction:
        """Predict one radiograph (or one study of a multi-view model).

        Args:
            source: a file (DICOM, PNG, JPEG, TIFF, BMP) or a :class:`Radiograph`; for a
                multi-view model ``{view name: file}`` or the files in the model's view order.
            covariates: values of the model's covariates (e.g. ``{"sex": "F", "age": 71}``);
                missing ones are taken from the DICOM tags.
            cam: compute the Grad-CAM heat map (on the original image grid; one per view).
            saliency: compute plain gradient saliency too, for comparison.
            cam_method: ``gradcam`` or ``gradcam++`` (default: the predictor's).
            cam_class: explain this class instead of the predicted one (classification).

        Raises:
            OsteolensError: unreadable file (RadiographReadError), missing covariate or view (ModelError) ...
        """
        explained = self._explained_class(cam_class)
        timing: dict[str, float] = {}
        start = time.perf_counter()
        radiographs = self.read_sample(source)
        timing["read"] = (time.perf_counter() - start) * 1000
        mark = time.perf_counter()
        image, tabular, geometries = self.prepare(radiographs, covariates)
        timing["preprocess"] = (time.perf_counter() - mark) * 1000
        mark = time.perf_counter()
        graph = self.cam_graph if cam and not self.views else None
        if graph is not None and not self.bundle.tta.get("hflip"):
            graph_run = graph.run(image, tabular)  # the outputs and what Grad-CAM needs, in one pass
            outputs = graph_run[0]
        else:
            graph_run, outputs = None, self.backend(image[None], tabular)
        result = self.postprocess(outputs)[0]
        timing["model"] = (time.perf_counter() - mark) * 1000
        heatmaps: list[np.ndarray | None] = [None] * len(radiographs)
        maps = list(heatmaps)
        method = cam_method or self.cam_method
        class_index = result["class_index"] if explained is None else explained
        if cam or saliency:
            mark = time.perf_counter()
            heatmaps, maps = self.explain(image, tabular, geometries, [r.shape for r in radiographs], class_index,
                                          cam=cam, saliency=saliency, method=method, graph_run=graph_run)
            timing["explain"] = (time.perf_counter() - mark) * 1000
        timing["total"] = (time.perf_counter() - start) * 1000
        views = None
        if self.views:
            views = {name: ViewMaps(r.pixels, heat, sal)
                     for name, r, heat, sal in zip(self.views, radiographs, heatmaps, maps, strict=True)}
        return Prediction(
            task=self.bundle.task, label=result["label"], probability=result["probability"],
            probabilities=result["probabilities"], value=result["value"], threshold=result["threshold"],
            target=self.bundle.target, model=self.model_info, timing_ms=timing, image=radiographs[0].pixels,
            heatmap=heatmaps[0], saliency=maps[0], cam_method=method if cam else None,
            cam_class=self.bundle.labels[class_index] if (cam or saliency) and class_index is not None else None,
            views=views,
        )

    def _explained_class(self, name: str | None) -> int | None:
        """Index of a class chosen for the explanation (None: the predicted class)."""
        if name is None or name == "":
            return None
        labels = self.bundle.labels
        if name not in labels:
            raise ModelError(f"cam class '{name}' is not one of this model's classes {labels}. "
                             "Fix: name one of them, or leave it out to explain the predicted class.")
        return labels.index(name)

    def explain(
        self,
        image: np.ndarray,
        tabular: np.ndarray | None,
        geometries: Sequence[AxisMap],
        shapes: Sequence[tuple[int, int]],
        class_index: int | None,
        cam: bool = True,
        saliency: bool = False,
        method: str = "gradcam",
        models: Sequence[Any] | None = None,
        graph_run: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> tuple[list[np.ndarray | None], list[np.ndarray | None]]:
        """Grad-CAM (and gradient saliency) of the fold ensemble (or of ``models``), one map per
        view, each mapped onto its view's original ``shape``.

        Grad-CAM of the whole ensemble of a single-view bundle with ``cam.onnx`` runs in ONNX
        Runtime (``graph_run``: that graph's outputs for this image, when already computed);
        otherwise, and for saliency, pytorch-grad-cam on the torch folds.
        """

        def on_original(maps: np.ndarray) -> list[np.ndarray | None]:
            per_view = maps[0] if self.views else maps  # [V, h, w] either way
            return [g.to_original(m, shape) for g, m, shape in zip(geometries, per_view, shapes, strict=True)]

        none: list[np.ndarray | None] = [None] * len(geometries)
        heat, sal = none, none
        graph = self.cam_graph if cam and models is None and not self.views else None
        if graph is not None:
            run = graph_run if graph_run is not None else graph.run(image, tabular)
            heat = on_original(graph.heatmap(run, image.shape[-2:], self.bundle.task, class_index, method)[None])
        if not (cam and graph is None) and not saliency:
            return heat, sal
        import torch

        from osteolens.explain import cam_target, grad_cam, gradient_saliency

        x = torch.from_numpy(np.ascontiguousarray(image[None], dtype=np.float32))
        t = None if tabular is None else torch.from_numpy(tabular)
        targets = [cam_target(self.bundle.task, class_index)]
        models = list(models) if models is not None else self.models
        with self._cam_lock:  # pytorch-grad-cam hooks the networks
            if cam and graph is None:
                heat = on_original(grad_cam(models, x, targets, t, method=method))
            if saliency:
                sal = on_original(gradient_saliency(models, x, targets, t))
        return heat, sal

    def warm_up(self, cam: bool = True) -> None:
        """Run one synthetic sample through the whole path (and Grad-CAM) so that the first real
        request does not pay for lazy imports, ONNX Runtime's first-run allocations or autograd set-up."""
        rng = np.random.default_rng(0)
        side = max(self.bundle.input_size)
        images = [self.preprocessor(rng.random((side, side), dtype=np.float32))[0]
                  for _ in range(max(1, len(self.views)))]
        image = self._network_input(images)
        tabular = np.zeros((1, len(self.covariates)), np.float32) if self.covariates else None
        result = self.postprocess(self.backend(image[None], tabular))[0]
        if cam:
            self.explain(image, tabular, [AxisMap()] * len(images), [image.shape[-2:]] * len(images),
                         result["class_index"], cam=True)

    def predict_many(
        self,
        sources: Sequence[Sample],
        covariates: Sequence[Mapping[str, Any] | None] | None = None,
        batch_size: int = 8,
    ) -> Iterator[tuple[int, Prediction | OsteolensError]]:
        """Predict many images in batches (no explanations), for throughput.

        While the model runs one batch, worker threads already read and preprocess the next
        (decoding and numpy / OpenCV work release the GIL). A file that cannot be read or
        lacks a covariate does not stop the others.

        Yields:
            ``(index in sources, Prediction)`` or ``(index, the OsteolensError)``, in input order.
        """
        from concurrent.futures import Future, ThreadPoolExecutor

        covariates = list(covariates) if covariates is not None else [None] * len(sources)

        def prepare(i: int) -> tuple[np.ndarray, np.ndarray | None] | OsteolensError:
            try:
                image, tabular, _ = self.prepare(self.read_sample(sources[i]), covariates[i])
                return image, tabular
            except OsteolensError as exc:
                return exc

        chunks = [range(i, min(i + batch_size, len(sources))) for i in range(0, len(sources), max(1, batch_size))]
        with ThreadPoolExecutor(max_workers=default_threads()) as pool:

            def submit(c: int) -> list[Future]:
                return [pool.submit(prepare, i) for i in chunks[c]] if c < len(chunks) else []

            pending = submit(0)
            for c, chunk in enumerate(chunks):
                start = time.perf_counter()
                ready = [future.result() for future in pending]
                pending = submit(c + 1)  # read the next batch while this one runs
                good = [r for r in ready if not isinstance(r, OsteolensError)]
                results = iter([])
                if good:
                    images = np.stack([r[0] for r in good])
                    tabular = np.concatenate([r[1] for r in good]) if self.covariates else None
                    results = iter(self.postprocess(self.backend(images, tabular)))
                per_image = (time.perf_counter() - start) * 1000 / len(chunk)
                for i, item in zip(chunk, ready):
                    if isinstance(item, OsteolensError):
                        yield i, item
                        continue
                    r = next(results)
                    yield i, Prediction(task=self.bundle.task, label=r["label"], probability=r["probability"],
                                        probabilities=r["probabilities"], value=r["value"], threshold=r["threshold"],
                                        target=self.bundle.target, model=self.model_info,
                                        timing_ms={"total": per_image})

    def predict_batch(
        self, sources: Sequence[Sample], covariates: Sequence[Mapping[str, Any] | None] | None = None
    ) -> list[Prediction]:
        """Predict several images with one model call (no explanations).

        Raises:
            OsteolensError: the first image that cannot be predicted (use :meth:`predict_many`
                to go on after failures).
        """
        predictions = []
        for _, result in self.predict_many(sources, covariates, batch_size=max(1, len(sources))):
            if not isinstance(result, Prediction):
                raise result
            predictions.append(result)
        return predictions
