"""Run every task in this process, one after another: for debugging and tiny runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from ...core.records import Result, Task


class SerialExecutor:
    def __init__(self, workers: int | None = None, **_: object) -> None:
        self.workers = 1

    def map(self, fn: Callable[[Task], Result], tasks: Sequence[Task]) -> Iterator[Result]:
        for task in tasks:
            yield fn(task)
