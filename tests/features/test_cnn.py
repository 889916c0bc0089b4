"""The ``cnn`` family: frozen pretrained-network embeddings, checked against hand-written forwards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from osteolens.data.manifest import Manifest
from osteolens.errors import ConfigError
from osteolens.features import ExtractionConfig, build_feature_family, extract_features, load_feature_table
from osteolens.features import cnn as cnn_module
from osteolens.features.cnn import CNNFamily, fit_square, stretch_square
from osteolens.io import write_png

SMALL = {"weights": None, "input_size": 64, "batch_size": 4}  # seeded random weights: fast, offline


@pytest.fixture
def family() -> CNNFamily:
    return CNNFamily(**SMALL)


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random((50 + 7 * i, 70 - 5 * i)) for i in range(n)]


def _hand_forward(module: torch.nn.Module, x: torch.Tensor, stage_block: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """EfficientNet written out: stem, blocks, head convolution; the output after block ``stage_block`` too."""
    stage = None
    h = module.bn1(module.conv_stem(x))
    for i, block in enumerate(module.blocks, start=1):
        h = block(h)
        if i == stage_block:
            stage = h
    return module.bn2(module.conv_head(h)), stage


def _tensor(family: CNNFamily, image: np.ndarray) -> torch.Tensor:
    """The normalised network input of one image, by hand: EfficientNet-Lite's (x - 0.5) / 0.5."""
    return (torch.from_numpy(family.prepare(image)[0])[None, None] - 0.5) / 0.5


def test_fit_square_matches_pil_bilinear_and_pads_centred():
    from PIL import Image

    rng = np.random.default_rng(1)
    image = rng.random((120, 60)).astype(np.float32)
    out = fit_square(image, 64)
    reference = np.asarray(Image.fromarray(image, mode="F").resize((32, 64), Image.BILINEAR))  # PIL: (width, height)
    np.testing.assert_allclose(out[:, 16:48], reference, atol=2e-6)
    assert out.shape == (64, 64) and not out[:, :16].any() and not out[:, 48:].any()
    assert fit_square(out, 64) is out  # preparing twice is preparing once
    assert fit_square(np.ones((64, 64)), 64).dtype == np.float32
    stretched = stretch_square(image, 64)
    np.testing.assert_allclose(stretched, np.asarray(Image.fromarray(image, mode="F").resize((64, 64), Image.BILINEAR)), atol=2e-6)
    assert stretch_square(stretched, 64) is stretched
    assert CNNFamily(**SMALL).prepare(image)[0].shape == CNNFamily(**SMALL, resize="pad").prepare(image)[0].shape == (64, 64)
    np.testing.assert_array_equal(CNNFamily(**SMALL, resize="pad").prepare(image)[0], out)


