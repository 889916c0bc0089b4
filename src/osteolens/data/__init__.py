"""Manifests, builders, dataset checks and patient-grouped folds."""

from __future__ import annotations

from osteolens.data.builders import from_class_folders, from_table, open_dataset
from osteolens.data.check import DataCheckReport, DuplicateGroup, check_manifest
from osteolens.data.manifest import Manifest
from osteolens.data.paths import shared_data_dir, shared_dataset
from osteolens.data.splits import TEST_FOLD, assign_folds, inner_validation_split, iter_folds, leaks

__all__ = [
    "TEST_FOLD",
    "DataCheckReport",
    "DuplicateGroup",
    "Manifest",
    "assign_folds",
    "check_manifest",
    "from_class_folders",
    "from_table",
    "inner_validation_split",
    "iter_folds",
    "leaks",
    "open_dataset",
    "shared_data_dir",
    "shared_dataset",
]
