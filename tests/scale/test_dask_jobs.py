"""Feature extraction and batch prediction on a Dask cluster: the same tables as one process, failures
listed, and nothing lost or doubled when a worker dies mid-run."""

from __future__ import annotations

import os
import signal

import pandas as pd
import pytest
from typer.testing import CliRunner

from osteolens.cli.main import app
from osteolens.data.manifest import Manifest
from osteolens.features import ExtractionConfig, extract_features


def _csv(result) -> bytes:
    return result.table.to_csv(index=False).encode()


def test_features_on_a_cluster_are_the_serial_table_and_list_the_corrupt_file(cohort, cluster):
    manifest = Manifest.read(cohort)
    config = ExtractionConfig(families=["fourier", "variogram", "lbp"])
    serial = extract_features(manifest, config)
    seen = []
    distributed = extract_features(manifest, config, scheduler=cluster.scheduler_address,
                                   on_progress=lambda done, total: seen.append(done))
    assert len(serial.table) == 16 and serial.roi == "rectangle"
    assert _csv(distributed) == _csv(serial)
    assert [p for p, _ in distributed.failures] == [p for p, _ in serial.failures]
    assert [p.endswith("broken.png") for p, _ in distributed.failures] == [True]
    assert "could not be decoded as PNG" in distributed.failures[0][1]
    assert seen == list(range(1, 18))


def test_features_cli_with_a_scheduler_writes_the_serial_bytes(cohort, cluster, tmp_path):
    runner = CliRunner()
    args = ["features", "extract", str(cohort), "--families", "fourier,variogram"]
    one = runner.invoke(app, [*args, "--out", str(tmp_path / "one.csv")])
    many = runner.invoke(app, [*args, "--out", str(tmp_path / "many.csv"), "--scheduler", cluster.scheduler_address])
    assert one.exit_code == 0 and many.exit_code == 0, many.output
    assert (tmp_path / "many.csv").read_bytes() == (tmp_path / "one.csv").read_bytes()
    assert len(pd.read_csv(tmp_path / "many.csv")) == 16
    assert "broken.png" in (tmp_path / "many.failures.csv").read_text()


@pytest.mark.slow
def test_predict_manifest_on_a_cluster_writes_the_serial_predictions_csv(cohort, cluster, make_bundle, tmp_path):
    from osteolens.evaluation.predictions import load_predictions

    bundle = make_bundle(task="multiclass")
    runner = CliRunner()
    args = ["predict", "--manifest", str(cohort), "--model", str(bundle), "--batch-size", "3"]
    one = runner.invoke(app, [*args, "--out", str(tmp_path / "one")])
    many = runner.invoke(app, [*args, "--out", str(tmp_path / "many"), "--json", "--scheduler", cluster.scheduler_address])
    assert one.exit_code == 1 and many.exit_code == 1, many.output  # one corrupt file: listed, not fatal
    assert (tmp_path / "many" / "predictions.csv").read_bytes() == (tmp_path / "one" / "predictions.csv").read_bytes()

    frame = pd.read_csv(tmp_path / "many" / "predictions.csv")
    manifest = pd.read_csv(cohort)
    assert frame["image"].tolist() == manifest["image"].tolist()  # one row per manifest row, in its order
    assert frame["y_true"].tolist() == manifest["label"].tolist()
    assert frame["error"].notna().tolist() == [i == 5 for i in range(17)]
    assert frame.loc[5, "error"] and frame[["prob_normal", "prob_osteopenia", "prob_osteoporosis"]].iloc[5].isna().all()
    assert {"sex", "age", "view", "vertebra"} <= set(frame.columns)
    loaded = load_predictions(tmp_path / "many" / "predictions.csv")
    assert loaded.task == "multiclass" and len(loaded) == 16 and loaded.dropped == 1
    assert loaded.classes == ["normal", "osteopenia", "osteoporosis"]

    assert not list((tmp_path / "one").glob("*.json"))  # a manifest writes JSON only with --json
    assert len(list((tmp_path / "many").glob("S*.json"))) == 16 and (tmp_path / "many" / "broken.json").is_file()
    for folder in ("one", "many"):
        assert "broken.png" in (tmp_path / folder / "failures.csv").read_text()


@pytest.mark.slow
def test_predict_jobs_starts_a_local_cluster_with_the_same_table(cohort, make_bundle, tmp_path):
    bundle = make_bundle(task="binary", tabular=("sex", "age"))  # the covariates come from the manifest's columns
    runner = CliRunner()
    args = ["predict", "--manifest", str(cohort), "--model", str(bundle)]
    one = runner.invoke(app, [*args, "--out", str(tmp_path / "one")])
    many = runner.invoke(app, [*args, "--out", str(tmp_path / "many"), "--jobs", "2"])
    assert one.exit_code == 1 and many.exit_code == 1, many.output
    assert (tmp_path / "many" / "predictions.csv").read_bytes() == (tmp_path / "one" / "predictions.csv").read_bytes()
    frame = pd.read_csv(tmp_path / "many" / "predictions.csv")
    assert {"prob", "prob_normal", "prob_osteoporosis", "y_pred"} <= set(frame.columns)
    assert frame["error"].notna().sum() == 1 and frame["prob"].notna().sum() == 16
    assert frame["prob"].dropna().tolist() == frame["prob_osteoporosis"].dropna().tolist()


def test_a_cluster_refuses_explanations(cohort, make_bundle, tmp_path):
    from osteolens.errors import ConfigError

    with pytest.raises(ConfigError, match="without explanations"):
        CliRunner().invoke(app, ["predict", "--manifest", str(cohort), "--model", str(make_bundle()), "--cam",
                                 "--jobs", "2", "--out", str(tmp_path)], catch_exceptions=False)


def test_a_worker_copy_of_another_bundle_is_refused(make_bundle):
    from osteolens.errors import BundleError
    from osteolens.scale import worker_predictor

    with pytest.raises(BundleError, match="same bundle"):
        worker_predictor(str(make_bundle()), "0" * 64)


@pytest.mark.slow
def test_a_worker_killed_mid_run_has_its_images_recomputed_elsewhere(cohort):
    from distributed import Client

    from osteolens.scale import local_cluster

    manifest = Manifest.read(cohort)
    config = ExtractionConfig(families=["fourier", "wavelet"])  # ~0.2 s an image: the kill lands mid-run
    serial = extract_features(manifest, config)
    with local_cluster(2) as local, Client(local) as client:
        killed: dict[str, list] = {}

        def kill_one(done: int, total: int) -> None:
            if done == 2 and not killed:
                busy = {worker: keys for worker, keys in client.processing().items() if keys}
                victim = sorted(busy)[0]
                killed[victim] = list(busy[victim])
                pid = client.run(os.getpid, workers=[victim])[victim]
                os.kill(pid, signal.SIGKILL)  # as the out-of-memory killer would

        distributed = extract_features(manifest, config, scheduler=local.scheduler_address, on_progress=kill_one)
        (victim, lost), = killed.items()
        assert lost  # it was computing images when it died
        assert victim not in client.scheduler_info()["workers"]  # it did die (its nanny started a new one)
    assert _csv(distributed) == _csv(serial)  # every image once, the same numbers
    assert distributed.table["image"].is_unique and len(distributed.table) == 16
    assert [p for p, _ in distributed.failures] == [p for p, _ in serial.failures]
