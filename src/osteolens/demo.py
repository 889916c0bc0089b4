"""The demo: the main job of osteolens on its built-in default, the synthetic phantom cohort.

Steps: generate the cohort -> check it (counts, duplicates) -> patient-grouped folds with an
external test set -> cross-validated models -> a short results table.
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

    return DemoSummary(
        out_dir=out,
        cohort_manifest=out / "cohort" / "labels.csv",
        check_report=report_path,
        folds_manifest=folds_path,
        n_images=len(cohort),
        class_counts=report.class_counts,
        duplicate_groups=len(report.duplicate_groups),
    )
