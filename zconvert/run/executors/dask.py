"""dask.distributed: the same worker function on a cluster (or a LocalCluster for one run).

Only small records (a Task and its Result) travel through the scheduler; array data goes from the archive
(a path or URL every worker can read) to the store (likewise) inside one worker. A task that
raises, or whose worker dies more often than the scheduler allows, fails its archive only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from . import WorkItem

# How many times a task may take its worker down with it before it is failed (the local
# pool's rule: one retry on a fresh worker).
ALLOWED_FAILURES = 1
SCHEDULER_CONFIG = {
    "distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
    # A worker holds only the task it runs: a dying worker then takes no queued, innocent
    # archive down with it (the scheduler counts every task a dead worker held against it).
    "distributed.scheduler.worker-saturation": 1.0,
}
CONNECT_TIMEOUT_S = 10


def _init_worker(dask_worker: Any = None) -> None:
    from ..worker import init_process

    init_process()


class DaskExecutor:
    def __init__(
        self, workers: int | None = None, scheduler: str | None = None, **_: object
    ) -> None:
        self.workers = workers
        self.scheduler = scheduler

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[WorkItem]) -> Iterator[Any]:
        if not tasks:
            return
        try:
            import dask
            from distributed import Client, LocalCluster, as_completed
        except ImportError:
            from ...core.errors import ConfigError

            raise ConfigError(
                "executor", "dask needs dask.distributed; pip install 'zconvert[dask]'"
            ) from None

        # The cluster's start/stop chatter is at INFO on the "distributed" logger; a run's own
        # progress is what users asked for.
        dask_log = logging.getLogger("distributed")
        old_level = dask_log.level
        dask_log.setLevel(max(old_level, logging.WARNING))
        cluster = client = None
        try:
            with dask.config.set(SCHEDULER_CONFIG):
                if self.scheduler:
                    client = self._connect(Client)
                else:
                    cluster = LocalCluster(
                        processes=True,
                        n_workers=min(self.workers or os.cpu_count() or 1, len(tasks)),
                        threads_per_worker=1,
                        dashboard_address=None,
                        host="127.0.0.1",
                        # The scheduler's HTTP endpoints otherwise try port 8787 and warn
                        # when another cluster holds it.
                        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                        silence_logs=logging.WARNING,
                    )
                    client = Client(cluster)
            # Every worker, also one that joins or restarts later, gets one library thread.
            client.register_plugin(_InitPlugin(), name="zconvert-init")
            # One graph update for all tasks. Task is a plain dataclass: dask ships it as one
            # argument and never walks into it.
            futures = client.map(fn, list(tasks), pure=False)
            task_of = {f.key: t for f, t in zip(futures, tasks, strict=True)}
            # with_results gathers results as they finish, instead of one round trip each.
            completed = as_completed(futures, with_results=True, raise_errors=False)
            retried: set[str] = set()
            for future, value in completed:
                task = task_of.pop(future.key)
                # The value decides, not future.status: a result already gathered stays good
                # even when the worker that held it dies and the status changes under us
                # (CI saw a finished Result reported as an error that way).
                exc = _error_of(value)
                if exc is None:
                    yield value
                else:
                    if type(exc).__name__ != "KilledWorker" and task.key not in retried:
                        # Not this task's own death: e.g. its finished result was lost with a
                        # worker that another task killed. Once more, on the cluster as it is.
                        retried.add(task.key)
                        again = client.submit(fn, task, pure=False)
                        task_of[again.key] = task
                        completed.add(again)
                    else:
                        yield task.crashed(_describe(exc))
                future.release()
        finally:
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.close()
            dask_log.setLevel(old_level)

    def _connect(self, client_cls: Any) -> Any:
        from ...core.errors import ConfigError

        try:
            return client_cls(self.scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(
                "scheduler",
                f"cannot reach the dask scheduler at {self.scheduler} ({exc}); "
                "check the address or leave it out to start a LocalCluster",
            ) from None


def _describe(exc: BaseException | None) -> str:
    if type(exc).__name__ == "KilledWorker":
        return (
            "dask worker process died converting this archive, on every retry the scheduler "
            "allows (killed, or out of memory)"
        )
    return f"{type(exc).__name__}: {exc}"


try:
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # without zconvert[dask], map() explains what to install
    WorkerPlugin = object  # type: ignore[assignment,misc]


class _InitPlugin(WorkerPlugin):  # type: ignore[misc]
    """Runs worker.init_process in each dask worker process as it starts."""

    name = "zconvert-init"

    def setup(self, worker: Any) -> None:
        _init_worker(worker)


def _error_of(value: Any) -> BaseException | None:
    """The exception a gathered value stands for (dask hands an error over as (type,
    exception, traceback), or the exception itself), or None for a result."""
    if isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], BaseException):
        return value[1]
    return value if isinstance(value, BaseException) else None
