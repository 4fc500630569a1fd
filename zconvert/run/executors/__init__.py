"""Executors run the worker function over tasks and yield Results as they complete.

An executor is one method, `map(fn, tasks)`; a new engine is a new module registered in
EXECUTORS, and nothing else changes.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from ...core.records import Result, Task


class Executor(Protocol):
    def map(self, fn: Callable[[Task], Result], tasks: Sequence[Task]) -> Iterator[Result]:
        """Run fn on every task; yield each Result as it completes (any order)."""


EXECUTORS = {
    "serial": "zconvert.run.executors.serial:SerialExecutor",
    "local": "zconvert.run.executors.local:LocalExecutor",
    "dask": "zconvert.run.executors.dask:DaskExecutor",
}


@contextlib.contextmanager
def gc_frozen() -> Iterator[None]:
    """The objects that exist now (a run's tasks, 100,000 of them and more) left out of the
    garbage collector's full passes while results come in: each pass visited all of them,
    on the cores the workers need. They are handed back to it afterwards."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def get_executor(name: str, workers: int | None = None, **options: object) -> Executor:
    module_name, class_name = EXECUTORS[name].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(workers=workers, **options)


def crashed_result(task: Task, reason: str) -> Result:
    """The Result of a task whose worker died or could not run it."""
    return Result.of(task, "failed", error=reason, pid=0)  # pid 0: no worker made it
