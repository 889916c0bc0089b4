"""``osteolens classic cv`` (grouped cross-validation of a classical model on a feature table)
and ``osteolens classic predict`` (its saved final model on new rows)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from osteolens.cli.common import console

classic_app = typer.Typer(help="Classical machine learning (scikit-learn) on feature tables (radiomics, CNN embeddings).", no_args_is_help=True)


def _split(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


@classic_app.command("cv")
def cv(
    features: Path = typer.Option(..., "--features", "-f", help="Feature table from 'osteolens features extract' (Parquet / CSV)."),
    target: str = typer.Option(..., "--target", "-t", help="Column to predict: label (classes) or a number such as bmd."),
    model: str = typer.Option("rf", help="rf | svm | logreg | linear (logistic / ridge, penalty searched on a wide log grid: for CNN embeddings) | hgb."),
    search: str = typer.Option("none", help="none | grid | random hyperparameter search, nested inside the training folds."),
    folds: int = typer.Option(5, help="Outer folds, grouped by patient (ignored when the table has a fold column)."),
    out: Path = typer.Option(Path("runs/classic"), "--out", "-o", help="Run directory."),
    task: str = typer.Option(None, help="binary | multiclass | regression (inferred from the target by default)."),
    positive: str = typer.Option(None, help="Positive class of a binary task; on a target with more classes, this class against the rest (e.g. osteoporosis)."),
    numeric: str = typer.Option(None, help="Numeric inputs: names or patterns, comma-separated (default: the sidecar's feature columns)."),
    covariates: str = typer.Option(None, help="Extra numeric inputs, e.g. 'age'."),
    categorical: str = typer.Option(None, help="One-hot inputs (default: vertebra, sex, view when present)."),
    params: str = typer.Option(None, help='Fixed estimator hyperparameters as JSON, e.g. \'{"n_estimators": 40, "min_samples_leaf": 47}\'.'),
    inner_folds: int = typer.Option(3, help="Folds of the inner grouped split of the search."),
    n_iter: int = typer.Option(20, help="Candidates of a random search."),
    seed: int = typer.Option(0, help="Seed of folds, models, search and permutations."),
    permutation_repeats: int = typer.Option(5, help="Repeats of the held-out permutation importance (0 skips it)."),
    permutation_max_columns: int = typer.Option(300, help="Skip the permutation importance above this many input columns (it costs one prediction per column and repeat; CNN embeddings have thousands)."),
    top_n: int = typer.Option(30, help="Bars in importance.png."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Parallel jobs of the search."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write the evaluation report (report/) from the out-of-fold predictions."),
    n_bootstrap: int = typer.Option(2000, help="Bootstrap resamples of the report."),
    manifest: Path = typer.Option(None, help="Manifest the features came from, for the report's covariates-only and acquisition-only baselines (default: the one the table's sidecar names)."),
) -> None:
    """Cross-validate a classical model with patient-grouped folds and nested tuning.

    Writes config.resolved.yaml, oof_predictions.csv, metrics.json, confusion/,
    importance.csv, importance.png, report/ (the evaluation report) and the final model
    (model.skops + model.json, fitted on every CV row) into the run directory. With the
    manifest, the report also fits the covariates-only and acquisition-only baselines in the
    same folds.

    Example: osteolens classic cv --features features.parquet --target label --model rf --search grid --folds 5 --out runs/rf_label

    Example: osteolens classic cv --features cnn.parquet --target label --positive osteoporosis --model linear --search grid
    """
    from rich.table import Table

    from osteolens.errors import ConfigError
    from osteolens.features import load_feature_table
    from osteolens.training.classic_cv import ClassicCVConfig, run_classic_cv

    try:
        fixed = json.loads(params) if params else {}
    except json.JSONDecodeError as exc:
        raise ConfigError("--params", f"not valid JSON ({exc}).", 'write e.g. \'{"n_estimators": 40}\'.') from None
    config = ClassicCVConfig(
        target=target, model=model, task=task, search=search, folds=folds, inner_folds=inner_folds, n_iter=n_iter,
        seed=seed, numeric=_split(numeric), covariates=_split(covariates) or [], categorical=_split(categorical),
        params=fixed, positive=positive, permutation_repeats=permutation_repeats, permutation_max_columns=permutation_max_columns, top_n=top_n, jobs=jobs,
        report=report, n_bootstrap=n_bootstrap, manifest=str(manifest) if manifest is not None else None,
    )
    table, sidecar = load_feature_table(features)
    result = run_classic_cv(table, config, run_dir=out, sidecar=sidecar, features_path=str(features))
    metrics = result.metrics
    view = Table(title=f"{model} on {target} ({metrics['task']}): {result.resolved['rows']} images, {result.resolved['patients']} patients, {result.resolved['folds']['n_folds']} folds")
    view.add_column("metric")
    view.add_column("pooled", justify="right")
    view.add_column("fold mean (sd)", justify="right")
    for name, value in metrics["pooled"].items():
        if name in ("n", "confusion_matrix"):
            continue
        spread = metrics["fold_mean_sd"][name]
        fold_text = "-" if spread["mean"] is None else f"{spread['mean']:.3f}" + (f" ({spread['sd']:.3f})" if spread["sd"] is not None else "")
        view.add_row(name, "-" if value is None else f"{value:.3f}", fold_text)
    console.print(view)
    if not result.importance.empty:
        console.print("top features: " + ", ".join(result.importance["feature"].head(5)), highlight=False)
    if metrics["permutation_importance"].startswith("skipped"):
        console.print(f"permutation importance {metrics['permutation_importance']}", highlight=False)
    baselines = metrics["baselines"]
    for comparison in baselines.get("comparisons") or []:
        low, high = comparison.get("ci_low"), comparison.get("ci_high")
        interval = "" if low is None or high is None else f" ({low:+.3f} to {high:+.3f})"
        console.print(f"image features vs {comparison['versus']}: {baselines['metric']} difference {comparison['difference']:+.3f}{interval}", highlight=False)
    for warning in baselines.get("warnings") or []:
        console.print(warning, style="yellow", highlight=False, markup=False)
    if not baselines["run"]:
        console.print(f"baselines not run: {baselines['reason']}", highlight=False)
    console.print(f"run directory: {out}", highlight=False)


@classic_app.command("predict")
def predict(
    model: Path = typer.Argument(..., help="Run directory of 'osteolens classic cv' (or its model.skops)."),
    features: Path = typer.Option(..., "--features", "-f", help="Feature table of the new images (Parquet / CSV / Excel), extracted with the same settings."),
    out: Path = typer.Option(Path("classic_predictions.csv"), "--out", "-o", help="Predictions CSV."),
) -> None:
    """Apply a saved classical model to a feature table: prob_<class> / y_pred per row.

    Example: osteolens classic predict runs/rf_label --features new_features.parquet --out predictions.csv
    """
    from osteolens.features import load_feature_table
    from osteolens.models.classic_store import load_classic_model

    loaded = load_classic_model(model)
    table, _ = load_feature_table(features)
    predictions = loaded.predict(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    predictions.to_csv(out, index=False)
    info = loaded.info
    console.print(f"{len(predictions)} row(s) predicted by {info['estimator']} ({info['task']}, "
                  f"{info['target']}); {out}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``classic`` command group."""
    app.add_typer(classic_app, name="classic")
