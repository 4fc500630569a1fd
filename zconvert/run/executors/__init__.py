"""Executors run a worker function over items and yield its results as they complete.

An executor is one method, `map(fn, items)`; a new engine is a new module registered in
EXECUTORS, and nothing else changes. Executors know nothing of what the items are (a Task to
convert, a StoreCheck to verify) beyond the three things WorkItem names.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol


class WorkItem(Protocol):
    """What an executor asks of the items it runs."""

    @property
    def key(self) -> str:
        """Unique within one map: which item a retry is of."""

    @property
    def input_path(self) -> str:
        """What the item reads, to size batches by: a local path, or a URL (never batched)."""

    def crashed(self, reason: str) -> Any:
        """The result of the item when its worker died or could not run it."""


class Executor(Protocol):
    def map(self, fn: Callable[[Any], Any], items: Sequence[WorkItem]) -> Iterator[Any]:
        """Run fn on every item; yield each result as it completes (any order)."""


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
