"""The demo: the main job of osteolens on its built-in default, the synthetic phantom cohort.

Steps: generate the cohort -> check it (counts, duplicates) -> patient-grouped folds with an
external test set -> cross-validated models -> an explained prediction of one external-test
radiograph with the trained bundle (JSON + Grad-CAM PNGs, as ``osteolens predict --cam``)
-> a short results table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console


@dataclass
class DemoSummary:
    """Where the demo wrote its outputs and what it found."""

    out_dir: Path
    cohort_manifest: Path
    check_report: Path
    folds_manifest: Path
    n_images: int
    class_counts: dict[str, int]
    duplicate_groups: int
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    prediction: dict[str, Any] | None = None


def run_demo(
    out_dir: str | Path = "demo_output",
    *,
    specimens: int = 60,
    seed: int = 0,
    folds: int = 5,
    test_fraction: float = 0.2,
    train: bool = True,
    console: Console | None = None,
) -> DemoSummary:
    """Run the demo end to end and return where everything is.

    Args:
        out_dir: output folder (created).
        specimens: phantom specimens (8 images each: L1-L4 x AP / lateral).
        seed: one seed for the cohort, the folds and training.
        folds: cross-validation folds.
        test_fraction: share of specimens kept whole as an external test set.
        train: run the cross-validated models (False stops after the folds).
        console: where progress goes (default: stderr).
    """
    from osteolens.data import assign_folds, check_manifest
    from osteolens.phantom import generate_cohort

    console = console or Console(stderr=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    console.rule("1. synthetic phantom cohort")
    cohort = generate_cohort(out / "cohort", specimens=specimens, seed=seed)
    console.print(f"{len(cohort)} images of {cohort.frame['patient_id'].nunique()} specimens in {out / 'cohort'}")

    console.rule("2. data check")
    report = check_manifest(cohort)
    manifest_path, report_path = report.write(out / "check")
    console.print(
        f"classes {report.class_counts}; unreadable {len(report.unreadable)}; "
        f"duplicate groups {len(report.duplicate_groups)}"
    )

    console.rule("3. patient-grouped folds")
    folded = assign_folds(report.annotated(), folds, seed=seed, stratify="label", test_fraction=test_fraction)
    folds_path = folded.write(out / "manifest_folds.csv")
    counts = folded.frame.groupby("fold")["patient_id"].nunique().to_dict()
    console.print(f"specimens per fold (-1 = external test): {counts}")

    summary = DemoSummary(
        out_dir=out,
        cohort_manifest=out / "cohort" / "labels.csv",
        check_report=report_path,
        folds_manifest=folds_path,
        n_images=len(cohort),
        class_counts=report.class_counts,
        duplicate_groups=len(report.duplicate_groups),
    )
    if train:
        summary.runs = _train_demo_models(folds_path, out / "runs", seed=seed, console=console)
        summary.prediction = _explained_prediction(folded, out / "runs" / "who_class" / "bundle", out / "predictions",
                                                   console=console)
    return summary


def _explained_prediction(folded: Any, bundle: Path, out: Path, *, console: Console) -> dict[str, Any] | None:
    """Step 5: the trained WHO-class bundle on the first external-test radiograph, written as
    ``osteolens predict --cam`` writes it (None when there is no external test set)."""
    from osteolens.inference import Predictor
    from osteolens.inference.report import write_prediction

    held_out = folded.frame[folded.frame["fold"] < 0]
    if held_out.empty:
        return None
    console.rule("5. explained prediction (external test radiograph, trained bundle)")
    image = folded.resolve(held_out["image"].iloc[0])
    predictor = Predictor(bundle)
    record = write_prediction(predictor.predict(image, cam=True), out, image.stem, str(image))
    console.print(f"{image.name}: {record['diagnosis']} (p = {record['probability']:.3f}, truth "
                  f"{held_out['label'].iloc[0]}); {out / (image.stem + '.json')}", highlight=False)
    return {"image": str(image), "truth": str(held_out["label"].iloc[0]), "label": record["label"],
            "probability": record["probability"], "json": str(out / f"{image.stem}.json"),
            "overlay": record["overlay_img_path"]}


# Small CNNs that learn the phantom in a few minutes on 2 CPU cores: 64 px inputs, the
# bone-age seed's simple_cnn, no augmentation (the phantom already varies exposure, gain,
# gamma, blur and soft tissue), early stopping on an inner validation split.
_DEMO_TRAINING: dict[str, Any] = {
    "preprocessing": [{"name": "percentile_normalise", "params": {"low": 0.5, "high": 99.5}}],
    "input_size": [64, 64],
    "augmentation": "none",
    "epochs": 15,
    "batch_size": 32,
    "lr": 0.003,
    "warmup_epochs": 1,
    "patience": 6,
    "n_bootstrap": 200,
}
_DEMO_RUNS: dict[str, dict[str, Any]] = {
    "who_class": {
        "target": "label",
        "task": "ordinal",
        "model": {"name": "simple_cnn", "params": {"conv_layers": 3, "filters": 16, "dense_units": 64}},
    },
    "bmd": {
        "target": "bmd",
        "task": "regression",
        # concat: the phantom image shows the density itself, and age and sex are its rough proxies
        # (offset fusion under-uses such an image: MAE 27 against 17, docs/models.md "Which to choose").
        "model": {"name": "simple_cnn", "tabular": ["sex", "age"], "fusion": "concat",
                  "params": {"conv_layers": 3, "filters": 16, "dense_units": 64}},
    },
}


def _train_demo_models(folds_manifest: Path, runs_dir: Path, *, seed: int, console: Console) -> dict[str, dict[str, Any]]:
    """Step 4: cross-validate the WHO-class CNN (ordinal) and the BMD regressor (image + sex + age).

    Each run directory is rebuilt from scratch (the cohort may have changed since a previous demo).
    """
    import shutil

    from osteolens.training import TrainConfig, run_training

    runs: dict[str, dict[str, Any]] = {}
    for name, spec in _DEMO_RUNS.items():
        console.rule(f"4. cross-validated CNN: {name} ({spec['task']}, target {spec['target']})")
        shutil.rmtree(runs_dir / name, ignore_errors=True)
        config = TrainConfig.from_dict(
            {**_DEMO_TRAINING, **spec, "manifest": str(folds_manifest), "name": name, "out": str(runs_dir),
             "seed": seed, "cache": str(runs_dir / ".cache")}
        )
        result = run_training(config, console=console)
        pooled, spread = result.metrics["pooled"], result.metrics["fold_std"]
        external = result.metrics.get("external_test", {})
        if spec["task"] == "regression":
            row = {
                "MAE mg/cm3 (out of fold)": f"{pooled['mae']:.1f} (fold sd {spread.get('mae', float('nan')):.1f})",
                "R2": f"{pooled['r2']:.3f}",
                "external test MAE": f"{external['mae']:.1f}" if external else "-",
            }
        else:
            row = {
                "macro AUC (out of fold)": f"{pooled['auc_macro']:.3f} (fold sd {spread.get('auc_macro', float('nan')):.3f})",
                "accuracy": f"{pooled['accuracy']:.3f}",
                "quadratic kappa": f"{pooled['kappa_quadratic']:.3f}",
                "external test macro AUC": f"{external['auc_macro']:.3f}" if external else "-",
            }
        row["run"] = str(result.run_dir)
        if result.report is not None:
            row["report"] = str(result.report / "report.html")
        runs[name] = row
    return runs
