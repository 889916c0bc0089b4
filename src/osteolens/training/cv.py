"""Patient-grouped cross-validation: prepare a run directory, train folds, merge them.

Per fold ``k``: the test fold is fold ``k``; the other folds are training data, from which
an inner validation split is drawn by patient (``data.splits.inner_validation_split``)
for early stopping, best-epoch selection and the binary decision threshold. The test fold
is only ever predicted, once, with the selected weights. Rows in fold ``-1`` (external
test set) are predicted at merge time by the fold ensemble (mean of the fold models' raw
outputs, as the fracture seed did).

Run directory ``<out>/<name>/``::

    config.resolved.yaml  environment.json  run.json  manifest.csv  failures.csv (if any)
    fold<k>/model.safetensors  fold<k>/history.csv  fold<k>/predictions.csv  fold<k>/result.json
    oof_predictions.csv  test_predictions.csv (if fold -1 rows)  metrics.json
    plots/*.png  bundle/  report/ (osteolens.evaluation)

Several processes (``devices`` x ``num_nodes`` > 1, DDP on Lightning Fabric): every process
prepares the same run (rank 0 first, writing the run directory and the preprocessing cache;
the others then read them) and trains every fold together (``training.loop``); only rank 0
writes fold files, merges and writes the bundle. A process that is lost ends the run with a
:class:`~osteolens.errors.ConfigError` naming the cause instead of a hang (``ddp_timeout``);
``--resume`` continues from rank 0's last checkpoint with the same number of processes.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from rich.console import Console

from osteolens.data.manifest import Manifest
from osteolens.errors import ConfigError, OsteolensError
from osteolens.evaluation.metrics import predicted_classes
from osteolens.io._files import write_atomic
from osteolens.models import create_model, tabular as covariates, tasks
from osteolens.training.checkpoint import save_tensors, state_tensors
from osteolens.training.config import TrainConfig
from osteolens.training.dataset import ImageStore, RadiographDataset, Samples, build_samples, effective_pipeline
from osteolens.training.loop import FitSettings, fit, make_fabric, predict_outputs, release_processes
from osteolens.training.progress import TrainingProgress
from osteolens.training.rescale import rescale_covariates, rescale_target
from osteolens.training.rundir import environment, read_config, write_config, write_json

SUBGROUP_COLUMNS = ("sex", "age", "view", "site", "study")


@dataclass
class RunResult:
    """What a training command produced."""

    run_dir: Path
    folds: list[int]
    metrics: dict[str, Any] | None = None
    bundle: Path | None = None
    report: Path | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)
    global_rank: int = 0


@dataclass
class PreparedRun:
    """Everything shared by the folds of a run."""

    config: TrainConfig
    run_dir: Path
    samples: Samples
    store: ImageStore
    info: dict[str, Any]
    failures: list[tuple[str, str]]

    @property
    def folds(self) -> list[int]:
        return sorted(int(k) for k in self.samples.frame["fold"].unique() if k >= 0)


# --------------------------------------------------------------------------- preparation
def _folded_manifest(config: TrainConfig, run_dir: Path) -> Manifest:
    """The run's manifest with folds: the run directory's copy, else the config's, folded if needed."""
    from osteolens.data.splits import assign_folds, leaks

    saved = run_dir / "manifest.csv"
    if saved.is_file():
        return Manifest.read(saved)
    manifest = Manifest.read(config.manifest)
    if "fold" not in manifest.frame.columns:
        manifest = assign_folds(manifest, config.folds, seed=config.seed, stratify=config.target)
    leaking = leaks(manifest)
    if leaking:
        raise ConfigError(config.manifest, f"patients in more than one fold: {leaking[:5]}.",
                          "re-make the folds with 'osteolens data folds' (grouped by patient).")
    manifest.write(saved)
    return Manifest.read(saved)


