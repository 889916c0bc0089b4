"""``osteolens evaluate`` and ``osteolens compare``."""

from __future__ import annotations

from pathlib import Path

import typer

from osteolens.cli.common import console, print_added_value


def evaluate_command(
    predictions: Path = typer.Argument(..., help="Predictions CSV (oof_predictions.csv of a CV run, or your own)."),
    out: Path = typer.Option(
        Path("evaluation"), "--out", "-o", help="Folder for metrics.json, plots/, report.html, model_card.md."
    ),
    manifest: Path = typer.Option(
        None, "--manifest", "-m", help="Manifest CSV: covariates, data summary, thumbnails and the shortcut audit."
    ),
    task: str = typer.Option(None, help="binary, multiclass or regression (inferred by default)."),
    positive: str = typer.Option(None, help="Positive class of a binary task."),
    truth: str = typer.Option("y_true", "--truth", help="Column with the truth."),
    score: str = typer.Option(None, "--score", help="Column with the score (binary) or prediction (regression)."),
    class_order: str = typer.Option(None, help="Comma-separated class order, e.g. 'none,mild,moderate,severe'."),
    ordinal: bool = typer.Option(
        None, "--ordinal/--nominal", help="Whether the class order is ordinal (default: only bone-density names)."
    ),
    decision: str = typer.Option(
        "argmax", help="Class decision of multiclass rows: argmax, or cumulative (an ordinal model's rule: "
        "the number of cumulative P(y > k) above 0.5). Runs of ordinal models use cumulative."
    ),
    threshold: str = typer.Option("youden", help="Threshold rule: youden, sensitivity or fixed."),
    target_sensitivity: float = typer.Option(0.9, help="Target for --threshold sensitivity."),
    threshold_value: float = typer.Option(0.5, help="Value for --threshold fixed."),
    n_bootstrap: int = typer.Option(2000, "--n-bootstrap", "-b", help="Bootstrap resamples (patients, stratified)."),
    seed: int = typer.Option(0, help="Seed of the bootstrap."),
    conf_level: float = typer.Option(0.95, help="Level of every interval."),
    audit: bool = typer.Option(
        True, "--audit/--no-audit", help="Fit the baselines / shortcut audit when a manifest is given."
    ),
    title: str = typer.Option(None, help="Report title."),
) -> None:
    """Metrics with 95 % intervals, calibration, subgroups, plots, report.html and model_card.md.

    Example: osteolens evaluate runs/knee/oof_predictions.csv --manifest manifest.csv --out runs/knee/eval
    """
    from rich.table import Table

    from osteolens.evaluation import ThresholdRule, evaluate

    rule = ThresholdRule(threshold, target_sensitivity=target_sensitivity, value=threshold_value)
    result = evaluate(
        predictions,
        out,
        task=task,
        positive=positive,
        n_bootstrap=n_bootstrap,
        seed=seed,
        conf_level=conf_level,
        manifest=manifest,
        threshold=rule,
        truth=truth,
        score=score,
        class_order=[c.strip() for c in class_order.split(",")] if class_order else None,
        ordinal=ordinal,
        decision=decision,
        audit=audit,
        title=title,
    )
    table = Table(title=f"{result.task}: {result.n_images} images, {result.n_patients} patients")
    for column in ("metric", "value", f"{conf_level:.0%} CI"):
        table.add_column(column)
    for name, entry in result.metrics.items():
        ci = "" if entry["ci_low"] is None else f"{entry['ci_low']:.3f} to {entry['ci_high']:.3f}"
        table.add_row(name, "n/a" if entry["value"] is None else f"{entry['value']:.3f}", ci)
    console.print(table)
    if result.threshold:
        console.print(
            f"threshold ({result.threshold['method']}): {result.threshold['threshold']:.4f}, {result.threshold['selection']}"
        )
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    print_added_value(result.added_value)
    if result.audit and result.audit.get("failures"):
        from osteolens.cli.common import report_failures

        report_failures(result.audit["failures"], out / "audit_failures.csv")
    console.print(f"report: {out / 'report.html'}  model card: {out / 'model_card.md'}")


def compare_command(
    a: Path = typer.Argument(..., help="Predictions CSV of model / view A."),
    b: Path = typer.Argument(..., help="Predictions CSV of model / view B."),
    on: str = typer.Option("image", "--on", help="Column joining A and B (image, patient_id, study ...)."),
    paired: bool = typer.Option(
        None, "--paired/--unpaired", help="Force the test; by default paired when A and B hold the same keys."
    ),
    positive: str = typer.Option(None, help="Positive class (binary tables, or the class of a multiclass table)."),
    truth: str = typer.Option("y_true", "--truth", help="Column with the truth in both tables."),
    score: str = typer.Option(None, "--score", help="Column with the score (of A, and of B unless --score-b)."),
    score_b: str = typer.Option(None, "--score-b", help="Column with B's score when it differs from A's."),
    alternative: str = typer.Option("two-sided", help="two-sided, greater (A > B) or less."),
    conf_level: float = typer.Option(0.95, help="Level of the interval of the difference."),
    n_bootstrap: int = typer.Option(2000, "--n-bootstrap", "-b", help="Resamples (regression only)."),
    seed: int = typer.Option(0, help="Seed (regression only)."),
    out: Path = typer.Option(None, "--out", "-o", help="Write the result as JSON here."),
) -> None:
    """Compare two models or two views: DeLong test of AUCs (paired or unpaired), bootstrap for MAE.

    Example: osteolens compare ap/oof_predictions.csv lateral/oof_predictions.csv --on patient_id

    Two score columns of one CSV: osteolens compare t.csv t.csv --truth outcome --score a --score-b b
    """
    import json

    from osteolens.evaluation.compare import compare

    result = compare(
        a,
        b,
        on=on,
        paired=paired,
        positive=positive,
        alternative=alternative,
        conf_level=conf_level,
        n_bootstrap=n_bootstrap,
        seed=seed,
        truth=truth,
        score=score,
        score_b=score_b,
    )
    kind = "paired" if result.paired else "unpaired"
    console.print(
        f"{result.metric.upper()} A = {result.value_a:.4f}, B = {result.value_b:.4f} ({kind}, {result.n_keys[0]} / {result.n_keys[1]} {on} keys)"
    )
    ci = "" if result.ci_low is None else f", {conf_level:.0%} CI {result.ci_low:+.4f} to {result.ci_high:+.4f}"
    stats = ", ".join(f"{k} = {v:.4g}" for k, v in result.statistic.items())
    console.print(f"A - B = {result.difference:+.4f}{ci}; p = {result.p:.4g} ({result.method}; {stats})")
    for note in result.notes:
        console.print(f"note: {note}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        console.print(f"written: {out}")


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` and ``compare`` to the main app."""
    app.command("evaluate")(evaluate_command)
    app.command("compare")(compare_command)
