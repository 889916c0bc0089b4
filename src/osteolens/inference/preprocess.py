"""Exact replay of a bundle's preprocessing, remembering where each output pixel came from.

The pipeline stored in the bundle is rebuilt with :class:`osteolens.transforms.Pipeline`
and its steps are run one by one, exactly as ``Pipeline.__call__`` runs them. Alongside,
the geometry is tracked as one axis-aligned affine map per axis from network-input
coordinates back to original-image coordinates (pixel centres at integer positions)::

    row_original = a_r * row_input + b_r        col_original = a_c * col_input + b_c

* an intensity step (same shape in and out) leaves the map unchanged;
* ``crop_to_content`` shifts it by the crop's top-left corner (recomputed with the
  step's own ``bounding_box`` rule);
* ``pad_to_square`` shifts it back by the padding;
* ``resize`` (and any other step that changes the shape) scales it about pixel centres:
  ``x_in = (x_out + 0.5) * n_in / n_out - 0.5``.

The map lets a heat map computed on the network input be drawn on the original image at
its full resolution and in the right place, which a plain stretch would get wrong as soon
as the pipeline crops or pads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from osteolens.errors import BundleError, TransformError


@dataclass(frozen=True)
class AxisMap:
    """``original = scale * input + offset`` per axis (rows, columns), and the part of the
    original image the network saw: ``box = (top, left, bottom, right)`` (bottom / right
    exclusive; None for the whole image). Padding added by the pipeline lies outside it."""

    scale_r: float = 1.0
    offset_r: float = 0.0
    scale_c: float = 1.0
    offset_c: float = 0.0
    box: tuple[int, int, int, int] | None = None

    def then(self, scale_r: float, offset_r: float, scale_c: float, offset_c: float) -> AxisMap:
        """Compose with a later step whose own map is ``step_input = scale * step_output + offset``."""
        return AxisMap(
            self.scale_r * scale_r,
            self.scale_r * offset_r + self.offset_r,
            self.scale_c * scale_c,
            self.scale_c * offset_c + self.offset_c,
            self.box,
        )

    def crop(self, top: int, left: int, height: int, width: int) -> AxisMap:
        """Shrink ``box`` to a crop of the current image (current coordinates), and shift the map."""
        rows = sorted((self.scale_r * top + self.offset_r, self.scale_r * (top + height - 1) + self.offset_r))
        cols = sorted((self.scale_c * left + self.offset_c, self.scale_c * (left + width - 1) + self.offset_c))
        box = (round(rows[0]), round(cols[0]), round(rows[1]) + 1, round(cols[1]) + 1)
        if self.box is not None:
            box = (max(box[0], self.box[0]), max(box[1], self.box[1]), min(box[2], self.box[2]), min(box[3], self.box[3]))
        moved = self.then(1.0, top, 1.0, left)
        return AxisMap(moved.scale_r, moved.offset_r, moved.scale_c, moved.offset_c, box)

    def to_original(self, image: np.ndarray, shape: tuple[int, int], interpolation: str = "linear") -> np.ndarray:
        """Warp an array defined on the network input onto the original ``(H, W)`` grid.

        Pixels of the original image that the network never saw (cropped away, or under
        padding the pipeline added) get 0.
        """
        import cv2

        matrix = np.array([[self.scale_c, 0.0, self.offset_c], [0.0, self.scale_r, self.offset_r]], dtype=np.float64)
        flag = cv2.INTER_LINEAR if interpolation == "linear" else cv2.INTER_NEAREST
        out = cv2.warpAffine(
            np.ascontiguousarray(image, dtype=np.float32),
            matrix,
            (int(shape[1]), int(shape[0])),
            flags=flag,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0.0,
        )
        if self.box is not None:
            top, left, bottom, right = self.box
            out[:max(top, 0)] = 0.0
            out[max(bottom, 0):] = 0.0
            out[:, :max(left, 0)] = 0.0
            out[:, max(right, 0):] = 0.0
        return out


def _crop_offset(step: Any, pixels: np.ndarray) -> tuple[int, int]:
    """Top-left corner of the box ``crop_to_content`` keeps (its own rule, margin clamped)."""
    from osteolens.transforms.geometry import bounding_box

    box = bounding_box((pixels > step.low) & (pixels < step.high))
    if box is None:
        return 0, 0
    return max(0, box[0] - step.margin), max(0, box[1] - step.margin)


class Preprocessor:
    """Replays a bundle's preprocessing and produces the network input.

    Args:
        steps: the bundle's pipeline config (``[{"name", "params"}, ...]``).
        input_size: (height, width) the network expects; if the pipeline does not end at
            that size, a final ``resize`` to it is appended (the training loop does the same).
        in_chans: channels of the network input (the grey image is repeated).

    Raises:
        BundleError: a step is unknown or misconfigured.
    """

    def __init__(self, steps: list[dict[str, Any]], input_size: tuple[int, int], in_chans: int = 1) -> None:
        from osteolens.transforms import Pipeline, Resize

        try:
            self.pipeline = Pipeline.from_config(list(steps))
        except TransformError as exc:
            raise BundleError(f"the bundle's preprocessing cannot be rebuilt ({exc}). "
                              "Fix: use the osteolens version that trained the model.") from exc
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.in_chans = int(in_chans)
        self._final_resize = Resize(size=list(self.input_size))

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, AxisMap]:
        """Return the network input ``float32 (in_chans, H, W)`` and the map back to ``pixels``."""
        out = np.asarray(pixels, dtype=np.float32)
        geometry = AxisMap()
        for step in [*self.pipeline.steps, self._final_resize]:
            before = out.shape
            offset = _crop_offset(step, out) if step.name == "crop_to_content" else None
            out = step(out)
            after = out.shape
            if after == before:
                continue
            if offset is not None:
                geometry = geometry.crop(offset[0], offset[1], after[0], after[1])
            elif step.name == "pad_to_square":
                top, left = (after[0] - before[0]) // 2, (after[1] - before[1]) // 2
                geometry = geometry.then(1.0, -top, 1.0, -left)
            else:
                sr, sc = before[0] / after[0], before[1] / after[1]
                geometry = geometry.then(sr, 0.5 * sr - 0.5, sc, 0.5 * sc - 0.5)
        image = np.repeat(out[None], self.in_chans, axis=0)
        return image, geometry
