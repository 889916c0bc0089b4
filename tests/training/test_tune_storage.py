"""osteolens tune on a shared Optuna storage: workers on a real PostgreSQL server share one
study with a global trial budget, a killed worker's trial is failed and rerun, storage errors
name the URL without its password."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from osteolens.cli.main import main
from osteolens.errors import ConfigError
from osteolens.training import load_config
from osteolens.training.tune import parse_space, tune
from tests.postgres_server import free_port
from tests.training.test_tune import SPACE, _config

State = optuna.trial.TrialState


def _files(cohort, tmp_path) -> tuple[Path, Path]:
    config, space = tmp_path / "train.yaml", tmp_path / "space.yaml"
    config.write_text(yaml.safe_dump(_config(cohort, tmp_path).to_dict()))
    space.write_text(yaml.safe_dump(SPACE))
    return config, space


def _worker(config: Path, space: Path, out: Path, url: str, study: str, trials: int, heartbeat: int) -> subprocess.Popen:
    """``osteolens tune`` in its own process (and process group), one torch thread."""
    command = [sys.executable, "-m", "osteolens.cli.main", "tune", str(config), "--space", str(space),
               "--trials", str(trials), "--out", str(out), "--storage", url, "--study", study,
               "--heartbeat", str(heartbeat)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)


def _study(url: str, name: str) -> optuna.Study:
    """The study as a third party sees it (psycopg2 spelled out: SQLAlchemy 2.1 defaults to psycopg 3)."""
    return optuna.load_study(study_name=name, storage=url.replace("postgresql://", "postgresql+psycopg2://"))


def _check_summary(out: Path, study: optuna.Study, metric: str = "auc") -> None:
    """best_config.yaml / best.json hold the study's best trial."""
    best = study.best_trial
    summary = json.loads((out / "best.json").read_text())
    assert summary["best_trial"] == best.number and summary["best_value"] == pytest.approx(best.value)
    tuned = load_config(out / "best_config.yaml")
    assert tuned.lr == pytest.approx(best.params["lr"])
    assert tuned.model.dropout == best.params["model.dropout"]
    assert tuned.model.params["filters"] == best.params["model.params.filters"]
    assert best.value == max(t.value for t in study.get_trials(states=(State.COMPLETE,)))


@pytest.mark.slow
def test_two_workers_share_a_six_trial_study(cohort, tmp_path, postgres_url):
    config, space = _files(cohort, tmp_path)
    out = tmp_path / "tune"
    # A heartbeat slow enough that a busy test machine never makes a live worker look dead.
    workers = [_worker(config, space, out, postgres_url, "shared", 6, heartbeat=5) for _ in range(2)]
    logs = [w.communicate(timeout=240)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], logs
    assert postgres_url.split("@")[0].split(":")[-1] not in "".join(logs)  # the password is never printed
    study = _study(postgres_url, "shared")
    trials = study.get_trials()
    # The budget is global: exactly 6 trials, all complete, none run twice.
    assert sorted(t.number for t in trials) == list(range(6)) and {t.state for t in trials} == {State.COMPLETE}
    ran = [{int(line.split(":")[0].split()[1]) for line in log.splitlines() if line.startswith("trial ")} for log in logs]
    assert ran[0] | ran[1] == set(range(6)) and not ran[0] & ran[1] and ran[0] and ran[1], logs
    # Each trial drew its own values (the workers' samplers are not in lockstep).
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 6
    for trial in trials:
        run_dir = Path(trial.user_attrs["run_dir"])
        assert run_dir == out / "trials" / f"trial{trial.number}"
        assert trial.value == pytest.approx(json.loads((run_dir / "metrics.json").read_text())["pooled"]["auc"])
    _check_summary(out, study)
    assert len((out / "trials.csv").read_text().splitlines()) == 1 + 6


@pytest.mark.slow
def test_a_killed_workers_trial_fails_and_is_rerun(cohort, tmp_path, postgres_url):
    config, space = _files(cohort, tmp_path)
    out = tmp_path / "tune"
    # Heartbeat every 2 s: the killed worker's trial is stale 4 s after its last one.
    first = _worker(config, space, out, postgres_url, "killed", 3, heartbeat=2)
    deadline, running = time.monotonic() + 120, []
    while not running and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            # A trial under way: running, its values drawn.
            running = [t for t in _study(postgres_url, "killed").get_trials(states=(State.RUNNING,)) if t.params]
        except KeyError:  # the worker has not created the study yet
            pass
    assert running, f"no trial seen running: {first.communicate()[0] if first.poll() is not None else 'timeout'}"
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate()
    orphan = running[0].number
    assert _study(postgres_url, "killed").trials[orphan].state == State.RUNNING  # nothing will ever finish it
    second = _worker(config, space, out, postgres_url, "killed", 3, heartbeat=2)
    log = second.communicate(timeout=240)[0]
    assert second.returncode == 0, log
    study = _study(postgres_url, "killed")
    by_number = {t.number: t for t in study.get_trials()}
    assert by_number[orphan].state == State.FAIL  # failed by the heartbeat, not left running
    retry = [t for t in by_number.values() if t.system_attrs.get("failed_trial") == orphan]
    assert len(retry) == 1 and retry[0].state == State.COMPLETE
    assert retry[0].params == by_number[orphan].params  # rerun with the same values
    # The budget goes on: 3 complete trials besides the abandoned one, nothing left running.
    assert sum(t.state == State.COMPLETE for t in by_number.values()) == 3 and len(by_number) == 4
    _check_summary(out, study)


def test_storage_errors_name_the_url_without_its_password(cohort, tmp_path, postgres_url, monkeypatch, capsys):
    config, space = _files(cohort, tmp_path)
    closed = f"postgresql://osteo:s3cret-pw@127.0.0.1:{free_port()}/studies"
    monkeypatch.setattr(sys, "argv", ["osteolens", "tune", str(config), "--space", str(space),
                                      "--out", str(tmp_path / "t"), "--storage", closed])
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    output = " ".join((captured.out + captured.err).split())  # rich wraps long lines
    assert exited.value.code == 2 and "cannot reach the study database" in output, output
    assert "'postgresql://osteo:***@127.0.0.1" in output and "s3cret-pw" not in output
    assert "createdb" in output  # the fix
    # A real server that refuses the password: the server's reason, still no password.
    wrong = postgres_url.replace("@127.0.0.1", "x@127.0.0.1")
    with pytest.raises(ConfigError, match="password authentication failed") as caught:
        tune(_config(cohort, tmp_path), parse_space(SPACE), 1, tmp_path / "t2", storage=wrong)
    assert wrong.split("@")[0].split(":")[-1] not in str(caught.value) and ":***@" in str(caught.value)
    with pytest.raises(ConfigError, match="not a database URL"):
        tune(_config(cohort, tmp_path), parse_space(SPACE), 1, tmp_path / "t3", storage="db.example:5432")


def test_a_study_keeps_its_metric(cohort, tmp_path):
    out = tmp_path / "tune"
    out.mkdir()
    study = optuna.create_study(study_name="osteolens", storage=f"sqlite:///{out / 'study.db'}", direction="minimize")
    study.set_user_attr("metric", "brier")
    with pytest.raises(ConfigError, match="optimises 'brier', not 'auc'. Fix: use --metric brier"):
        tune(_config(cohort, tmp_path), parse_space(SPACE), 1, out)
    assert not study.trials  # refused before any trial started
