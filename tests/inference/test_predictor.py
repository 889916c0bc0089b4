"""Predictor: exact preprocessing replay, fold ensemble, post-processing by task, covariates, backends."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.special import expit, logit

from osteolens.errors import BundleError, ModelError
from osteolens.inference import Predictor, load_bundle
from osteolens.inference.covariates import encode_covariates
from osteolens.inference.preprocess import Preprocessor
from osteolens.io import Radiograph, RadiographMeta, read_radiograph, write_dicom
from osteolens.transforms import Pipeline


def test_preprocessing_replays_the_pipeline_exactly(radiograph_png, preprocessing):
    pixels = read_radiograph(radiograph_png).pixels
    image, _ = Preprocessor(preprocessing, (48, 48), in_chans=1)(pixels)
    expected = Pipeline.from_config(preprocessing)(pixels)
    assert image.shape == (1, 48, 48)
    assert np.array_equal(image[0], expected)


def test_preprocessing_appends_resize_and_repeats_channels():
    pixels = np.random.default_rng(0).random((30, 20), dtype=np.float32)
    image, geometry = Preprocessor([], (10, 8), in_chans=3)(pixels)
    assert image.shape == (3, 10, 8)
    assert np.array_equal(image[0], image[2])
    # resize 30 -> 10 rows: row_in = (row_out + 0.5) * 3 - 0.5
    assert geometry.scale_r == pytest.approx(3.0) and geometry.offset_r == pytest.approx(1.0)
    assert geometry.scale_c == pytest.approx(2.5) and geometry.offset_c == pytest.approx(0.75)


def test_geometry_maps_network_pixels_back_through_crop_pad_resize():
    # Content box rows 20-70, columns 10-50 of a 90 x 70 image (the fixture's layout).
    pixels = np.zeros((90, 70), np.float32)
    pixels[20:70, 10:50] = 0.5
    steps = [{"name": "crop_to_content", "params": {"low": 0.1}}, {"name": "pad_to_square"},
             {"name": "resize", "params": {"size": 48}}]
    image, geometry = Preprocessor(steps, (48, 48))(pixels)
    # Hand computation: crop -> 50 x 40 at (20, 10); pad 5 columns left -> 50 x 50; resize 50 -> 48.
    # Network pixel (24, 24): padded (24.5 * 50/48 - 0.5) = 25.02 -> original (45.02, 30.02).
    marker = np.zeros((48, 48), np.float32)
    marker[24, 24] = 1.0
    back = geometry.to_original(marker, pixels.shape)
    assert back.shape == (90, 70)
    assert np.unravel_index(np.argmax(back), back.shape) == (45, 30)
    # Network column 1 lies in the padding (original column 5.6, left of the crop): nothing there.
    marker = np.zeros((48, 48), np.float32)
    marker[24, 1] = 1.0
    assert geometry.box == (20, 10, 70, 50)
    assert geometry.to_original(marker, pixels.shape).max() == 0.0
    # The content itself comes back where it was; what the crop removed stays empty.
    restored = geometry.to_original(image[0], pixels.shape)
    assert np.abs(restored[22:68, 12:48] - 0.5).max() < 1e-5
    assert restored[:18].max() == 0.0 and restored[72:].max() == 0.0 and restored[:, 52:].max() == 0.0


def test_binary_postprocessing_averages_fold_logits(make_bundle):
    predictor = Predictor(make_bundle(threshold=0.3), backend="torch")
    outputs = np.array([[[0.0], [2.0]], [[1.0], [-3.0]]], np.float32)  # [F=2, N=2, K=1]
    results = predictor.postprocess(outputs)
    p0 = expit((0.0 + 1.0) / 2)
    p1 = expit((2.0 - 3.0) / 2)  # 0.378
    assert results[0]["probability"] == pytest.approx(p0, abs=1e-6)
    assert results[1]["probability"] == pytest.approx(p1, abs=1e-6)
    assert results[0]["label"] == "osteoporosis" and results[1]["label"] == "osteoporosis"  # 0.378 >= 0.3
    assert results[1]["probabilities"]["normal"] == pytest.approx(1 - p1, abs=1e-6)
    assert results[0]["threshold"] == 0.3


def test_binary_threshold_decides_the_label(make_bundle):
    predictor = Predictor(make_bundle(threshold=0.8), backend="torch")
    result = predictor.postprocess(np.array([[[logit(0.79)]]], np.float32))[0]
    assert result["label"] == "normal" and result["probability"] == pytest.approx(0.79, abs=1e-6)
    result = predictor.postprocess(np.array([[[logit(0.81)]]], np.float32))[0]
    assert result["label"] == "osteoporosis"


def test_calibration_is_applied_to_the_ensemble_probability(make_bundle):
    predictor = Predictor(make_bundle(folds=1, calibration={"method": "platt", "params": {"a": 2.0, "b": 0.5}}),
                          backend="torch")
    result = predictor.postprocess(np.array([[[logit(0.6)]]], np.float32))[0]
    assert result["probability"] == pytest.approx(expit(2.0 * logit(0.6) + 0.5), abs=1e-6)


def test_multiclass_and_ordinal_postprocessing(make_bundle):
    multi = Predictor(make_bundle("multiclass", name="m"), backend="torch")
    z = np.log(np.array([0.2, 0.5, 0.3]))
    # two folds whose logits differ by a constant: same softmax as their mean
    result = multi.postprocess(np.stack([z[None] + 1.0, z[None] - 1.0]).astype(np.float32))[0]
    assert result["label"] == "osteopenia" and result["probability"] == pytest.approx(0.5, abs=1e-6)
    assert list(result["probabilities"]) == ["normal", "osteopenia", "osteoporosis"]
    ordinal = Predictor(make_bundle("ordinal", name="o"), backend="torch")
    # CORAL: P(y > 0) = 0.8, P(y > 1) = 0.3 -> P = [0.2, 0.5, 0.3].
    cumulative = np.array([[[logit(0.8), logit(0.3)]]] * 2, np.float32)
    result = ordinal.postprocess(cumulative)[0]
    assert result["probabilities"]["osteoporosis"] == pytest.approx(0.3, abs=1e-6)
    assert result["label"] == "osteopenia" and result["probability"] == pytest.approx(0.5, abs=1e-6)


def test_temperature_calibration_softens_multiclass_probabilities(make_bundle):
    bundle = make_bundle("multiclass", name="t", folds=1, calibration={"method": "temperature",
                                                                      "params": {"temperature": 2.0}})
    predictor = Predictor(bundle, backend="torch")
    z = np.log(np.array([0.2, 0.5, 0.3]))
    result = predictor.postprocess(z[None, None].astype(np.float32))[0]
    # Hand computation: softmax(log p / 2) = sqrt(p) / sum(sqrt(p)).
    expected = np.sqrt([0.2, 0.5, 0.3]) / np.sqrt([0.2, 0.5, 0.3]).sum()
    assert list(result["probabilities"].values()) == pytest.approx(expected.tolist(), abs=1e-6)
    assert result["label"] == "osteopenia" and result["probability"] == pytest.approx(expected[1], abs=1e-6)


def test_regression_undoes_target_scaling_and_averages_folds(make_bundle):
    predictor = Predictor(make_bundle("regression"), backend="torch")
    result = predictor.postprocess(np.array([[[1.0]], [[-0.5]]], np.float32))[0]
    assert result["value"] == pytest.approx(150 + 30 * 0.25)
    assert result["label"] is None and result["probability"] is None


def test_predict_matches_a_hand_run_of_the_models(make_bundle, radiograph_png, preprocessing):
    path = make_bundle(threshold=0.5)
    bundle = load_bundle(path)
    pixels = read_radiograph(radiograph_png).pixels
    x = torch.from_numpy(Pipeline.from_config(preprocessing)(pixels))[None, None]
    with torch.no_grad():
        expected = torch.sigmoid(torch.stack([m(x) for m in bundle.models]).mean()).item()
    for backend in ("torch", "onnx"):
        prediction = Predictor(path, backend=backend).predict(radiograph_png)
        assert prediction.probability == pytest.approx(expected, abs=1e-5)
        assert prediction.label == ("osteoporosis" if expected >= 0.5 else "normal")
        assert prediction.model["backend"] == backend and prediction.model["folds"] == 2
        assert set(prediction.timing_ms) == {"read", "preprocess", "model", "total"}
        json.dumps(prediction.to_dict())


def test_predict_batch_equals_single_predictions(make_bundle, radiograph_png, tmp_path):
    predictor = Predictor(make_bundle(), backend="onnx")
    other = Radiograph(np.flipud(read_radiograph(radiograph_png).pixels).copy())
    batch = predictor.predict_batch([radiograph_png, other])
    singles = [predictor.predict(radiograph_png), predictor.predict(other)]
    for b, s in zip(batch, singles):
        assert b.probability == pytest.approx(s.probability, abs=1e-6)


def test_covariates_come_from_request_then_dicom_tags():
    scaling = {"age": {"mean": 60.0, "std": 10.0}}
    meta = RadiographMeta(sex="F", age_years=80.0)
    assert encode_covariates(["sex", "age"], scaling, None, meta).tolist() == [[0.0, 2.0]]
    assert encode_covariates(["sex", "age"], scaling, {"age": 70, "sex": "M"}, meta).tolist() == [[1.0, 1.0]]
    with pytest.raises(ModelError, match="covariate 'age' is required.*PatientAge"):
        encode_covariates(["sex", "age"], scaling, {"sex": "F"}, RadiographMeta(sex="F"))
    with pytest.raises(ModelError, match="covariate 'sex' is required"):
        encode_covariates(["sex"], {}, None, RadiographMeta(sex="O"))
    with pytest.raises(ModelError, match="covariate 'bmi' is required"):
        encode_covariates(["bmi"], {"bmi": {"mean": 1, "std": 1}}, None, meta)
    assert encode_covariates([], scaling, None, meta) is None


def test_tabular_model_reads_sex_and_age_from_dicom(make_bundle, tmp_path, radiograph_png):
    pixels = read_radiograph(radiograph_png).pixels
    dicom = write_dicom(Radiograph(pixels, meta=RadiographMeta(sex="F", age_years=71)), tmp_path / "scan.dcm")
    predictor = Predictor(make_bundle(tabular=("sex", "age")), backend="onnx")
    from_tags = predictor.predict(dicom)
    explicit = predictor.predict(radiograph_png, covariates={"sex": "F", "age": 71})
    assert from_tags.probability == pytest.approx(explicit.probability, abs=1e-4)
    with pytest.raises(ModelError, match="covariate 'sex' is required"):
        predictor.predict(radiograph_png)


def test_unsupported_bundles_are_refused(make_bundle):
    with pytest.raises(BundleError, match="a platt calibration is stored for a multiclass model, which takes temperature"):
        Predictor(make_bundle("multiclass", calibration={"method": "platt", "params": {"a": 1, "b": 0}}),
                  backend="torch")
    with pytest.raises(BundleError, match="a temperature calibration is stored for a binary model"):
        Predictor(make_bundle(name="b1", calibration={"method": "temperature", "params": {"temperature": 1.5}}),
                  backend="torch")
    with pytest.raises(ModelError, match="unknown backend"):
        Predictor(make_bundle(name="b2"), backend="tensorrt")
    with pytest.raises(ModelError, match="unknown CAM method 'scorecam'"):
        Predictor(make_bundle(name="b3"), cam_method="scorecam")


def test_cam_heatmap_is_on_the_original_grid(make_bundle, radiograph_png):
    predictor = Predictor(make_bundle(), backend="torch")
    prediction = predictor.predict(radiograph_png, cam=True, saliency=True, cam_method="gradcam++")
    assert prediction.heatmap.shape == (90, 70) and prediction.saliency.shape == (90, 70)
    assert prediction.heatmap.max() <= 1.0 and prediction.heatmap.min() >= 0.0
    # crop_to_content keeps rows 20-70 and columns 10-50: nothing outside was seen by the network.
    assert prediction.heatmap[:19].max() == 0.0 and prediction.heatmap[:, 51:].max() == 0.0
    assert prediction.cam_method == "gradcam++" and "explain" in prediction.timing_ms


def test_warm_up_runs_the_whole_path_and_changes_no_result(make_bundle, radiograph_png):
    path = make_bundle(tabular=("sex", "age"))
    covariates = {"sex": "F", "age": 71}
    cold = Predictor(path, backend="torch").predict(radiograph_png, covariates=covariates, cam=True)
    warm = Predictor(path, backend="torch")
    warm.warm_up()  # synthetic sample through preprocessing, model, post-processing and Grad-CAM
    after = warm.predict(radiograph_png, covariates=covariates, cam=True)
    assert after.probability == pytest.approx(cold.probability, abs=1e-6) and after.label == cold.label
    assert np.allclose(after.heatmap, cold.heatmap, atol=1e-6)


def test_predict_many_goes_on_after_failures_and_keeps_order(make_bundle, radiograph_png, tmp_path):
    from osteolens.errors import RadiographReadError

    predictor = Predictor(make_bundle(), backend="onnx")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    sources = [radiograph_png, broken, radiograph_png, tmp_path / "missing.dcm", radiograph_png]
    results = list(predictor.predict_many(sources, batch_size=2))
    assert [i for i, _ in results] == [0, 1, 2, 3, 4]
    assert isinstance(results[1][1], RadiographReadError) and isinstance(results[3][1], RadiographReadError)
    single = predictor.predict(radiograph_png).probability
    for i in (0, 2, 4):
        assert results[i][1].probability == pytest.approx(single, abs=1e-6)
    with pytest.raises(RadiographReadError):
        predictor.predict_batch(sources)


def test_explaining_a_chosen_class(make_bundle, radiograph_png):
    predictor = Predictor(make_bundle("multiclass"), backend="torch")
    predicted = predictor.predict(radiograph_png, cam=True)
    assert predicted.cam_class == predicted.label
    other = next(label for label in predictor.bundle.labels if label != predicted.label)
    chosen = predictor.predict(radiograph_png, cam=True, cam_class=other)
    assert chosen.cam_class == other and chosen.label == predicted.label
    assert not np.allclose(chosen.heatmap, predicted.heatmap)
    with pytest.raises(ModelError, match="cam class 'fracture' is not one of"):
        predictor.predict(radiograph_png, cam=True, cam_class="fracture")
