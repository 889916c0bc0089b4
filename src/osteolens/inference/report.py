"""The JSON record of one prediction, and its heat-map PNGs, shared by the CLI, the JSON-lines
runner and the HTTP service.

Every record has the same keys, whatever happened. The dental seed's four fields come first:

| key | meaning |
|---|---|
| ``result`` | ``"ok"`` or ``"fail"`` |
| ``diagnosis`` | the predicted label (regression: ``target = value``) |
| ``saliency_img_path`` | the Grad-CAM heat map PNG (jet), at the original resolution |
| ``overlay_img_path`` | the heat map blended over the radiograph (alpha 0.4) |

then ``error`` (why it failed, else null), ``image``, ``label``, ``probability``,
``probabilities``, ``value``, ``threshold``, ``task``, ``target``, ``model``, ``cam_method``,
``cam_class`` (the class explained), ``gradient_saliency_img_path``, ``views`` and
``view_img_paths`` (multi-view models: the view names, and each view's PNGs as
``{view: {"heatmap", "overlay", "gradient_saliency"}}``; the seed's two path fields then
name the first view's) and ``timing_ms``.
Unlike the seed's "Grad-CAM", the ``saliency_img_path`` map here is true Grad-CAM; plain
gradient saliency is written to ``gradient_saliency_img_path`` only when asked for.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from osteolens.inference.predictor import Prediction

RECORD_KEYS = (
    "result", "diagnosis", "saliency_img_path", "overlay_img_path", "error", "image", "label", "probability",
    "probabilities", "value", "threshold", "task", "target", "model", "cam_method", "cam_class",
    "gradient_saliency_img_path", "views", "view_img_paths",
    "timing_ms",
)


def fail_record(image: str | None, error: str) -> dict[str, Any]:
    """The record of an input that could not be predicted."""
    record: dict[str, Any] = dict.fromkeys(RECORD_KEYS)
    record.update(result="fail", error=error, image=image)
    return record


def ok_record(prediction: Prediction, image: str | None, paths: dict[str, str | None] | None = None) -> dict[str, Any]:
    """The record of a successful prediction; ``paths`` maps the ``*_img_path`` keys to files."""
    record: dict[str, Any] = dict.fromkeys(RECORD_KEYS)
    record.update({k: v for k, v in prediction.to_dict().items() if k in RECORD_KEYS})
    record.update(result="ok", error=None, image=image)
    record.update(paths or {})
    return record


def _view_pngs(image: np.ndarray, heat: np.ndarray | None, sal: np.ndarray | None,
               max_side: int | None) -> dict[str, Callable[[], bytes]]:
    """The PNG encoders of one image's heat map, overlay and gradient saliency."""
    from osteolens.explain import encode_png, heatmap_png, overlay
    from osteolens.explain.grid import thumbnail

    if max_side is not None:  # the maps have the image's shape, so all three shrink to the same size
        image = thumbnail(image, max_side)
        heat = None if heat is None else thumbnail(heat, max_side)
        sal = None if sal is None else thumbnail(sal, max_side)
    jobs: dict[str, Callable[[], bytes]] = {}
    if heat is not None:
        jobs["overlay"] = lambda: encode_png(overlay(image, heat, alpha=0.4, colormap="jet"), huffman_only=True)
        jobs["heatmap"] = lambda: heatmap_png(heat, "jet")
    if sal is not None:
        jobs["gradient_saliency"] = lambda: heatmap_png(sal, "hot")
    return jobs


def render_pngs(prediction: Prediction, max_side: int | None = None) -> dict[str, bytes]:
    """PNG bytes of the heat map (jet), the overlay and, if computed, the gradient saliency (hot),
    named ``heatmap`` / ``overlay`` / ``gradient_saliency`` (multi-view: ``<view>_heatmap`` ...).

    Rendered and encoded in parallel threads (OpenCV, Pillow and zlib release the GIL). The
    heat maps are palette PNGs (see ``heatmap_png``); the overlay carries the radiograph's
    texture, for which zlib's string matching buys almost nothing, so it is encoded
    Huffman-only: much faster at nearly the same size. ``max_side`` shrinks the images
    (area averaging) so the longer side is at most that many pixels; None keeps the
    original resolution.
    """
    if prediction.views:
        views = {f"{name}_": (v.image, v.heatmap, v.saliency) for name, v in prediction.views.items()}
    else:
        views = {"": (prediction.image, prediction.heatmap, prediction.saliency)}
    jobs: dict[str, Callable[[], bytes]] = {}
    for prefix, (image, heat, sal) in views.items():
        if heat is None and sal is None:
            continue
        assert image is not None
        jobs.update({prefix + name: job for name, job in _view_pngs(image, heat, sal, max_side).items()})
    if not jobs:
        return {}
    with ThreadPoolExecutor(max_workers=min(len(jobs), 2)) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


_PATH_KEYS = {"heatmap": "saliency_img_path", "overlay": "overlay_img_path",
              "gradient_saliency": "gradient_saliency_img_path"}


def write_prediction(prediction: Prediction, out_dir: Path, stem: str, image: str | None) -> dict[str, Any]:
    """Write ``<stem>.json`` and, when explained, ``<stem>_heatmap.png`` / ``_overlay.png`` /
    ``_gradient_saliency.png`` (multi-view: ``<stem>_<view>_heatmap.png`` ...) into
    ``out_dir``; return the record."""
    import json

    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Any] = {}
    written = {}
    for name, data in render_pngs(prediction).items():
        path = out_dir / f"{stem}_{name}.png"
        path.write_bytes(data)
        written[name] = str(path)
    if prediction.views:
        first = next(iter(prediction.views))
        paths["view_img_paths"] = {view: {kind: written.get(f"{view}_{kind}") for kind in _PATH_KEYS}
                                   for view in prediction.views}
        written = {kind: written.get(f"{first}_{kind}") for kind in _PATH_KEYS}
    paths.update({_PATH_KEYS[kind]: path for kind, path in written.items() if path is not None})
    record = ok_record(prediction, image, paths)
    (out_dir / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    return record
