"""Radiograph in, measurements out: detected corners handed to :mod:`osteolens.morphometry`.

A detection becomes the same :class:`~osteolens.morphometry.inputs.SpineInput` that a hand
annotation gives, so heights, endplate angles, the annotation checks, Cobb angles, overlays
and the DICOM SR all follow the hand-annotation path unchanged. A vertebra the detector hardly
saw (confidence below :data:`~osteolens.landmarks.decode.LOW_CONFIDENCE`) carries a
``low_confidence`` problem: it is measured, flagged in the table and marked ``!`` on the
overlay, never hidden. When the level names are uncertain
(:attr:`~osteolens.landmarks.decode.Detection.levels_uncertain`), the end vertebra on the
rival's side (the first for a rival above it, the last for one below) carries a
``levels_uncertain`` problem the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from osteolens.landmarks.decode import LOW_CONFIDENCE, UNRELIABLE_LOW
from osteolens.landmarks.predict import LandmarkDetector, SpinePrediction, iter_detections
from osteolens.morphometry.batch import BatchResult, measure_inputs
from osteolens.morphometry.inputs import SpineInput
from osteolens.morphometry.overlay import draw_overlay
from osteolens.morphometry.spine import SpineMeasurement, measure_spine
from osteolens.morphometry.vertebra import CORNERS, VertebraMeasurement

if TYPE_CHECKING:
    from osteolens.io import Radiograph

#: Keys of ``VertebraMeasurement.to_dict()`` that :func:`spine_record` gives elsewhere (name, corners, problems).
_NOT_MEASURED = {"vertebra", "view", "anterior_side", "problems", *(f"{c}_{axis}" for c in CORNERS for axis in "xy")}


def detection_problems(prediction: SpinePrediction) -> dict[int, list[str]]:
    """Problems by vertebra index: ``low_confidence`` for the vertebrae the detector hardly saw,
    ``levels_uncertain`` on the end vertebra next to a rival peak."""
    found = prediction.detection
    problems = {k: [f"low_confidence: detector confidence {c:.2f} is below {LOW_CONFIDENCE}; check this vertebra "
                    "on the overlay and correct its corners by hand if needed"]
                for k, c in enumerate(found.confidence) if c < LOW_CONFIDENCE}
    if found.levels_uncertain:
        cranial = found.rival_side == "cranial"
        end = 0 if cranial else len(found.confidence) - 1
        name, where = prediction.vertebrae[end], "above" if cranial else "below"
        problems.setdefault(end, []).append(
            f"levels_uncertain: a vertebra-like shape {where} {name} (detector {found.rival:.2f}) is nearly as clear "
            f"as the weakest vertebra found ({found.confidence.min():.2f}), so every level may be off by one; check "
            f"that this is {name} on the overlay, and if not rename the levels ('osteolens landmarks relabel')")
    return problems


def detection_warning(prediction: SpinePrediction) -> str | None:
    """The caution on a whole detection that is ``unreliable`` (many vertebrae hardly seen), else None."""
    found = prediction.detection
    if not found.unreliable:
        return None
    return (f"unreliable detection: the detector hardly saw {int(found.low_confidence.sum())} of {len(found.confidence)} "
            f"vertebrae ({UNRELIABLE_LOW} or more never happened on its validation radiographs); this radiograph may "
            f"not show {prediction.vertebrae[0]}-{prediction.vertebrae[-1]} in the view of the training images, so "
            "check every vertebra before using these measurements")


def spine_input(prediction: SpinePrediction, view: str, image_path: str | Path | None = None) -> SpineInput:
    """The morphometry input of one detection (its corners, levels, image shape, flags and warning)."""
    return SpineInput(key=prediction.image, names=list(prediction.vertebrae), corners=prediction.detection.corners,
                      view=view, image_path=Path(image_path) if image_path is not None else None,
                      image_shape=prediction.image_shape, problems=detection_problems(prediction),
                      warning=detection_warning(prediction))


def measure_prediction(prediction: SpinePrediction, view: str, pixels: np.ndarray | None = None,
                       pixel_mm: float | tuple[float, float] | None = None) -> tuple[SpineMeasurement, np.ndarray]:
    """Measure one detection and draw its overlay (BGR ``uint8``) on ``pixels`` (the radiograph in [0, 1])."""
    source = spine_input(prediction, view)
    spine = measure_spine(source.corners, source.names, pixel_mm=pixel_mm, view=view, image_shape=source.image_shape,
                          image_height=source.image_shape[0] if source.image_shape else None, key=source.key,
                          extra_problems=source.problems, warning=source.warning)
    return spine, draw_overlay(spine, pixels)


def measure_radiograph(detector: LandmarkDetector, radiograph: Radiograph, name: str,
                       pixel_mm: float | tuple[float, float] | None = None,
                       started: float | None = None) -> tuple[SpinePrediction, SpineMeasurement, np.ndarray]:
    """Detect the corners of a read radiograph, measure them and draw the overlay (the service's and
    the DICOM node's path). ``pixel_mm`` defaults to the radiograph's own spacing; ``started``: when
    its reading began (for the prediction's ``seconds``)."""
    found = detector.predict_radiograph(radiograph, name, started)
    spine, overlay = measure_prediction(found, detector.bundle.view, radiograph.pixels,
                                        pixel_mm if pixel_mm is not None else radiograph.spacing_mm)
    return found, spine, overlay


def _measurements(vertebra: VertebraMeasurement) -> dict[str, Any]:
    """Heights (px, and mm with a pixel spacing), angles, ratios and grade of a vertebra; None where not finite."""
    return {key: None if isinstance(value, float) and not np.isfinite(value) else value
            for key, value in vertebra.to_dict().items() if key not in _NOT_MEASURED}


def _cobb(row: dict[str, Any]) -> dict[str, Any] | None:
    """``{pt, mt, tl: {degrees, upper, lower}, s_shaped}`` from a spine's ``cobb_row()``; None without angles."""
    if row["pt"] is None:
        return None
    angles: dict[str, Any] = {key: {"degrees": row[key], "upper": row[f"{key}_upper"], "lower": row[f"{key}_lower"]}
                              for key in ("pt", "mt", "tl")}
    angles["s_shaped"] = row["s_shaped"]
    return angles


def spine_record(prediction: SpinePrediction, spine: SpineMeasurement) -> dict[str, Any]:
    """The JSON of one measured detection, as the service and the DICOM node answer it: ``view``,
    ``image_shape``, per vertebra its name, confidence, flag, corners (original pixels), problems
    and measurements, the Cobb angles with their end vertebrae (AP), the low-confidence count and
    whether the level names are uncertain (with the rival peak's value and side), and whether the
    whole detection is unreliable (``warning`` says why)."""
    confidence, low = prediction.detection.confidence, prediction.detection.low_confidence
    vertebrae = [{"name": v.name, "confidence": round(float(confidence[k]), 4), "low_confidence": bool(low[k]),
                  "corners": np.round(prediction.detection.corners[k], 2).tolist(), "problems": list(v.problems),
                  "measurements": _measurements(v)} for k, v in enumerate(spine.vertebrae)]
    return {"view": spine.view, "image_shape": list(prediction.image_shape), "vertebrae": vertebrae,
            "cobb": _cobb(spine.cobb_row()), "cobb_note": spine.cobb_note, "low_confidence_count": int(low.sum()),
            "levels_uncertain": prediction.detection.levels_uncertain,
            "unreliable": prediction.detection.unreliable, "warning": spine.warning,
            "level_rival": {"confidence": round(prediction.detection.rival, 4), "side": prediction.detection.rival_side}}


def detect_and_measure(detector: LandmarkDetector, paths: Iterable[str | Path], *, root: Path | None = None,
                       view: str | None = None, **measure_options: object) -> tuple[list[SpinePrediction], BatchResult]:
    """Detect the corners of every radiograph and measure them like a hand annotation.

    Args:
        detector: a loaded landmark bundle.
        paths: radiographs (any format :func:`osteolens.io.read_radiograph` reads).
        root: the folder they were found in: spines are then named by their path below it
            (as a landmark table beside that folder names them).
        view: the view of the spines (default: the bundle's).
        measure_options: passed to :func:`osteolens.morphometry.batch.measure_inputs`
            (``pixel_mm``, ``plot_dir``, ``spacing_by_image`` ...).

    Returns:
        The detections, and the measurements with every unreadable file in ``failures``.
    """
    view = view or detector.bundle.view
    predictions: list[SpinePrediction] = []
    failures: list[tuple[str, str]] = []

    def inputs() -> Iterator[SpineInput]:  # one radiograph in memory at a time, read once
        for found, radiograph in iter_detections(detector, paths, root, failures):
            predictions.append(found)
            source = spine_input(found, view, root / found.image if root is not None else found.image)
            source.radiograph = radiograph
            yield source

    result = measure_inputs(inputs(), view=view, **measure_options)  # type: ignore[arg-type]
    result.failures[:0] = failures
    return predictions, result
