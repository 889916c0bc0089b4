"""Beyond one process: per-image batch work (feature extraction, batch prediction) on Dask distributed.

See :mod:`osteolens.scale.dask_jobs` and docs/scaling.md.
"""

from __future__ import annotations

from osteolens.scale.dask_jobs import cluster_client, local_cluster, predict_on_cluster, run_tasks, worker_predictor
from osteolens.scale.predictions import predictions_frame

__all__ = ["cluster_client", "local_cluster", "predict_on_cluster", "predictions_frame", "run_tasks", "worker_predictor"]
