"""Per-image batch work on a Dask distributed cluster: feature extraction and batch prediction.

One code path from laptop to cluster (docs/scaling.md):

* ``scheduler="tcp://HOST:8786"``: connect to a running ``dask scheduler`` and its ``dask worker``
  processes, on any number of machines;
* ``jobs=N`` (no scheduler): a :class:`distributed.LocalCluster` of ``N`` worker *processes*, one
  thread each, started for the call and stopped after it;
* neither: no cluster, the caller runs in its own process.

Tasks are submitted with explicit keys (one per image, or per model batch of consecutive
images), and results are gathered by key in the calling process: when a worker dies, the
scheduler reruns its unfinished tasks on the others (up to ``distributed.scheduler.allowed-failures``
times, 3 by default), and every key is collected exactly once, so no image is lost or counted
twice. A task that keeps killing workers comes back as ``KilledWorker`` and is recorded as that
image's failure; the batch goes on.

What each worker needs: osteolens installed (the same version), read access to the images at the
paths the client sends (absolute paths: a shared filesystem or the same mount points), and for
prediction the bundle at the same path. Each worker process builds the
:class:`~osteolens.inference.Predictor` once per bundle path and digest
(:func:`worker_predictor`), and the feature families once per configuration
(``osteolens.features.extract``'s per-process cache).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any

from osteolens.errors import BundleError, ConfigError, OsteolensError

#: Seconds to wait for a remote scheduler before giving up.
CONNECT_TIMEOUT_S = 20


@contextlib.contextmanager
def cluster_client(scheduler: str | None = None, jobs: int = 1) -> Iterator[Any | None]:
    """A ``distributed.Client`` for the duration of the block, or None when there is no cluster.

    Args:
        scheduler: address of a running scheduler (``tcp://HOST:8786``); wins over ``jobs``.
        jobs: without a scheduler, ``jobs > 1`` starts a ``LocalCluster(n_workers=jobs,
            threads_per_worker=1)`` of worker processes (no dashboard), closed on exit.

    Raises:
        ConfigError: the scheduler cannot be reached, or ``jobs < 1``.

    Example:
        >>> with cluster_client(None, jobs=1) as client:
        ...     client is None
        True
    """
    if jobs < 1:
        raise ConfigError("--jobs", f"must be at least 1, got {jobs}.", "pass --jobs 1 or more.")
    if scheduler:
        from distributed import Client

        try:
            client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise ConfigError("--scheduler", f"cannot reach the Dask scheduler at {scheduler!r} ({type(exc).__name__}: {exc}).",
                              "start one ('dask scheduler') with workers ('dask worker tcp://HOST:8786'), "
                              "or check the address and the firewall.") from None
        with client:
            yield client
    elif jobs > 1:
        from distributed import Client

        with local_cluster(jobs) as cluster, Client(cluster) as client:
            yield client
    else:
        yield None


def local_cluster(workers: int) -> Any:
    """A ``distributed.LocalCluster`` of ``workers`` processes with one thread each, no dashboard, and
    its scheduler's HTTP endpoint on a free port (two clusters on one machine never collide).

    Use it as a context manager; pass its ``scheduler_address`` as ``scheduler``.
    """
    from distributed import LocalCluster

    return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                        scheduler_kwargs={"dashboard_address": ":0"})


def run_tasks(client: Any, function: Callable[..., Any], tasks: Sequence[tuple], name: str) -> Iterator[tuple[int, Any, BaseException | None]]:
    """Run ``function(*task)`` for every task on the cluster; yield as each finishes.

    Each task gets its own key (``<name>-<run id>-<position>``), and each position is yielded
    exactly once whatever happens to the workers: ``(position, result, None)``, or
    ``(position, None, error)`` when the task raised or kept killing workers (``KilledWorker``).
    A task's data is released on the cluster as soon as it has been yielded.

    Args:
        client: a ``distributed.Client``.
        function: an importable (module-level) function.
        tasks: the argument tuples.
        name: the key prefix, shown on the dashboard.
    """
    from distributed import as_completed

    run = uuid.uuid4().hex[:12]
    futures = {client.submit(function, *task, key=f"{name}-{run}-{position}", pure=False): position
               for position, task in enumerate(tasks)}
    for future, result in as_completed(futures, with_results=True, raise_errors=False):
        position = futures.pop(future)
        if future.status == "error":
            yield position, None, future.exception()
        else:
            yield position, result, None
        future.release()


@lru_cache(maxsize=4)
def worker_predictor(bundle: str, digest: str, backend: str = "onnx", threads: int = 1) -> Any:
    """This process's :class:`~osteolens.inference.Predictor` of ``bundle``, built on first use.

    Raises:
        BundleError: the bundle here is not the one the client loaded (another digest).
    """
    from osteolens.inference import Predictor

    predictor = Predictor(bundle, backend=backend, threads=threads)
    if predictor.bundle.digest != digest:
        raise BundleError(f"{bundle}: this worker's copy has digest {predictor.bundle.digest[:16]}, the client's "
                          f"{digest[:16]}. Fix: give every worker the same bundle (a shared folder, or copy it).")
    return predictor


def predict_chunk(bundle: str, digest: str, backend: str, threads: int, start: int, samples: Sequence[str],
                  covariates: Sequence[Mapping[str, Any] | None]) -> list[tuple[int, Any]]:
    """Worker: one model batch of consecutive images; ``(index, Prediction or the error's message)`` each.

    Errors travel as messages: osteolens' exceptions take several arguments and are rebuilt here
    as :class:`OsteolensError` with the same text.
    """
    from osteolens.inference import Prediction

    predictor = worker_predictor(bundle, digest, backend, threads)
    out: list[tuple[int, Any]] = []
    for i, result in predictor.predict_many(samples, covariates, batch_size=max(1, len(samples))):
        out.append((start + i, result if isinstance(result, Prediction) else str(result)))
    return out


def predict_on_cluster(
    bundle: str,
    digest: str,
    samples: Sequence[str],
    covariates: Sequence[Mapping[str, Any] | None],
    batch_size: int = 8,
    backend: str = "onnx",
    threads: int | None = None,
    scheduler: str | None = None,
    jobs: int = 2,
) -> Iterator[tuple[int, Any]]:
    """Predict ``samples`` on a Dask cluster, as :meth:`Predictor.predict_many` does in one process.

    The work is cut into the same batches as ``predict_many`` (``batch_size`` consecutive
    images), one task each, so every image meets the same neighbours in the network as in a
    one-process run and gets the same numbers. The cluster (``scheduler``, else a local one of
    ``jobs`` processes) lives as long as the iteration.

    Args:
        bundle: absolute path of the bundle folder or zip, readable by every worker.
        digest: the bundle's digest as loaded by the caller; a worker with another copy fails.
        samples: absolute image paths.
        covariates: per sample, the model's covariates (or None).
        batch_size: images per task and per model call.
        backend: ``onnx`` or ``torch``.
        threads: the model's threads in each task (default 1: the cluster's workers are the parallelism).
        scheduler: a scheduler address, or None for a local cluster.
        jobs: local worker processes when there is no scheduler (at least 2).

    Yields:
        ``(index in samples, Prediction)`` or ``(index, OsteolensError)``, in completion order,
        each index once.
    """
    if scheduler is None and jobs < 2:
        raise ConfigError("--jobs", f"a local cluster needs at least 2 workers, got {jobs}.",
                          "pass --jobs 2 or more, or --scheduler, or predict in this process (Predictor.predict_many).")
    size = max(1, batch_size)
    starts = range(0, len(samples), size)
    tasks = [(bundle, digest, backend, threads or 1, s, list(samples[s:s + size]), list(covariates[s:s + size]))
             for s in starts]
    with cluster_client(scheduler, jobs) as client:
        for position, items, error in run_tasks(client, predict_chunk, tasks, "osteolens-predict"):
            if error is not None:
                reason = str(error) if isinstance(error, OsteolensError) else f"worker failed ({type(error).__name__}: {error})"
                for index in range(starts[position], min(starts[position] + size, len(samples))):
                    yield index, OsteolensError(reason)
                continue
            for index, result in items:
                yield index, OsteolensError(result) if isinstance(result, str) else result
