"""The embedded default: a pool of forkserver worker processes on this machine.

Only small records (a Task and its Result) cross the process boundary. Workers are forked only from a
parent with no other thread and no HDF5 library loaded, otherwise started by a forkserver,
so that a parent's locks or open HDF5 files never leak into workers.

A worker that dies (kill -9, out of memory) breaks the whole pool and fails every unfinished
future, so the pool alone cannot say whose fault it was. Each task therefore marks a shared
byte when it starts and when it ends: after a break, tasks that had not started go back to a
fresh shared pool, and the few that were running are retried once each in a pool of their own,
where a second death can only be theirs.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ..task_list import archive_size
from . import WorkItem

_NOT_STARTED, _RUNNING, _RETURNED = 0, 1, 2
_states: Any = None  # in a worker: the shared byte array of its pool


def _context() -> multiprocessing.context.BaseContext:
    """fork where it is safe, else forkserver (spawn where neither exists).

    fork starts the workers about 0.07 s sooner: they need no new interpreter and import
    numpy and the codecs in parallel, each on its own core. It is safe only while the parent
    has no other thread (Python's or a library's) that could hold a lock at the fork, so
    the process's thread count decides, from /proc; and HDF5 must not be loaded (a parent
    holding HDF5 files open would hand its library state to the children).
    """
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and "h5py" not in sys.modules and _single_threaded():
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        # worker_env first: thread-pool settings must precede numpy's import.
        ctx.set_forkserver_preload(["zconvert.run.worker_env", "zconvert.run.worker"])
        return ctx
    return multiprocessing.get_context("spawn")


def _single_threaded() -> bool:
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:  # no /proc: cannot tell
        return False


@contextlib.contextmanager
def _caller_script_hidden() -> Iterator[None]:
    """Worker processes run zconvert's functions only, so keep them from re-running the
    caller's script: spawn and forkserver children execute a `__main__` given by path, and a
    script without `if __name__ == "__main__":` would start the conversion again in every
    worker (each failing on the output lock). Package entry points (`-m`) are not touched."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


def _submit(pool: ProcessPoolExecutor, *args: Any) -> Future[list[Any]]:
    with _caller_script_hidden():  # worker processes start inside submit()
        return pool.submit(*args)


def _init_worker(states: Any) -> None:
    # First of all: a forked worker inherits the command line's SIGTERM handler (which ends a
    # run the way Ctrl-C does); the pool stops workers with SIGTERM, which must end them at once,
    # even while they are still importing. And a worker must not outlive a parent killed by
    # kill -9, idle on its pipe and holding the run's stdout open.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    from .. import worker_env  # applied on import (spawn, fork: before numpy)

    worker_env.end_with_parent()
    global _states
    _states = states
    from ..outdir import close_inherited_locks
    from ..worker import init_process

    close_inherited_locks()
    init_process()


def _run_marked(fn: Callable[[Any], Any], items: list[tuple[int, WorkItem]]) -> list[Any]:
    """Run a batch of tasks in this worker, marking each as it starts and returns."""
    results = []
    for index, task in items:
        _states[index] = _RUNNING
        results.append(fn(task))
        _states[index] = _RETURNED
    return results


# Archives smaller than BATCH_BYTES travel to the workers in batches: one pool round trip
# (two pickles, two pipe messages, a wake-up of the parent) costs about 0.4 ms, as much as
# converting a 1,000 x 4 archive to Zarr.
BATCH_BYTES = 1 << 20
BATCH_MAX = 32
BATCHES_PER_WORKER = 8  # enough batches that the last ones still spread over every worker


