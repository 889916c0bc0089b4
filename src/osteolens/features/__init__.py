"""Feature families (radiomics, CNN embeddings) and their extraction over a manifest.

Families (registered by name, rebuilt from ``{"name", "params"}``):

| name | what | columns |
|---|---|---|
| ``radiomics`` | pyradiomics first order, GLCM, GLRLM, GLSZM, GLDM, NGTDM, shape 2D | ``original_glcm_Contrast`` ... |
| ``wavelet`` | the same texture classes on the 7 ``db2`` level-2 sub-bands | ``dwt-H1_glcm_Contrast`` ... |
| ``fourier`` | RMS / FMS of the log-magnitude spectrum | ``fourier_rms``, ``fourier_fms`` |
| ``variogram`` | initial slope of the variogram (random directions) | ``variogram_isv`` ... |
| ``variogram_fixed`` | the same with evenly spaced directions | ``variogram_fixed_isv`` ... |
| ``lbp`` | uniform local binary pattern histogram | ``lbp_P8_R1_0`` ... |
| ``fractal`` | box-counting dimension | ``fractal_dimension`` |
| ``cnn`` | average / max pooling of a frozen ImageNet network (batched) | ``cnn_avg_0000`` ... ``cnn_max_1279`` |
"""

from __future__ import annotations

from osteolens.features import cnn, fourier, fractal, lbp, pyradiomics_family, variogram, wavelet  # noqa: F401  (registration)
from osteolens.features.base import (
    FeatureFamily,
    border_mask,
    build_feature_family,
    feature_family_class,
    feature_family_names,
    register_feature_family,
)
from osteolens.features.extract import (
    SEED_FAMILIES,
    ExtractionConfig,
    ExtractionResult,
    extract_features,
    load_feature_table,
    prepare_roi,
)
from osteolens.features.variogram import Variogram, semivariogram

__all__ = [
    "SEED_FAMILIES",
    "ExtractionConfig",
    "ExtractionResult",
    "FeatureFamily",
    "Variogram",
    "border_mask",
    "build_feature_family",
    "extract_features",
    "feature_family_class",
    "feature_family_names",
    "load_feature_table",
    "prepare_roi",
    "register_feature_family",
    "semivariogram",
]
