"""pyradiomics adapter: first order, GLCM, GLRLM, GLSZM, GLDM, NGTDM and 2-D shape features.

The `pyradiomics-bhklab` build (imported as ``radiomics``) computes the features; this module
only turns an osteolens image into the SimpleITK image pyradiomics expects, quiets its
logger while it runs, and returns its numbers untouched (diagnostics dropped).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from osteolens.features.base import FeatureFamily, check_image_and_mask, register_feature_family

RADIOMICS_CLASSES = ("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm", "shape2D")
TEXTURE_CLASSES = ("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")


@contextlib.contextmanager
def quiet_radiomics_logger(level: int = logging.ERROR) -> Iterator[None]:
    """Raise the ``radiomics`` logger's level while pyradiomics runs, then restore it.

    pyradiomics logs a warning per image and class ("GLCM is symmetrical ..."); silencing it
    here rather than at import leaves the user's logging configuration alone.
    """
    logger = logging.getLogger("radiomics")
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


def to_grey_levels(image: np.ndarray, scale: float = 255.0, quantise: bool = True) -> np.ndarray:
    """Map a [0, 1] image to ``[0, scale]`` grey levels, rounded to integers when ``quantise``.

    The seed saved each ROI as an 8-bit PNG (0-255) before pyradiomics read it; rounding
    reproduces those integer levels, so a bin width of 25 gives about 11 grey-level bins.
    """
    out = np.asarray(image, dtype=np.float64) * scale
    return np.rint(out) if quantise else out


def run_pyradiomics(
    grey: np.ndarray,
    mask: np.ndarray,
    settings: Mapping[str, Any],
    classes: Sequence[str],
    image_types: Mapping[str, Mapping[str, Any]] | Sequence[str] = ("Original",),
) -> dict[str, float]:
    """Run ``RadiomicsFeatureExtractor`` on a 2-D array and mask; return its feature values.

    Args:
        grey: 2-D grey levels (already scaled).
        mask: 2-D bool region of interest (label 1 for pyradiomics).
        settings: pyradiomics settings (``binWidth``, ...).
        classes: feature classes to enable (``firstorder``, ``glcm`` ...).
        image_types: pyradiomics image types (``Original``, ``Wavelet``, ``LoG`` ...), as names
            or as ``{name: custom settings}``.

    Returns:
        ``{pyradiomics feature name: float}``, e.g. ``original_glcm_Contrast``; the
        ``diagnostics_*`` entries are dropped.
    """
    import SimpleITK as sitk
    from radiomics import featureextractor

    types = dict(image_types) if isinstance(image_types, Mapping) else {name: {} for name in image_types}
    with quiet_radiomics_logger():
        extractor = featureextractor.RadiomicsFeatureExtractor(**dict(settings))
        extractor.disableAllFeatures()
        for name in classes:
            extractor.enableFeatureClassByName(name)
        extractor.disableAllImageTypes()
        extractor.enableImageTypes(**{name: dict(custom) for name, custom in types.items()})
        result = extractor.execute(
            sitk.GetImageFromArray(np.asarray(grey, dtype=np.float64)),
            sitk.GetImageFromArray(np.asarray(mask, dtype=np.uint8)),
            label=1,
        )
    return {key: float(value) for key, value in result.items() if not key.startswith("diagnostics_")}


@register_feature_family("radiomics")
class RadiomicsFamily(FeatureFamily):
    r"""pyradiomics features of the image inside the region of interest.

    The image :math:`I \in [0, 1]` becomes grey levels :math:`g = \mathrm{round}(255\, I)`;
    pyradiomics discretises them with a fixed bin width :math:`w` (25 by default, as the
    seed): :math:`b = \lfloor g / w \rfloor - \lfloor \min g / w \rfloor + 1`, then computes
    the first-order statistics of :math:`g` and the texture matrices of :math:`b` inside the
    mask — grey-level co-occurrence (GLCM), run length (GLRLM), size zone (GLSZM),
    dependence (GLDM), neighbouring grey-tone difference (NGTDM) — and 2-D shape of the mask.
    Definitions: https://pyradiomics.readthedocs.io/en/latest/features.html.

    Image types: ``Original`` (default) and pyradiomics' own ``Wavelet`` (an undecimated
    wavelet, ``coif1`` unless ``settings`` says otherwise) giving ``wavelet-LH_...`` columns.

    Columns: pyradiomics' names, ``<imagetype>_<class>_<feature>``, e.g.
    ``original_glcm_Contrast``, ``original_shape2D_Elongation``, ``wavelet-LH_firstorder_Mean``.

    Args:
        bin_width: pyradiomics ``binWidth`` in grey levels of the 0-255 image.
        classes: feature classes to compute.
        image_types: pyradiomics image types.
        settings: any further pyradiomics settings, stored with the output.
        scale: grey level of a pixel equal to 1.0.
        quantise: round grey levels to integers (the seed's 8-bit PNGs).
    """

    def __init__(
        self,
        bin_width: float = 25.0,
        classes: Sequence[str] = RADIOMICS_CLASSES,
        image_types: Sequence[str] = ("Original",),
        settings: Mapping[str, Any] | None = None,
        scale: float = 255.0,
        quantise: bool = True,
    ) -> None:
        self.bin_width = bin_width
        self.classes = tuple(classes)
        self.image_types = tuple(image_types)
        self.settings = dict(settings) if settings else None
        self.scale = scale
        self.quantise = quantise

    def pyradiomics_settings(self) -> dict[str, Any]:
        """The settings handed to ``RadiomicsFeatureExtractor``."""
        return {"binWidth": self.bin_width, **(self.settings or {})}

    def compute(self, image: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
        image, mask = check_image_and_mask(image, mask)
        grey = to_grey_levels(image, self.scale, self.quantise)
        return run_pyradiomics(grey, mask, self.pyradiomics_settings(), self.classes, self.image_types)
