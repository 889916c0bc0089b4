"""Seed Fourier features: RMS and FMS of the log-magnitude spectrum."""

from __future__ import annotations

import numpy as np

from osteolens.errors import ConfigError
from osteolens.features.base import FeatureFamily, check_image_and_mask, register_feature_family
from osteolens.features.pyradiomics_family import to_grey_levels


def log_magnitude_spectrum(grey: np.ndarray, log_base: str = "e", eps: float = 1e-6) -> np.ndarray:
    r""":math:`S = 20 \log |\mathrm{fftshift}(\mathrm{fft2}(g))|`, magnitudes floored at ``eps``.

    The floor keeps :math:`S` finite where the spectrum vanishes (the seed got ``-inf``
    there); ``eps`` is far below one grey level, so ordinary images are unaffected.
    """
    if log_base not in ("e", "10"):
        raise ConfigError("fourier.log_base", f"unknown log base {log_base!r}.", "use 'e' (the seed's np.log) or '10'.")
    magnitude = np.maximum(np.abs(np.fft.fftshift(np.fft.fft2(grey))), eps)
    return 20.0 * (np.log(magnitude) if log_base == "e" else np.log10(magnitude))


@register_feature_family("fourier")
class FourierFamily(FeatureFamily):
    r"""Root-mean-square and first-moment summaries of the log-magnitude spectrum.

    With grey levels :math:`g = \mathrm{round}(255\, I)` of the (rectangular) ROI, :math:`R`
    rows and :math:`S` the log-magnitude spectrum above (natural log, as the seed's
    ``20*np.log``):

    .. math::

        \mathrm{RMS} = \frac{\sqrt{\operatorname{mean}(S^2)}}{\sqrt{R}}, \qquad
        \mathrm{FMS} = \frac{\sum |S|}{R}.

    Both are the seed's definitions (it divided by ``len(spectrum)``, the number of rows).
    The FFT needs a rectangle, so the mask is not used: pass the ROI crop.

    Columns: ``fourier_rms``, ``fourier_fms``.

    Args:
        scale: grey level of a pixel equal to 1.0.
        quantise: round grey levels to integers (the seed's 8-bit PNGs).
        log_base: ``"e"`` (seed) or ``"10"`` (decibels).
        eps: floor on spectrum magnitudes.
    """

    def __init__(self, scale: float = 255.0, quantise: bool = True, log_base: str = "e", eps: float = 1e-6) -> None:
        self.scale = scale
        self.quantise = quantise
        self.log_base = log_base
        self.eps = eps

    def compute(self, image: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
        image, _ = check_image_and_mask(image, mask)
        spectrum = log_magnitude_spectrum(to_grey_levels(image, self.scale, self.quantise), self.log_base, self.eps)
        rows = spectrum.shape[0]
        return {
            "fourier_rms": float(np.sqrt(np.mean(spectrum**2)) / np.sqrt(rows)),
            "fourier_fms": float(np.sum(np.abs(spectrum)) / rows),
        }