def prepare_run(config: TrainConfig, *, resume: bool = False, progress: TrainingProgress | None = None,
                writer: bool = True) -> PreparedRun:
    """Create or reopen the run directory, read and fold the manifest, fill the preprocessing cache.

    ``writer=False`` (a DDP process other than rank 0, after rank 0 prepared the run) reads the
    run directory and the cache without writing them.
    """
    progress = progress or TrainingProgress(quiet=True)
    run_dir = config.run_dir
    if writer:
        write_config(run_dir, config)
    manifest = _folded_manifest(config, run_dir)
    samples = build_samples(
        manifest, config.target, config.task, views=config.model.views, view_order=config.view_order,
        positive=config.positive, classes=config.classes, covariates=config.model.tabular,
    )
    pipeline = effective_pipeline(config.preprocessing, config.input_size)
    store = ImageStore(pipeline, config.cache or Path(config.out) / ".cache")
    frame = manifest.frame
    hashes = dict(zip([str(p) for p in manifest.image_paths()], frame["sha256"])) if "sha256" in frame.columns else {}
    paths = sorted({p for views in samples.frame["images"] for p in views})
    with progress.task("preprocessing (cached)", len(paths)) as advance:
        failures = store.prepare(paths, [hashes.get(p) for p in paths], progress=advance)
    if failures:
        bad = {p for p, _ in failures}
        keep = [not (set(v) & bad) for v in samples.frame["images"]]
        samples.frame = samples.frame[keep].reset_index(drop=True)
        if writer:
            write_atomic(run_dir / "failures.csv", pd.DataFrame(failures, columns=["path", "reason"]).to_csv(index=False))
    cv_rows = samples.frame[samples.frame["fold"] >= 0]
    info = {
        "labels": samples.labels,
        "views": samples.views,
        "preprocessing": pipeline.to_config(),
        "input_size": list(config.input_size),
        "target_scaling": _target_scaling(cv_rows) if config.task == "regression" else None,
        "tabular_scaling": covariates.fit_scaling(cv_rows, config.model.tabular) if config.model.tabular else {},
        "n_samples": len(samples.frame),
        "n_failed_files": len(failures),
        "init_weights": config.model.weights,
        "init_weights_sha256": _init_weights_sha256(config),
    }
    if writer:
        write_json(run_dir / "run.json", info)
    return PreparedRun(config, run_dir, samples, store, info, failures)


def _target_scaling(rows: pd.DataFrame) -> dict[str, float]:
    std = float(rows["y"].std(ddof=0))
    return {"mean": float(rows["y"].mean()), "std": std if std > 0 else 1.0}


# --------------------------------------------------------------------------- one fold
def _val_metric(task: str, y: np.ndarray, scaling: dict[str, float] | None):
    """(name, value) on inner-validation outputs: AUC (macro for K > 2) or MAE in target units."""
    from osteolens.evaluation import metrics as M

    def metric(outputs: np.ndarray) -> tuple[str, float]:
        ones = np.ones((1, len(y)))
        if task == "regression":
            pred = tasks.regression_values(torch.from_numpy(outputs), scaling).numpy()
            truth = y * scaling["std"] + scaling["mean"] if scaling else y
            return "mae", float(np.mean(np.abs(pred - truth)))
        probs = tasks.probabilities(task, torch.from_numpy(outputs)).numpy()
        if task == "binary":
            return "auc", float(M.weighted_auc(ones, y.astype(float), probs)[0])
        aucs = [M.weighted_auc(ones, (y == c).astype(float), probs[:, c])[0] for c in range(probs.shape[1])]
        valid = [a for a in aucs if np.isfinite(a)]  # a class absent from a tiny validation split has no AUC
        return "auc", float(np.mean(valid)) if valid else float("nan")

    return metric


def _encode(rows: pd.DataFrame, config: TrainConfig, tab_scaling: dict, target_scaling: dict | None):
    x = covariates.encode(rows, config.model.tabular, tab_scaling) if config.model.tabular else np.zeros((len(rows), 0), np.float32)
    if config.task == "regression":
        y = ((rows["y"].to_numpy(float) - target_scaling["mean"]) / target_scaling["std"]).astype(np.float32)
    else:
        y = rows["y"].to_numpy(np.int64)
    return x, y