def test_features_equal_a_hand_written_forward(family):
    image = _images(1)[0]
    got = family.compute(image)
    module = family.network().module
    with torch.no_grad():
        head, _ = _hand_forward(module, _tensor(family, image))
    channels = head.shape[1]
    assert channels == 1280 and len(got) == 2 * channels
    assert list(got)[:2] == ["cnn_avg_0000", "cnn_avg_0001"] and list(got)[channels] == "cnn_max_0000"
    assert list(got)[-1] == "cnn_max_1279"
    np.testing.assert_allclose([got[f"cnn_avg_{c:04d}"] for c in range(channels)], head.mean(dim=(2, 3))[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([got[f"cnn_max_{c:04d}"] for c in range(channels)], head.amax(dim=(2, 3))[0], rtol=1e-5, atol=1e-6)


def test_pooling_of_the_last_and_an_extra_stage_equals_torch_pooling_ops():
    family = CNNFamily(**SMALL, extra_stage=2, pooling="max,avg")
    image = _images(1, seed=2)[0]
    got = family.compute(image)
    module = family.network().module
    with torch.no_grad():
        head, stage = _hand_forward(module, _tensor(family, image), stage_block=module.stage_ends[2])
    assert stage.shape[1] == 40  # efficientnet_lite0 feature_info[2]: 40 channels at stride 8
    names = family.feature_names()
    assert names[0] == "cnn_max_0000" and names[1280] == "cnn_avg_0000" and names[2560] == "cnn_stage2_max_0000"
    assert names[-1] == "cnn_stage2_avg_0039" and len(names) == len(got) == 2 * 1280 + 2 * 40
    expected = {
        "cnn_max": F.adaptive_max_pool2d(head, 1).flatten(), "cnn_avg": F.adaptive_avg_pool2d(head, 1).flatten(),
        "cnn_stage2_max": F.adaptive_max_pool2d(stage, 1).flatten(), "cnn_stage2_avg": F.adaptive_avg_pool2d(stage, 1).flatten(),
    }
    for prefix, values in expected.items():
        np.testing.assert_allclose([got[f"{prefix}_{c:04d}"] for c in range(len(values))], values, rtol=1e-5, atol=1e-6)


def test_hflip_averages_the_image_and_its_mirror(family):
    image = fit_square(_images(1, seed=3)[0], 64)
    flipped = CNNFamily(**SMALL, hflip=True).compute(image)
    plain, mirror = family.compute(image), family.compute(np.ascontiguousarray(image[:, ::-1]))
    assert flipped.keys() == plain.keys()
    np.testing.assert_allclose(list(flipped.values()), [(plain[k] + mirror[k]) / 2 for k in plain], rtol=1e-5, atol=1e-6)
    assert not np.allclose(list(plain.values()), list(mirror.values()))  # the mirror does differ


def test_deterministic_across_runs_and_network_rebuilds(family, monkeypatch):
    images = _images(3)
    first = family.compute_batch(images, [None] * 3)
    assert family.compute_batch(images, [None] * 3) == first
    monkeypatch.setattr(cnn_module, "_NETS", {})  # a new process: the network is built again
    assert CNNFamily(**SMALL).compute_batch(images, [None] * 3) == first


def test_network_is_built_once_per_parameter_set(family, monkeypatch):
    import osteolens.models.backbones as backbones

    calls = []

    build = backbones.build_backbone
    monkeypatch.setattr(backbones, "build_backbone", lambda *a, **k: calls.append(a) or build(*a, **k))
    monkeypatch.setattr(cnn_module, "_NETS", {})
    for image in _images(3):
        family.compute(image)
    CNNFamily(**{**SMALL, "input_size": 96}).compute(_images(1)[0])  # same network, other input size
    assert len(calls) == 1


def test_batch_equals_one_by_one(family):
    images = _images(5)  # batch_size 4: one batch of 4, one of 1
    batched = family.compute_batch(images, [None] * 5)
    for image, row in zip(images, batched, strict=True):
        single = family.compute(image)
        # Equal up to float32 rounding: convolution kernels block a batch of 4 and of 1 differently.
        np.testing.assert_allclose(list(row.values()), list(single.values()), rtol=1e-4, atol=2e-5)
        assert row.keys() == single.keys()


def test_bad_parameters_name_the_problem():
    with pytest.raises(ConfigError, match="pooling"):
        CNNFamily(pooling="avg,median")
    with pytest.raises(ConfigError, match="input_size"):
        CNNFamily(input_size=8)
    with pytest.raises(ConfigError, match="stretch or pad"):
        CNNFamily(resize="crop")
    with pytest.raises(ConfigError, match="stages 0-4, not 9"):
        CNNFamily(**SMALL, extra_stage=9).compute(np.ones((20, 20)))
    spec = json.loads(json.dumps(CNNFamily(**SMALL).to_config()))
    assert spec == {"name": "cnn", "params": {"model": "tf_efficientnet_lite0", "weights": None, "input_size": 64, "resize": "stretch",
                                             "pooling": "avg,max", "extra_stage": None, "hflip": False, "batch_size": 4}}
    assert build_feature_family(spec).params == spec["params"]


@pytest.fixture
def manifest(tmp_path) -> Manifest:
    rows = []
    for i, image in enumerate(_images(5, seed=4)):
        if i == 3:
            image = np.ones_like(image)  # a white image: the patched network below fails on it
        write_png(image, tmp_path / f"img{i}.png", bits=8)
        rows.append({"image": f"img{i}.png", "patient_id": f"P{i}", "label": "ab"[i % 2]})
    (tmp_path / "broken.png").write_bytes(b"not a png")
    rows.insert(1, {"image": "broken.png", "patient_id": "P9", "label": "a"})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    return Manifest.read(tmp_path / "manifest.csv")


def test_extraction_batches_keeps_order_and_fails_single_images(manifest, monkeypatch):
    from osteolens.io import read_radiograph

    original = CNNFamily.compute_batch
    calls: list[int] = []

    def fragile(self, images, masks):  # a network that fails on any batch holding a white image
        calls.append(len(images))
        if any((fit_square(i, self.input_size)[28:36, 28:36] > 0.999).all() for i in images):
            raise RuntimeError("white image")
        return original(self, images, masks)

    monkeypatch.setattr(CNNFamily, "compute_batch", fragile)
    families = [{"name": "cnn", "params": {**SMALL, "batch_size": 2}}, "fourier"]
    progress: list[tuple[int, int]] = []
    result = extract_features(manifest, ExtractionConfig(families=families, roi="none", equalise=False), on_progress=lambda *a: progress.append(a))
    assert result.table["image"].tolist() == ["img0.png", "img1.png", "img2.png", "img4.png"]  # manifest order
    assert progress[-1] == (6, 6) and [d for d, _ in progress] == sorted({d for d, _ in progress})
    assert [(p.rsplit("/", 1)[-1], r.split(":")[0]) for p, r in result.failures] == [("broken.png", "RadiographReadError"), ("img3.png", "TransformError")]
    assert "white image" in result.failures[1][1] and "feature family 'cnn' failed" in result.failures[1][1]
    assert calls[:4] == [2, 2, 1, 1]  # batches of 2; the failing batch (img2, img3) retried one by one
    assert result.feature_columns[:2] == ["cnn_avg_0000", "cnn_avg_0001"] and result.feature_columns[-2:] == ["fourier_rms", "fourier_fms"]
    direct = CNNFamily(**SMALL).compute(read_radiograph(manifest.resolve("img4.png")).pixels.astype(np.float64))
    row = result.table.set_index("image").loc["img4.png"]
    np.testing.assert_allclose(row[list(direct)].to_numpy(dtype=float), list(direct.values()), rtol=1e-4, atol=2e-5)
    assert result.provenance["cnn"]["weights"]["source"].startswith("random initialisation")
    assert result.provenance["cnn"]["normalisation"] == {"mean": 0.5, "std": 0.5}


def test_equalisation_reaches_radiomics_families_but_not_the_network(manifest):
    from skimage.exposure import equalize_hist

    from osteolens.io import read_radiograph

    families = [{"name": "cnn", "params": SMALL}, "fourier"]
    result = extract_features(manifest, ExtractionConfig(families=families, roi="none", equalise=True))
    pixels = read_radiograph(manifest.resolve("img0.png")).pixels.astype(np.float64)
    row = result.table.set_index("image").loc["img0.png"]
    network = CNNFamily(**SMALL).compute(pixels)
    np.testing.assert_allclose(row[list(network)].to_numpy(dtype=float), list(network.values()), rtol=1e-4, atol=2e-5)
    fourier = build_feature_family("fourier").compute(equalize_hist(pixels, nbins=256))
    assert row["fourier_rms"] == pytest.approx(fourier["fourier_rms"], rel=1e-12)


@pytest.mark.slow
def test_two_workers_give_the_same_table(manifest):
    config = ExtractionConfig(families=[{"name": "cnn", "params": SMALL}], roi="none")
    one, two = extract_features(manifest, config, jobs=1), extract_features(manifest, config, jobs=2)
    pd.testing.assert_frame_equal(one.table, two.table)  # same batches in the same process: identical
    assert one.failures == two.failures


def test_cli_extract_with_family_params(manifest, tmp_path):
    from osteolens.cli.main import app

    out = tmp_path / "out" / "cnn.parquet"
    params = json.dumps({"cnn": {"weights": None, "input_size": 64, "pooling": "avg"}})
    result = CliRunner().invoke(app, ["features", "extract", str(tmp_path / "manifest.csv"), "--families", "cnn", "--family-params", params,
                                      "--roi", "none", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table, sidecar = load_feature_table(out)
    assert len(table) == 5 and sidecar["feature_columns"][-1] == "cnn_avg_1279" and len(sidecar["feature_columns"]) == 1280
    assert sidecar["config"]["families"][0]["params"]["input_size"] == 64
    assert sidecar["manifest"] == str((tmp_path / "manifest.csv").resolve())
    assert sidecar["provenance"]["cnn"]["weights"]["spec"] is None
    bad = CliRunner().invoke(app, ["features", "extract", str(tmp_path / "manifest.csv"), "--families", "cnn", "--family-params", '{"fourier": {}}'])
    assert bad.exit_code != 0 and "not among the extracted families" in " ".join(str(bad.exception).split())


@pytest.mark.realdata
def test_knee_images_with_packaged_imagenet_weights(real_dataset):
    from osteolens.data.manifest import file_sha256

    root = real_dataset("knee_osteoporosis")
    frame = pd.read_csv(root / "labels.csv", dtype={"patient_id": str}).head(4)
    manifest = Manifest(frame[["image", "patient_id", "label"]], root, root / "labels.csv")
    config = ExtractionConfig(families=[{"name": "cnn", "params": {"input_size": 256}}], roi="none", equalise=False)
    result = extract_features(manifest, config)
    assert not result.failures and len(result.table) == 4
    values = result.table[result.feature_columns].to_numpy()
    assert values.shape == (4, 2560) and np.isfinite(values).all()
    assert (values[:, 1280:] >= values[:, :1280] - 1e-5).all()  # the max of a channel is at least its mean
    assert values.std(axis=0).mean() > 0  # different knees, different embeddings
    weights = result.provenance["cnn"]["weights"]
    assert weights["spec"] == "imagenet" and weights["licence"] == "Apache-2.0"
    assert file_sha256(Path(weights["path"])) == weights["sha256"]
