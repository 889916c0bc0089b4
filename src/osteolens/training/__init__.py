"""Cross-validated training of image models (Lightning Fabric), run directories, resume.

Entry points: :func:`load_config` / :class:`TrainConfig`, :func:`run_training` (all folds,
or one with ``fold=k``) and :func:`merge_run` (join fold outputs into out-of-fold
predictions, metrics, plots and a bundle).
"""

from __future__ import annotations

from osteolens.training.config import ModelConfig, TrainConfig, load_config
from osteolens.training.cv import RunResult, merge_run, run_training

__all__ = ["ModelConfig", "RunResult", "TrainConfig", "load_config", "merge_run", "run_training"]