def build_model(config: TrainConfig, n_labels: int):
    """The fold network described by the config."""
    m = config.model
    return create_model(
        m.name, config.task, tasks.num_outputs(config.task, n_labels), pretrained=m.pretrained, weights=m.weights,
        finetune=m.finetune, tabular=m.tabular, views=m.views, shared_backbone=m.shared_backbone,
        head_hidden=m.head_hidden, dropout=m.dropout, fusion=m.fusion, **m.params,
    )


def prediction_frame(rows: pd.DataFrame, outputs: np.ndarray, task: str, labels: list[str],
                     target_scaling: dict | None, threshold: float | None) -> pd.DataFrame:
    """Rows of ``oof_predictions.csv`` from raw outputs."""
    out = pd.DataFrame({"image": rows["image"].to_numpy(), "patient_id": rows["patient_id"].to_numpy(),
                        "fold": rows["fold"].to_numpy(int), "y_true": rows["target"].to_numpy()})
    raw = torch.from_numpy(np.asarray(outputs, dtype=np.float32))
    if task == "regression":
        out["y_pred"] = tasks.regression_values(raw, target_scaling).numpy()
    elif task == "binary":
        prob = tasks.probabilities(task, raw).numpy()
        out["prob"] = prob
        out["y_pred"] = np.where(prob >= threshold, labels[1], labels[0])
        out["threshold"] = threshold
    else:
        probs = tasks.probabilities(task, raw).numpy()
        for c, name in enumerate(labels):
            out[f"prob_{name}"] = probs[:, c]
        decided = predicted_classes(probs, cumulative=task == "ordinal")
        out["y_pred"] = [labels[i] for i in decided]
    for column in SUBGROUP_COLUMNS:
        if column in rows.columns and not (column == "view" and rows["images"].map(len).max() > 1):
            out[column] = rows[column].to_numpy()
    return out


