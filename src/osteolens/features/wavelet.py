"""Seed wavelet features: pyradiomics texture of the sub-bands of a decimated 2-D wavelet transform."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from osteolens.features.base import FeatureFamily, border_mask, check_image_and_mask, register_feature_family
from osteolens.features.pyradiomics_family import TEXTURE_CLASSES, run_pyradiomics, to_grey_levels


def wavelet_subbands(image: np.ndarray, wavelet: str = "db2", level: int = 2, mode: str = "periodization") -> dict[str, np.ndarray]:
    """The ``3 * level + 1`` sub-bands of ``pywt.wavedec2``, named ``A<level>`` and ``H/V/D<l>``.

    ``A`` is the approximation at the coarsest level; ``H``, ``V`` and ``D`` are the
    horizontal, vertical and diagonal details at level ``l`` (1 = finest), in PyWavelets'
    sense. With ``db2``, level 2 and periodization (the seed's choice) an ``n x m`` image gives
    one ``n/4 x m/4`` approximation, three ``n/4 x m/4`` and three ``n/2 x m/2`` detail bands.
    """
    import pywt

    coeffs = pywt.wavedec2(np.asarray(image, dtype=np.float64), wavelet, mode=mode, level=level)
    bands = {f"A{level}": coeffs[0]}
    for offset, details in enumerate(coeffs[1:]):
        current = level - offset
        for letter, band in zip("HVD", details, strict=True):
            bands[f"{letter}{current}"] = band
    return bands


def normalise_subband(band: np.ndarray, approximation: bool) -> np.ndarray:
    r"""Map a sub-band to [0, 1]: divide by its largest magnitude, as the seed did.

    With :math:`v = c / \max|c|`: the approximation band (non-negative up to filter ringing)
    becomes :math:`\max(v, 0)`; a detail band, signed by nature, becomes :math:`(v + 1) / 2`.
    The seed multiplied :math:`v` by 255 and wrote an 8-bit PNG, which silently clipped every
    negative detail coefficient to 0; the affine map keeps both signs.
    """
    peak = float(np.abs(band).max())
    v = band / peak if peak > 0 else np.zeros_like(band)
    return np.clip(v, 0.0, 1.0) if approximation else (v + 1.0) / 2.0


def subband_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The region of interest resampled (nearest neighbour) to a sub-band, minus a 1-pixel border."""
    from skimage.transform import resize

    small = resize(mask.astype(np.float64), shape, order=0, anti_aliasing=False, preserve_range=True) > 0.5
    return small & border_mask(shape)


@register_feature_family("wavelet")
class WaveletFamily(FeatureFamily):
    r"""pyradiomics texture features of each sub-band of a 2-D discrete wavelet transform.

    :math:`I \mapsto \{A_L, H_l, V_l, D_l\}_{l=1..L}` by ``pywt.wavedec2`` (default ``db2``,
    :math:`L = 2`, periodization: the seed's 7 sub-bands). Each sub-band is normalised by
    its largest magnitude (:func:`normalise_subband`), scaled to 0-255 grey levels and passed
    through the pyradiomics classes with the given bin width; the mask is the region of
    interest resampled to the sub-band grid minus a 1-pixel border (the seed used the whole
    sub-band minus its border).

    Columns: ``dwt-<band>_<class>_<feature>``, e.g. ``dwt-A2_firstorder_Mean``,
    ``dwt-H1_glcm_Contrast`` (``dwt`` keeps them apart from pyradiomics' own undecimated
    ``wavelet-LH_...`` image type).

    Args:
        wavelet: PyWavelets wavelet name.
        level: decomposition depth.
        mode: PyWavelets signal-extension mode.
        bin_width: pyradiomics ``binWidth`` on the 0-255 sub-band.
        classes: pyradiomics feature classes.
        scale: grey level of a normalised value of 1.0.
        quantise: round grey levels to integers (the seed's 8-bit PNGs).
    """

    def __init__(
        self,
        wavelet: str = "db2",
        level: int = 2,
        mode: str = "periodization",
        bin_width: float = 25.0,
        classes: Sequence[str] = TEXTURE_CLASSES,
        scale: float = 255.0,
        quantise: bool = True,
    ) -> None:
        self.wavelet = wavelet
        self.level = level
        self.mode = mode
        self.bin_width = bin_width
        self.classes = tuple(classes)
        self.scale = scale
        self.quantise = quantise

    def compute(self, image: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
        image, mask = check_image_and_mask(image, mask)
        out: dict[str, float] = {}
        for name, band in wavelet_subbands(image, self.wavelet, self.level, self.mode).items():
            grey = to_grey_levels(normalise_subband(band, approximation=name.startswith("A")), self.scale, self.quantise)
            values = run_pyradiomics(grey, subband_mask(mask, band.shape), {"binWidth": self.bin_width}, self.classes)
            out.update({f"dwt-{name}_{key.removeprefix('original_')}": value for key, value in values.items()})
        return out
