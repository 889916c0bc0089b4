"""Fine-tuning that keeps what pretraining learned: LP-FT, frozen batch-norm statistics,
layer-wise learning-rate decay, an EMA of the weights and horizontal-flip averaging, each
checked against a hand computation, plus exact resume across the probe / fine-tune switch."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import TensorDataset

from osteolens.errors import BundleError, ConfigError
from osteolens.models import create_model
from osteolens.training import TrainConfig, run_training
from osteolens.training.checkpoint import state_tensors
from osteolens.training.loop import FitSettings, _start_phase, fit, make_fabric, predict_outputs
from osteolens.training.progress import TrainingProgress

SMALL_CNN = {"name": "simple_cnn", "params": {"conv_layers": 2, "filters": 4, "dense_units": 8}}


def _config(manifest: Path, out: Path, **changes) -> TrainConfig:
    data = {
        "manifest": str(manifest), "target": "label", "task": "binary", "model": dict(SMALL_CNN),
        "input_size": [32, 32], "augmentation": "default", "folds": 2, "epochs": 4, "batch_size": 8, "lr": 3e-3,
        "warmup_epochs": 1, "patience": 5, "out": str(out), "report": False, "seed": 0,
    }
    data.update(changes)
    return TrainConfig.from_dict(data)


def _settings(**changes) -> FitSettings:
    values = dict(task="binary", epochs=1, batch_size=4, lr=1e-2, backbone_lr_mult=1.0, weight_decay=1e-4,
                  scheduler="constant", warmup_epochs=0, patience=5, grad_clip=1.0, seed=0, num_workers=0,
                  channels_last=False, lp_epochs=0, freeze_bn=False, layer_decay=1.0, ema_decay=None, ema_warmup=True,
                  tta_hflip=False)
    values.update(changes)
    return FitSettings(**values)


def _tiny_data(n: int = 12, size: int = 16, seed: int = 0) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, size, size, generator=generator)
    return TensorDataset(images, torch.zeros(n, 0), torch.arange(n) % 2)


def _small_net(**kwargs):
    torch.manual_seed(0)
    return create_model("simple_cnn", "binary", 1, conv_layers=2, filters=4, dense_units=8, **kwargs)


# --------------------------------------------------------------------------- configuration
def test_config_defaults_are_off_and_bad_values_name_their_key(tmp_path):
    config = _config(tmp_path / "m.csv", tmp_path)
    assert (config.lp_epochs, config.freeze_bn, config.layer_decay, config.ema_decay, config.tta_hflip) == (
        0, False, 1.0, None, False)
    settings = FitSettings.from_config(_config(tmp_path / "m.csv", tmp_path, lp_epochs=2, layer_decay=0.5,
                                               ema_decay=0.99, freeze_bn=True, tta_hflip=True), seed=3)
    assert (settings.lp_epochs, settings.layer_decay, settings.ema_decay, settings.freeze_bn, settings.tta_hflip,
            settings.seed) == (2, 0.5, 0.99, True, True, 3)
    bad = [({"lp_epochs": 4}, "lp_epochs"), ({"lp_epochs": -1}, "lp_epochs"),
           ({"lp_epochs": 1, "model": {**SMALL_CNN, "finetune": "head"}}, "already a linear probe"),
           ({"layer_decay": 0.0}, "layer_decay"), ({"layer_decay": 1.5}, "layer_decay"),
           ({"ema_decay": 1.0}, "ema_decay"), ({"tta_hflip": "yes"}, "tta_hflip"), ({"freeze_bn": 1}, "freeze_bn")]
    for changes, message in bad:
        with pytest.raises(ConfigError, match=message):
            _config(tmp_path / "m.csv", tmp_path, **changes)


# --------------------------------------------------------------------------- layer-wise decay
def _lr_of(groups: list[dict]) -> dict[int, float]:
    lrs = {}
    for group in groups:
        for p in group["params"]:
            assert id(p) not in lrs
            lrs[id(p)] = group["lr"]
    return lrs


@pytest.mark.parametrize(("name", "depths"), [
    # resnet18 stages: act1 (no parameters), layer1 ... layer4; stem conv1 / bn1 before act1.
    ("resnet18", {"conv1.weight": 6, "bn1.weight": 6, "layer1.0.conv1.weight": 4, "layer2.1.bn2.bias": 3,
                  "layer3.0.downsample.0.weight": 2, "layer4.1.conv2.weight": 1}),
    # efficientnet_lite0 stages: blocks.0, .1, .2, .4, .6; blocks.3 belongs to blocks.2's stage,
    # conv_head (after the last stage) to the last one.
    ("efficientnet_lite0", {"conv_stem.weight": 6, "bn1.weight": 6, "blocks.0.0.conv_dw.weight": 5,
                            "blocks.1.0.conv_pw.weight": 4, "blocks.3.0.conv_pw.weight": 3,
                            "blocks.5.0.bn1.bias": 2, "blocks.6.0.conv_pwl.weight": 1, "conv_head.weight": 1}),
])
def test_layer_decay_learning_rates_by_stage_of_a_timm_backbone(name, depths):
    lr, mult, d = 1e-2, 0.5, 0.7
    net = create_model(name, "binary", 1)
    assert len(net.stages) == 5
    groups = net.parameter_groups(lr, mult, weight_decay=0.05, layer_decay=d)
    lrs = _lr_of(groups)
    params = dict(net.backbone.named_parameters())
    for param_name, depth in depths.items():
        assert lrs[id(params[param_name])] == pytest.approx(lr * mult * d**depth), param_name
    assert lrs[id(net.head[-1].weight)] == pytest.approx(lr)
    assert len(lrs) == len(list(net.parameters()))
    # 1-D tensors get no weight decay; names say the stage.
    by_name = {g["name"]: g for g in groups}
    assert by_name["backbone.stem_no_decay"]["weight_decay"] == 0.0 and by_name["backbone.stage4"]["weight_decay"] == 0.05
    assert groups[-1]["name"].startswith("head")


def test_layer_decay_on_simple_cnn_and_off_gives_the_plain_groups():
    net = _small_net()
    lr, mult, d = 1e-3, 0.1, 0.5
    lrs = _lr_of(net.parameter_groups(lr, mult, 0.0, layer_decay=d))
    backbone = dict(net.backbone.named_parameters())
    # Two stages (blocks.0, blocks.1), no stem parameters; the dense layer follows the last stage.
    assert lrs[id(backbone["blocks.0.0.weight"])] == pytest.approx(lr * mult * d**2)
    assert lrs[id(backbone["blocks.1.1.weight"])] == pytest.approx(lr * mult * d)
    assert lrs[id(backbone["dense.1.weight"])] == pytest.approx(lr * mult * d)
    assert lrs[id(net.head[-1].bias)] == pytest.approx(lr)
    plain = net.parameter_groups(lr, mult, 0.01)
    assert [g["name"] for g in plain] == ["backbone", "backbone_no_decay", "head", "head_no_decay"]
    assert {id(p): g["lr"] for g in plain for p in g["params"]}[id(backbone["blocks.0.0.weight"])] == pytest.approx(lr * mult)


# --------------------------------------------------------------------------- frozen batch norm
def test_freeze_bn_keeps_running_statistics_while_affine_weights_train():
    net = _small_net()
    net.freeze_norm_statistics()
    norms = [m for m in net.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = state_tensors(net)
    net.train()
    assert norms and all(not m.training for m in norms) and net.head.training
    assert all(m.weight.requires_grad for m in norms)
    with torch.no_grad():
        net(torch.rand(4, 1, 16, 16))
    after = state_tensors(net)
    assert all(torch.equal(before[k], after[k]) for k in before if "running" in k or "num_batches" in k)
    # A later change of depth keeps them frozen; switching off restores train mode.
    net.apply_finetune("last:1")
    assert all(not m.training for m in norms)
    net.freeze_norm_statistics(False)
    assert norms[-1].training and not norms[0].training  # blocks.0 is frozen by last:1


def test_freeze_bn_in_fit_changes_weights_not_statistics(tmp_path):
    net = _small_net()
    before = state_tensors(net)
    best, _ = fit(net, _tiny_data(), _tiny_data(4, seed=1), _settings(freeze_bn=True), make_fabric("cpu"),
                  tmp_path / "ckpt")
    stats = [k for k in before if k.startswith("backbone.") and ("running" in k or "num_batches" in k)]
    affine = [k for k in before if k.startswith("backbone.") and k.endswith(("1.weight", "1.bias")) and "blocks" in k]
    assert stats and affine
    assert all(torch.equal(before[k], best[k]) for k in stats)
    assert all(not torch.equal(before[k], best[k]) for k in affine)


# --------------------------------------------------------------------------- LP-FT
def test_probe_phase_trains_the_head_only_then_finetune_rebuilds_with_a_fresh_warm_up():
    net = _small_net()
    settings = _settings(epochs=4, lp_epochs=2, scheduler="cosine", warmup_epochs=1)
    optimizer, scheduler = _start_phase(net, settings, "probe", steps_per_epoch=3)
    trained = {id(p) for g in optimizer.param_groups for p in g["params"]}
    head = {id(p) for p in net.head.parameters()}
    assert trained == head and not any(p.requires_grad for p in net.backbone.parameters())
    net.train()
    assert all(not m.training for m in net.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert optimizer.param_groups[-1]["lr"] == pytest.approx(settings.lr / 3)  # warm-up step 1 of 3
    for _ in range(6):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[-1]["lr"] == pytest.approx(0.0)  # the probe's cosine ends with its phase
    optimizer, scheduler = _start_phase(net, settings, "finetune", steps_per_epoch=3)
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {id(p) for p in net.parameters()}
    assert optimizer.param_groups[-1]["lr"] == pytest.approx(settings.lr / 3) and not optimizer.state
    net.train()
    assert all(m.training for m in net.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_fit_with_lp_keeps_the_backbone_during_the_probe(tmp_path):
    net = _small_net()
    initial = state_tensors(net)
    snapshots = {}

    def callback(event):
        if event["event"] == "epoch":
            snapshots[event["epoch"]] = state_tensors(net)

    _, history = fit(net, _tiny_data(), _tiny_data(4, seed=1), _settings(epochs=3, lp_epochs=2, patience=1),
                     make_fabric("cpu"), tmp_path / "ckpt", callback=callback)
    assert [r["phase"] for r in history] == ["probe", "probe", "finetune"]
    backbone = [k for k in initial if k.startswith("backbone.")]
    assert all(torch.equal(initial[k], snapshots[2][k]) for k in backbone)  # weights and BN statistics
    assert not torch.equal(initial["head.0.weight"], snapshots[1]["head.0.weight"])
    assert not torch.equal(initial["backbone.blocks.0.0.weight"], snapshots[3]["backbone.blocks.0.0.weight"])


# --------------------------------------------------------------------------- EMA
@pytest.mark.parametrize("warmup", [False, True])
def test_ema_weights_follow_the_hand_recursion(tmp_path, warmup):
    decay = 0.8
    net = _small_net()
    start = state_tensors(net)
    weights = []

    def callback(event):
        if event["event"] == "batch":
            weights.append(state_tensors(net))

    best, history = fit(net, _tiny_data(), _tiny_data(4, seed=1), _settings(ema_decay=decay, ema_warmup=warmup),
                        make_fabric("cpu"), tmp_path / "ckpt", callback=callback)
    assert len(weights) == 3 and history[0]["best"]
    parameters = {name for name, _ in net.named_parameters()}
    ema = dict(start)
    for t, w in enumerate(weights, start=1):
        d = min(decay, 1 - t ** (-2 / 3)) if warmup else decay  # timm's warm-up: 0 at step 1
        ema = {k: d * ema[k] + (1 - d) * w[k] for k in parameters}
    # Parameters follow the recursion; buffers (batch-norm statistics) are the live network's.
    reference = _small_net()
    reference.load_state_dict(weights[-1])
    with torch.no_grad():
        for name, param in reference.named_parameters():
            param.copy_(ema[name])
    expected = reference.state_dict()
    assert best.keys() == expected.keys()
    for key in best:
        torch.testing.assert_close(best[key], expected[key], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(best["head.0.weight"], weights[-1]["head.0.weight"])  # not the raw weights


def test_ema_validation_loss_is_that_of_the_ema_weights(tmp_path):
    net = _small_net()
    val = _tiny_data(4, seed=1)
    best, history = fit(net, _tiny_data(), val, _settings(ema_decay=0.5, ema_warmup=False), make_fabric("cpu"),
                        tmp_path / "ckpt")
    other = _small_net()
    other.load_state_dict(best)
    outputs = torch.from_numpy(predict_outputs(other, val, make_fabric("cpu"), 4))
    from osteolens.models import tasks

    assert history[0]["val_loss"] == pytest.approx(float(tasks.loss("binary", outputs, val.tensors[2])), rel=1e-5)


# --------------------------------------------------------------------------- flip averaging
def test_predict_outputs_with_hflip_is_the_mean_of_the_image_and_its_mirror():
    net = _small_net().eval()
    data = _tiny_data(6)
    fabric = make_fabric("cpu")
    mirrored = TensorDataset(data.tensors[0].flip(-1), *data.tensors[1:])
    plain, flipped = predict_outputs(net, data, fabric, 4), predict_outputs(net, mirrored, fabric, 4)
    both = predict_outputs(net, data, fabric, 4, hflip=True)
    np.testing.assert_allclose(both, (plain + flipped) / 2, rtol=1e-5, atol=1e-6)
    assert not np.allclose(plain, flipped)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_predictor_replays_the_bundles_flip_averaging(tmp_path, backend):
    from osteolens.inference import Predictor, write_bundle
    from osteolens.io import write_png

    torch.manual_seed(1)
    models = [_small_net().eval() for _ in range(2)]
    for k, model in enumerate(models):
        torch.manual_seed(10 + k)
        for p in model.parameters():
            p.data.normal_(0, 0.5)
        model.head[-1].weight.data *= 50  # logits far from 0, so that the flip shows in the probability
    steps = [{"name": "resize", "params": {"size": 32}}]
    common = dict(models=models, preprocessing=steps, input_size=(32, 32), task="binary", labels=["a", "b"])
    flip_bundle = write_bundle(tmp_path / "flip", tta={"hflip": True}, **common)
    plain_bundle = write_bundle(tmp_path / "plain", **common)
    image = np.tile(np.linspace(0, 1, 40, dtype=np.float32) ** 3, (40, 1))  # brighter to the right
    image[5:15, 3:9] = 1.0
    write_png(image, tmp_path / "x.png", bits=16)

    predictor = Predictor(flip_bundle, backend=backend)
    x, _, _ = predictor.prepare([predictor.read(tmp_path / "x.png")])
    batch = torch.from_numpy(x[None])
    with torch.no_grad():
        raw = np.mean([(m(batch) + m(batch.flip(-1))).numpy() / 2 for m in models])
        unflipped = np.mean([m(batch).numpy() for m in models])
    expected, without = 1 / (1 + np.exp(-raw)), 1 / (1 + np.exp(-unflipped))
    assert abs(expected - without) > 1e-3
    result = predictor.predict(tmp_path / "x.png", cam=True)
    assert result.probability == pytest.approx(expected, abs=1e-4)
    assert result.heatmap is not None and result.model["tta"] == ["hflip"]
    assert Predictor(plain_bundle, backend=backend).predict(tmp_path / "x.png").probability == pytest.approx(without, abs=1e-4)
    batch_result = predictor.predict_batch([tmp_path / "x.png", tmp_path / "x.png"])
    assert [r.probability for r in batch_result] == pytest.approx([expected] * 2, abs=1e-4)


def test_bundle_tta_field_is_optional_and_checked(tmp_path):
    from osteolens.inference import load_bundle, write_bundle

    common = dict(models=[_small_net().eval()], preprocessing=[], input_size=(32, 32), task="binary", labels=["a", "b"])
    assert load_bundle(write_bundle(tmp_path / "old", **common)).tta == {}
    assert load_bundle(write_bundle(tmp_path / "new", tta={"hflip": True}, **common)).tta == {"hflip": True}
    with pytest.raises(BundleError, match="tta"):
        write_bundle(tmp_path / "bad", tta={"vflip": True}, **common)
    manifest = json.loads((tmp_path / "new" / "bundle.json").read_text())
    manifest["tta"] = {"rotate90": True}
    (tmp_path / "new" / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="upgrade osteolens"):
        load_bundle(tmp_path / "new")


# --------------------------------------------------------------------------- whole runs
ALL_ON = {"lp_epochs": 2, "freeze_bn": True, "layer_decay": 0.8, "ema_decay": 0.9, "tta_hflip": True,
          "scheduler": "cosine"}


@pytest.fixture(scope="module")
def unbroken(cohort, tmp_path_factory):
    torch.set_num_threads(1)
    return run_training(_config(cohort, tmp_path_factory.mktemp("unbroken"), **ALL_ON), fold=0, quiet=True)


def test_out_of_fold_predictions_average_the_flip(unbroken):
    from osteolens.training.cv import build_model
    from osteolens.training.dataset import ImageStore, effective_pipeline

    run = unbroken.run_dir
    net = build_model(_config(run / "manifest.csv", run.parent, **ALL_ON), 2)
    net.load_state_dict(load_file(str(run / "fold0" / "model.safetensors")))
    predictions = pd.read_csv(run / "fold0" / "predictions.csv")
    store = ImageStore(effective_pipeline([], [32, 32]), run.parent / ".cache")
    images = torch.stack([torch.from_numpy(store.load(p))[None] for p in predictions["image"]])
    fabric = make_fabric("cpu")
    data = TensorDataset(images, torch.zeros(len(images), 0), torch.zeros(len(images)))
    mirrored = TensorDataset(images.flip(-1), torch.zeros(len(images), 0), torch.zeros(len(images)))
    raw = (predict_outputs(net, data, fabric, 8) + predict_outputs(net, mirrored, fabric, 8)) / 2
    np.testing.assert_allclose(1 / (1 + np.exp(-raw[:, 0])), predictions["prob"], atol=1e-5)
    history = pd.read_csv(run / "fold0" / "history.csv")
    assert list(history["phase"]) == ["probe", "probe", "finetune", "finetune"]


@pytest.mark.parametrize("kill_after", [1, 2, 3])
def test_resume_inside_and_after_the_probe_phase_is_exact(cohort, tmp_path, monkeypatch, unbroken, kill_after):
    class Killed(Exception):
        pass

    def killing_fold(self, k, epochs, steps):
        @contextmanager
        def manager():
            def callback(event):
                if event["event"] == "epoch" and event["epoch"] == kill_after:
                    raise Killed

            yield callback

        return manager()

    original = TrainingProgress.fold
    monkeypatch.setattr(TrainingProgress, "fold", killing_fold)
    config = _config(cohort, tmp_path, **ALL_ON)
    with pytest.raises(Killed):
        run_training(config, fold=0, quiet=True)
    checkpoint = config.run_dir / "fold0" / "checkpoint"
    state = json.loads((checkpoint / "state.json").read_text())
    assert state["phase"] == ("probe" if kill_after <= 2 else "finetune")
    assert sorted(p.name for p in checkpoint.glob("ema_*")) == [state["ema"]]
    monkeypatch.setattr(TrainingProgress, "fold", original)
    resumed = run_training(config, fold=0, resume=True, quiet=True)

    a = load_file(str(unbroken.run_dir / "fold0" / "model.safetensors"))
    b = load_file(str(resumed.run_dir / "fold0" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    ha, hb = (pd.read_csv(r.run_dir / "fold0" / "history.csv") for r in (unbroken, resumed))
    np.testing.assert_array_equal(ha["train_loss"], hb["train_loss"])
    np.testing.assert_array_equal(ha["val_loss"], hb["val_loss"])


def test_merged_bundle_records_the_flip(cohort, tmp_path):
    from osteolens.inference import load_bundle

    result = run_training(_config(cohort, tmp_path, epochs=1, augmentation="none", tta_hflip=True), quiet=True)
    assert load_bundle(result.bundle).tta == {"hflip": True}
