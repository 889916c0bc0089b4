"""Honest evaluation: metrics with patient-bootstrap intervals, DeLong tests, thresholds
chosen on validation data, calibration, subgroups, shortcut audit, HTML report and model card.
"""

from __future__ import annotations

from osteolens.evaluation.audit import AuditResult, audit_shortcuts
from osteolens.evaluation.calibration import Calibrator, fit_calibrator
from osteolens.evaluation.compare import ComparisonResult, compare
from osteolens.evaluation.delong import (
    DeLongAUC,
    PairedDeLongTest,
    UnpairedDeLongTest,
    delong_auc,
    delong_cov,
    delong_paired_test,
    delong_unpaired_test,
)
from osteolens.evaluation.evaluate import EvaluationResult, evaluate
from osteolens.evaluation.predictions import Predictions, load_predictions
from osteolens.evaluation.thresholds import ThresholdRule

__all__ = [
    "AuditResult",
    "Calibrator",
    "ComparisonResult",
    "DeLongAUC",
    "EvaluationResult",
    "PairedDeLongTest",
    "Predictions",
    "ThresholdRule",
    "UnpairedDeLongTest",
    "audit_shortcuts",
    "compare",
    "delong_auc",
    "delong_cov",
    "delong_paired_test",
    "delong_unpaired_test",
    "evaluate",
    "fit_calibrator",
    "load_predictions",
]
