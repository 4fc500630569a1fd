"""Run every task in this process, one after another: for debugging and tiny runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from . import WorkItem


class SerialExecutor:
    def __init__(self, workers: int | None = None, **_: object) -> None:
        self.workers = 1

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[WorkItem]) -> Iterator[Any]:
        for task in tasks:
            yield fn(task)
