"""Honest evaluation: metrics with patient-bootstrap intervals, DeLong tests, thresholds
chosen on validation data, calibration, subgroups, shortcut audit, HTML report and model card.

The names below are imported on first use, so that ``osteolens.evaluation.metrics`` (numpy
only) does not load pandas and SciPy's statistics.
"""

from __future__ import annotations

from osteolens import lazy_exports

__all__ = lazy_exports(__name__, {
    "audit": ["AuditResult", "audit_shortcuts"],
    "calibration": ["Calibrator", "fit_calibrator"],
    "compare": ["ComparisonResult", "compare"],
    "delong": ["DeLongAUC", "PairedDeLongTest", "UnpairedDeLongTest", "delong_auc", "delong_cov",
               "delong_paired_test", "delong_unpaired_test"],
    "evaluate": ["EvaluationResult", "evaluate"],
    "predictions": ["Predictions", "load_predictions"],
    "thresholds": ["ThresholdRule"],
})
