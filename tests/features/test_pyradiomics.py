"""The pyradiomics adapter returns exactly what a direct pyradiomics call returns, quietly."""

from __future__ import annotations

import logging

import numpy as np
import SimpleITK as sitk
from radiomics import featureextractor

from osteolens.features import build_feature_family


def _image(shape=(40, 36), seed=0):
    rng = np.random.default_rng(seed)
    return rng.random(shape).astype(np.float32)


def test_adapter_equals_direct_pyradiomics_call():
    image = _image()
    mask = np.zeros(image.shape, bool)
    mask[5:30, 4:33] = True
    mask[12:18, 10:16] = False
    ours = build_feature_family({"name": "radiomics", "params": {"bin_width": 25}}).compute(image, mask)

    grey = np.rint(image.astype(np.float64) * 255.0)  # the documented 0-255 grey levels
    extractor = featureextractor.RadiomicsFeatureExtractor(binWidth=25)
    extractor.disableAllFeatures()
    for name in ("firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm", "shape2D"):
        extractor.enableFeatureClassByName(name)
    direct = extractor.execute(sitk.GetImageFromArray(grey), sitk.GetImageFromArray(mask.astype(np.uint8)))
    expected = {k: float(v) for k, v in direct.items() if not k.startswith("diagnostics_")}

    assert ours == expected
    assert len(ours) == 102  # 18 first order + 24 GLCM + 16 GLRLM + 16 GLSZM + 14 GLDM + 5 NGTDM + 9 shape2D
    assert "original_glcm_Contrast" in ours and "original_shape2D_PixelSurface" in ours
    assert ours["original_shape2D_PixelSurface"] == mask.sum()


def test_default_mask_is_the_seed_border_and_bin_width_matters():
    image = _image((30, 30), seed=1)
    default = build_feature_family("radiomics").compute(image)
    assert default["original_shape2D_PixelSurface"] == 28 * 28
    finer = build_feature_family({"name": "radiomics", "params": {"bin_width": 5, "classes": ["glcm"]}}).compute(image)
    assert finer["original_glcm_Contrast"] != default["original_glcm_Contrast"]
    assert all(k.startswith("original_glcm_") for k in finer)


def test_wavelet_image_type_columns():
    family = build_feature_family({"name": "radiomics", "params": {"classes": ["firstorder"], "image_types": ["Original", "Wavelet"]}})
    values = family.compute(_image((32, 32), seed=2))
    prefixes = {k.split("_")[0] for k in values}
    assert prefixes == {"original", "wavelet-LL", "wavelet-LH", "wavelet-HL", "wavelet-HH"}
    assert "wavelet-LH_firstorder_Mean" in values


def test_logger_is_quiet_during_and_restored_after(capfd):
    logger = logging.getLogger("radiomics")
    before = logger.level
    build_feature_family({"name": "radiomics", "params": {"classes": ["glcm"]}}).compute(_image((24, 24)))
    assert logger.level == before
    assert "GLCM is symmetrical" not in capfd.readouterr().err