def plan_batches(tasks: Sequence[WorkItem], workers: int) -> list[list[int]]:
    """Task indices in groups: runs of small archives together (up to BATCH_BYTES of input
    and BATCH_MAX tasks), every other archive alone; order is kept."""
    limit = max(1, min(BATCH_MAX, len(tasks) // (max(1, workers) * BATCHES_PER_WORKER)))
    batches: list[list[int]] = []
    current: list[int] = []
    size = 0
    for i, task in enumerate(tasks):
        size = archive_size(task.input_path)
        nbytes = BATCH_BYTES if size is None else size  # URLs, unreadable: never batched
        if current and (len(current) >= limit or size + nbytes > BATCH_BYTES):
            batches.append(current)
            current, size = [], 0
        if nbytes >= BATCH_BYTES:
            batches.append([i])
            continue
        current.append(i)
        size += nbytes
    if current:
        batches.append(current)
    return batches


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """End a pool's workers now, mid-task: an interrupted run must not go on converting the
    tasks already handed to them (shutdown(cancel_futures=True) waits for those). Their
    temporaries are removed by the run; stores at final paths are complete either way.
    ProcessPoolExecutor has no public way to do this before Python 3.14 (terminate_workers)."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            process.terminate()


def _next_finished(finished: queue.SimpleQueue[Future[list[Any]]]) -> Future[list[Any]]:
    while True:
        try:
            return finished.get(timeout=1.0)  # a timeout keeps Ctrl-C responsive
        except queue.Empty:
            continue


class LocalExecutor:
    def __init__(self, workers: int | None = None, **_: object) -> None:
        self.workers = workers or os.cpu_count() or 1

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[WorkItem]) -> Iterator[Any]:
        pending = list(tasks)
        while pending:
            suspects, pending = yield from self._run_shared(fn, pending)
            if suspects:
                yield from self._run_alone(fn, suspects)

    def _pool(
        self, workers: int, states: Any, ctx: multiprocessing.context.BaseContext
    ) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=workers,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(states,),
        )

    def _run_shared(
        self, fn: Callable[[Any], Any], tasks: list[WorkItem]
    ) -> Iterator[Any]:  # returns (suspects, not started) via StopIteration
        ctx = _context()
        states = ctx.Array("b", len(tasks), lock=False)
        pool = self._pool(min(self.workers, len(tasks)), states, ctx)
        broken: list[int] = []
        # Completed futures arrive on a queue: concurrent.futures.wait() visits every pending
        # future on each call, which for 2,000 tasks kept the parent busy on the cores the
        # workers need (py-spy: more CPU than all the result handling together).
        finished: queue.SimpleQueue[Future[list[Any]]] = queue.SimpleQueue()
        try:
            batches: dict[Future[list[Any]], list[int]] = {}
            for batch in plan_batches(tasks, self.workers):
                items = [(i, tasks[i]) for i in batch]
                try:
                    future = _submit(pool, _run_marked, fn, items)
                except BrokenProcessPool:
                    broken.extend(range(batch[0], len(tasks)))  # batches keep the task order
                    break
                batches[future] = batch
                future.add_done_callback(finished.put)
            for _ in range(len(batches)):
                future = _next_finished(finished)
                batch = batches[future]
                try:
                    yield from future.result()
                except BrokenProcessPool:
                    broken.extend(batch)
                except Exception as exc:  # the batch could not be sent or run at all
                    for i in batch:
                        yield tasks[i].crashed(f"{type(exc).__name__}: {exc}")
        except BaseException:  # interrupted (Ctrl-C, SIGTERM) or closed early by the caller
            _stop_workers(pool)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        broken = sorted(set(broken))
        # A broken batch's tasks that had returned lost only their Result (their stores are
        # complete): they go back to the shared pool with those never started.
        suspects = [tasks[i] for i in broken if states[i] == _RUNNING]
        rest = [tasks[i] for i in broken if states[i] != _RUNNING]
        if broken and not suspects:
            # Died before any task was marked (e.g. at start-up): isolate them all, so the
            # loop always makes progress.
            suspects, rest = rest, []
        return suspects, rest

    def _run_alone(self, fn: Callable[[Any], Any], tasks: list[WorkItem]) -> Iterator[Any]:
        """Each task in a fresh one-process pool, a few at a time: a death is its own."""
        queue = list(tasks)
        running: dict[Future[list[Any]], tuple[WorkItem, ProcessPoolExecutor]] = {}
        try:
            while queue or running:
                while queue and len(running) < self.workers:
                    task = queue.pop(0)
                    ctx = _context()
                    pool = self._pool(1, ctx.Array("b", 1, lock=False), ctx)
                    running[_submit(pool, _run_marked, fn, [(0, task)])] = (task, pool)
                done, _ = wait(set(running), return_when=FIRST_COMPLETED)
                for future in done:
                    task, pool = running.pop(future)
                    try:
                        yield from future.result()
                    except BrokenProcessPool:
                        yield task.crashed(
                            "the worker process died on it, and again when retried alone "
                            "(killed, or out of memory); check its size against the memory "
                            "available, or run it by itself",
                        )
                    except Exception as exc:
                        yield task.crashed(f"{type(exc).__name__}: {exc}")
                    finally:
                        pool.shutdown(wait=True)
        except BaseException:
            for _task, pool in running.values():
                _stop_workers(pool)
            raise
        finally:
            for _task, pool in running.values():
                pool.shutdown(wait=True, cancel_futures=True)