def train_fold(run: PreparedRun, k: int, fabric, *, resume: bool = False, progress: TrainingProgress | None = None) -> dict[str, Any]:
    """Train fold ``k`` (test fold ``k``) and write ``fold<k>/``; returns its ``result.json``."""
    from lightning.fabric import seed_everything

    from osteolens.data.splits import inner_validation_split
    from osteolens.evaluation.thresholds import ThresholdRule
    from osteolens.training.augment import build_augmentation

    config, frame, labels = run.config, run.samples.frame, run.samples.labels
    progress = progress or TrainingProgress(quiet=True)
    fold_dir = run.run_dir / f"fold{k}"
    started = time.perf_counter()
    train_rows = frame[(frame["fold"] != k) & (frame["fold"] >= 0)].reset_index(drop=True)
    test_rows = frame[frame["fold"] == k].reset_index(drop=True)
    try:
        fit_pos, val_pos = inner_validation_split(train_rows, config.val_fraction, seed=config.seed + k, stratify="target")
        stratified = True
    except ValueError:  # too few rows per stratum for sklearn: grouped but unstratified
        fit_pos, val_pos = inner_validation_split(train_rows, config.val_fraction, seed=config.seed + k, stratify=None)
        stratified = False
    fit_rows, val_rows = train_rows.iloc[fit_pos].reset_index(drop=True), train_rows.iloc[val_pos].reset_index(drop=True)

    # Standardisation from this fold's training rows only (see training.rescale).
    fold_target = _target_scaling(train_rows) if config.task == "regression" else None
    fold_tab = covariates.fit_scaling(train_rows, config.model.tabular) if config.model.tabular else {}
    x_fit, y_fit = _encode(fit_rows, config, fold_tab, fold_target)
    x_val, y_val = _encode(val_rows, config, fold_tab, fold_target)
    augment = build_augmentation(config.augmentation)
    train_set = RadiographDataset(fit_rows, run.store, x_fit, y_fit, augment)
    val_set = RadiographDataset(val_rows, run.store, x_val, y_val)

    class_weights = sample_weights = None
    if config.task != "regression" and config.class_balance != "none":
        weights = tasks.class_weights(y_fit, len(labels))
        if config.class_balance == "weights":
            class_weights = weights
        else:
            sample_weights = weights[y_fit]

    seed_everything(config.seed + k, verbose=False)
    net = build_model(config, len(labels))
    start = None
    if net.covariate_path is not None:
        from osteolens.models.fusion import fit_covariate_offset

        fit_covariate_offset(net, x_fit, y_fit, class_weights)
        start = state_tensors(net)
    settings = FitSettings.from_config(config, seed=config.seed + 1000 * k)
    steps = config.epochs * -(-len(train_set) // config.batch_size)
    with progress.fold(k, config.epochs, steps) as callback:
        best, history = fit(
            net, train_set, val_set, settings, fabric, fold_dir / "checkpoint", class_weights=class_weights,
            sample_weights=sample_weights, val_metric=_val_metric(config.task, y_val, fold_target),
            resume=resume, callback=callback,
        )
    net.load_state_dict(best)  # several processes: rank 0's, so every process predicts with the same network
    selected = "trained network"
    if start is not None:
        selected = _keep_better(net, start, RadiographDataset(val_rows, run.store, x_val, y_val), fabric, config, class_weights)
    common_target, common_tab = run.info["target_scaling"], run.info["tabular_scaling"]
    rescale_covariates(net, config.model.tabular, fold_tab, common_tab)
    if config.task == "regression":
        rescale_target(net, fold_target, common_target)

    threshold = None
    if config.task == "binary":
        x_val_c, _ = _encode(val_rows, config, common_tab, common_target)
        val_prob = tasks.probabilities("binary", torch.from_numpy(
            predict_outputs(net, RadiographDataset(val_rows, run.store, x_val_c, y_val), fabric, config.batch_size,
                            hflip=config.tta_hflip))).numpy()
        threshold = ThresholdRule().choose(y_val, val_prob) if len(set(y_val.tolist())) == 2 else 0.5
    x_test, y_test = _encode(test_rows, config, common_tab, common_target)
    outputs = predict_outputs(net, RadiographDataset(test_rows, run.store, x_test, y_test), fabric, config.batch_size,
                              hflip=config.tta_hflip)
    predictions = prediction_frame(test_rows, outputs, config.task, labels, common_target, threshold)
    result = {
        "fold": k,
        "n_train": len(fit_rows), "n_val": len(val_rows), "n_test": len(test_rows),
        "patients_train": int(fit_rows["patient_id"].nunique()), "patients_val": int(val_rows["patient_id"].nunique()),
        "patients_test": int(test_rows["patient_id"].nunique()),
        "epochs_run": len(history),
        "best_epoch": ([r["epoch"] for r in history if r["best"]] or [None])[-1],
        "best_val_loss": min(r["val_loss"] for r in history) if history else None,
        "validation_stratified": stratified,
        "selected": selected,
        "threshold": threshold,
        "fold_target_scaling": fold_target, "fold_tabular_scaling": fold_tab,
        "processes": fabric.world_size,
        "seconds": round(time.perf_counter() - started, 2),
    }
    if not fabric.is_global_zero:
        return result
    save_tensors(state_tensors(net), fold_dir / "model.safetensors")
    write_atomic(fold_dir / "history.csv", pd.DataFrame(history).to_csv(index=False))
    write_atomic(fold_dir / "predictions.csv", predictions.to_csv(index=False))
    write_json(fold_dir / "result.json", result)  # marks the fold finished, so before the checkpoint goes
    shutil.rmtree(fold_dir / "checkpoint", ignore_errors=True)
    return result


def _init_weights_sha256(config: TrainConfig) -> str | None:
    """sha256 of the initial weights file (the converted ImageNet file for ``weights: imagenet``)."""
    if not config.model.weights:
        return None
    from osteolens.models.weights import resolve_weights

    return resolve_weights(config.model.weights, config.model.name).sha256


def _keep_better(net, start: dict[str, torch.Tensor], val_set, fabric, config: TrainConfig,
                 class_weights: np.ndarray | None) -> str:
    """Load the covariates-only start into ``net`` when its inner-validation loss is not above
    the trained network's: the image must earn its place. Returns which one was kept."""
    weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
    targets = torch.as_tensor(val_set.y)

    def val_loss() -> float:
        outputs = torch.from_numpy(predict_outputs(net, val_set, fabric, config.batch_size, hflip=config.tta_hflip))
        return float(tasks.loss(config.task, outputs, targets, weights))

    trained, trained_loss = state_tensors(net), val_loss()
    net.load_state_dict(start)
    if val_loss() <= trained_loss:
        return "covariates only (the image did not lower the inner-validation loss)"
    net.load_state_dict(trained)
    return "trained network"


# --------------------------------------------------------------------------- whole run
def run_training(
    config: TrainConfig,
    *,
    fold: int | None = None,
    resume: bool = False,
    quiet: bool = False,
    console: Console | None = None,
) -> RunResult:
    """Cross-validate ``config``: every fold (then merge), or only ``fold``.

    Raises:
        ConfigError: the run directory holds finished folds and ``resume`` is False, a fold
            number that does not exist, or a config that differs from the directory's.
    """
    fabric = make_fabric(config.accelerator, config.precision, config.devices, config.strategy, config.num_nodes,
                         config.ddp_timeout)
    lead = fabric.is_global_zero
    progress = TrainingProgress(console=console, quiet=quiet or not lead)
    problem = None
    if lead:
        try:
            run = prepare_run(config, resume=resume, progress=progress)
        except OsteolensError as exc:
            problem = exc
    with _processes_together(fabric):
        # The others wait for rank 0 to prepare the run directory and cache, then read them.
        failed = fabric.broadcast(str(problem) if problem else "") if fabric.world_size > 1 else ""
    if problem is not None:
        raise problem
    if failed:
        raise ConfigError(config.run_dir, f"rank 0 could not prepare the run ({failed}).", "fix that, then start again.")
    if not lead:
        run = prepare_run(config, resume=resume, progress=progress, writer=False)
    folds = run.folds
    if fold is not None and fold not in folds:
        raise ConfigError(config.manifest, f"fold {fold} does not exist (folds are {folds}).", f"use --fold 0 ... --fold {max(folds)}.")
    todo = [fold] if fold is not None else folds
    if lead:
        write_json(run.run_dir / "environment.json", environment(str(fabric.device), processes=fabric.world_size))
    with _processes_together(fabric):
        _train_folds(run, todo, fabric, resume, progress)
        release_processes(fabric)  # what follows is rank 0's alone
    if not lead:
        return RunResult(run.run_dir, todo, failures=run.failures, global_rank=fabric.global_rank)
    if fold is not None:
        return RunResult(run.run_dir, [fold], failures=run.failures)
    merged = merge_run(run.run_dir, quiet=quiet, console=console, prepared=run)
    merged.failures = run.failures
    return merged


@contextmanager
def _processes_together(fabric) -> Iterator[None]:
    """Turn a lost DDP process (a collective that fails or times out) into a ConfigError."""
    try:
        yield
    except RuntimeError as exc:
        # torch raises DistError for timeouts, but a peer's closed connection comes from gloo
        # (or NCCL) as a plain RuntimeError naming the backend.
        text = str(exc)
        lost = isinstance(exc, torch.distributed.DistError) or any(key in text for key in ("gloo", "NCCL", "ProcessGroup"))
        if fabric.world_size == 1 or not lost:
            raise
        raise ConfigError(
            "devices", f"a training process stopped or lost contact with the others ({type(exc).__name__}: "
            f"{' '.join(text.split())[:300]}); rank {fabric.global_rank} of {fabric.world_size} cannot go on.",
            "see the other processes' errors, then continue the run with --resume and the same --devices.") from exc


def _train_folds(run: PreparedRun, todo: list[int], fabric, resume: bool, progress: TrainingProgress) -> None:
    """Train the folds in ``todo`` that have not finished (all processes together)."""
    for k in todo:
        fold_dir = run.run_dir / f"fold{k}"
        if (fold_dir / "result.json").is_file():
            if not resume:
                raise ConfigError(run.run_dir, f"fold {k} is already trained.",
                                  "add --resume to continue the run, or give it another --name.")
            progress.note(f"fold {k}: already trained, kept")
            continue
        if (fold_dir / "checkpoint").exists() and not resume:
            raise ConfigError(run.run_dir, f"fold {k} was interrupted.", "add --resume to continue it, or give the run another --name.")
        fold_dir.mkdir(parents=True, exist_ok=True)
        result = train_fold(run, k, fabric, resume=resume, progress=progress)
        fabric.barrier()  # rank 0 has written the fold's files
        progress.note(f"fold {k}: {result['epochs_run']} epochs, best epoch {result['best_epoch']}, {result['seconds']:.0f} s")


def merge_run(run_dir: str | Path, *, quiet: bool = False, console: Console | None = None,
              prepared: PreparedRun | None = None) -> RunResult:
    """Join finished folds: ``oof_predictions.csv``, ``metrics.json``, plots, external-test
    predictions, the bundle and the evaluation report.

    Raises:
        ConfigError: a fold has not finished.
    """
    from safetensors.torch import load_file

    from osteolens.inference.bundle import write_bundle
    from osteolens.training.report import prediction_metrics, run_metrics, write_plots

    run_dir = Path(run_dir)
    config = read_config(run_dir)
    progress = TrainingProgress(console=console, quiet=quiet)
    run = prepared or prepare_run(config, resume=True, progress=progress)
    info, labels, task = run.info, run.samples.labels, config.task
    missing = [k for k in run.folds if not (run_dir / f"fold{k}" / "result.json").is_file()]
    if missing:
        raise ConfigError(run_dir, f"fold(s) {missing} have not finished.",
                          "run 'osteolens train CONFIG --fold K' for each, then 'osteolens cv merge RUN_DIR'.")
    results = {k: json.loads((run_dir / f"fold{k}" / "result.json").read_text()) for k in run.folds}
    oof = pd.concat([pd.read_csv(run_dir / f"fold{k}" / "predictions.csv") for k in run.folds], ignore_index=True)
    metrics = run_metrics(task, labels, oof)
    metrics["folds"] = results
    histories = {k: pd.read_csv(run_dir / f"fold{k}" / "history.csv") for k in run.folds}
    plots = write_plots(run_dir, task, labels, oof, histories)
    write_atomic(run_dir / "oof_predictions.csv", oof.drop(columns=["threshold"], errors="ignore").to_csv(index=False))

    models = []
    for k in run.folds:
        net = build_model(config, len(labels))
        net.load_state_dict(load_file(str(run_dir / f"fold{k}" / "model.safetensors")))
        models.append(net.eval())

    # threshold: on the raw score (test predictions here); bundle_threshold: on the scale the
    # Predictor compares with, i.e. after the calibrator when one is stored.
    report_dir, threshold, calibration, bundle_threshold = None, None, None, None
    evaluation = None
    if config.report:
        from osteolens.evaluation import evaluate

        with progress.status("evaluation report"):
            evaluation = evaluate(
                run_dir / "oof_predictions.csv", run_dir / "report", task="regression" if task == "regression" else
                ("binary" if task == "binary" else "multiclass"), positive=labels[1] if task == "binary" else None,
                class_order=labels if task == "ordinal" else None, ordinal=task == "ordinal",
                decision="cumulative" if task == "ordinal" else "argmax",
                n_bootstrap=config.n_bootstrap, seed=config.seed, manifest=run_dir / "manifest.csv",
                title=f"osteolens run {run_dir.name}",
            )
        report_dir = run_dir / "report"
        metrics["added_value"] = evaluation.added_value  # image model vs covariates-only / acquisition-only
        if task == "binary":
            if evaluation.threshold:
                threshold = float(evaluation.threshold["threshold"])
                calibrated = evaluation.threshold.get("threshold_calibrated")
                calibration = evaluation.calibrator if calibrated is not None else None
                bundle_threshold = float(calibrated) if calibrated is not None else threshold
        elif task != "regression":
            calibration = evaluation.calibrator  # temperature scaling of the class probabilities
    if task == "binary" and threshold is None:
        threshold = float(np.median([r["threshold"] for r in results.values()]))
    if bundle_threshold is None:
        bundle_threshold = threshold

    test_rows = run.samples.frame[run.samples.frame["fold"] < 0].reset_index(drop=True)
    if len(test_rows):
        from osteolens.training.loop import predict_outputs as _predict

        fabric = make_fabric("cpu")
        x, y = _encode(test_rows, config, info["tabular_scaling"], info["target_scaling"])
        dataset = RadiographDataset(test_rows, run.store, x, y)
        outputs = np.mean([_predict(net, dataset, fabric, config.batch_size, hflip=config.tta_hflip) for net in models],
                          axis=0)
        test = prediction_frame(test_rows, outputs, task, labels, info["target_scaling"], threshold)
        metrics["external_test"] = prediction_metrics(task, labels, test)
        write_atomic(run_dir / "test_predictions.csv", test.drop(columns=["threshold"], errors="ignore").to_csv(index=False))

    write_json(run_dir / "metrics.json", metrics)
    bundle_dir = run_dir / "bundle"
    if bundle_dir.exists():
        shutil.rmtree(bundle_dir)
    summary = {
        "run": run_dir.name, "manifest": config.manifest, "folds": len(run.folds), "epochs": config.epochs,
        "seed": config.seed, "augmentation": config.augmentation, "n_samples": info["n_samples"],
        "init_weights": config.model.weights or ("hub" if config.model.pretrained else "random"),
        "init_weights_sha256": info.get("init_weights_sha256"),
        "selection": "best inner-validation loss per fold (validation drawn by patient from the training folds)",
    }
    bundle = write_bundle(
        bundle_dir, models=models, preprocessing=info["preprocessing"], input_size=info["input_size"], task=task,
        labels=labels, target=config.target, target_scaling=info["target_scaling"],
        tabular_scaling=info["tabular_scaling"] or None, threshold=bundle_threshold, calibration=calibration,
        views=info["views"] if config.model.views > 1 else None, tta={"hflip": True} if config.tta_hflip else None,
        training_summary=summary, metrics={"pooled": metrics["pooled"], "fold_mean": metrics["fold_mean"],
                                           "fold_std": metrics["fold_std"]},
    )
    _attach_onnx(bundle, models, info["input_size"], config, progress)
    progress.note(f"run directory {run_dir}: {len(plots)} plots, bundle {bundle}")
    return RunResult(run_dir, run.folds, metrics=metrics, bundle=bundle, report=report_dir)


def _attach_onnx(bundle: Path, models: list, input_size: list[int], config: TrainConfig,
                 progress: TrainingProgress) -> None:
    """Store the fold ensemble's ONNX graph and its Grad-CAM graph in the bundle (``add_onnx`` and
    ``add_cam_onnx`` check them against torch), so that a Predictor starts without exporting and
    explains without torch; a model the exporter refuses gets none."""
    from osteolens.errors import OsteolensError
    from osteolens.inference.bundle import add_cam_onnx, add_onnx
    from osteolens.inference.cam_graph import export_cam_onnx
    from osteolens.inference.runtime import export_onnx

    in_chans, n_tabular = int(models[0].config.get("in_chans", 1)), len(config.model.tabular)
    try:
        add_onnx(bundle, export_onnx(models, tuple(input_size), in_chans, n_tabular, views=config.model.views))
    except OsteolensError as exc:
        progress.note(f"bundle {bundle} has no model.onnx ({exc}); predict it with --backend torch.")
        return
    if config.model.views == 1:
        try:
            add_cam_onnx(bundle, export_cam_onnx(models, tuple(input_size), in_chans, n_tabular))
        except OsteolensError as exc:
            progress.note(f"bundle {bundle} has no cam.onnx ({exc}); its Grad-CAM runs through torch.")
