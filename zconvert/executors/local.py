"""The embedded default: a pool of forkserver worker processes on this machine.

Only Task and Result records cross the process boundary. forkserver (not fork) so that a
parent holding threads, locks or open HDF5 files never leaks them into workers.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from ..records import Result, Task
from . import crashed_result


def _context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["zconvert.worker"])
        return ctx
    return multiprocessing.get_context("spawn")


class LocalExecutor:
    def __init__(self, workers: int | None = None, **_: object) -> None:
        self.workers = workers or os.cpu_count() or 1

    def map(self, fn: Callable[[Task], Result], tasks: Sequence[Task]) -> Iterator[Result]:
        if not tasks:
            return
        from ..worker import init_process

        pending = list(tasks)
        retried: set[int] = set()
        while pending:
            # A worker that dies breaks the whole pool: its unfinished tasks go to a fresh pool,
            # each retried once, so one crash fails at most the archive that caused it.
            pending = yield from self._run_pool(fn, pending, retried, init_process)

    def _run_pool(self, fn, tasks, retried, initializer) -> Iterator[Result]:  # type: ignore[no-untyped-def]
        leftovers: list[Task] = []
        pool = ProcessPoolExecutor(
            max_workers=min(self.workers, len(tasks)),
            mp_context=_context(),
            initializer=initializer,
        )
        try:
            futures: dict[Future[Result], Task] = {pool.submit(fn, t): t for t in tasks}
            not_done = set(futures)
            while not_done:
                done, not_done = wait(not_done, return_when=FIRST_COMPLETED)
                for future in done:
                    task = futures[future]
                    try:
                        yield future.result()
                    except BrokenProcessPool:
                        key = id(task)
                        if key in retried:
                            yield crashed_result(
                                task,
                                "worker process died twice converting this archive "
                                "(killed, or out of memory)",
                            )
                        else:
                            retried.add(key)
                            leftovers.append(task)
                    except Exception as exc:
                        yield crashed_result(task, f"{type(exc).__name__}: {exc}")
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return leftovers
