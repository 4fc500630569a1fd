"""The process-wide settings of a worker process, applied before numpy or any codec loads, and
its tie to the process that started it.

Worker processes each use one core, so the libraries inside must not start thread pools of
their own: numpy's OpenBLAS started one thread per core in the forkserver and in each worker,
and those threads spun for about 0.1 s of CPU per process (perf). Imported first by the
forkserver and by every pool worker; never in the caller's own process.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading

ONE_THREAD = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLOSC_NTHREADS",
    "ZARR_THREADING__MAX_WORKERS",  # zarr (object storage only) reads it at import
)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def apply() -> None:
    for name in ONE_THREAD:
        os.environ.setdefault(name, "1")
    _keep_freed_memory()


def _keep_freed_memory() -> None:
    """Let glibc keep freed blocks of up to 16 MiB for reuse instead of giving them back to
    the kernel: the inflater's output pieces and the encoders' chunks are allocated and freed
    thousands of times per run, and fresh pages cost a fault each (expensive in a VM)."""
    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded: libc's among them
        libc.mallopt(_M_MMAP_THRESHOLD, 16 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 64 << 20)
    except (OSError, AttributeError):  # pragma: no cover - musl and others have no mallopt
        pass


def end_with_parent() -> None:
    """Make this worker end when the process that started it does, kill -9 included.

    An orphaned worker would otherwise wait on its task pipe for good, holding its memory and
    the run's stdout (`zconvert convert --json | wc -c` never ends). Two ways, both needed:
    - Linux's parent-death signal, which the kernel sends even to a worker busy in C code.
      It names the thread that forked this process: with fork, the caller's only thread (the
      local executor forks from single-threaded callers only); with forkserver, the
      forkserver, which stays up as long as any of its workers does, so there it is a
      backstop only.
    - multiprocessing's parent sentinel, a pipe whose other end the starting process holds
      (the caller, also under a forkserver; with fork, also the siblings forked after this
      worker, which end the same way): a thread waits for its end-of-file, which the kernel
      delivers on that process's death whatever killed it. Everywhere.
    """
    parent = multiprocessing.parent_process()
    if parent is None:  # not started by multiprocessing: nothing to tie to
        return
    _set_parent_death_signal()
    # After the signal is set, not before: a parent that died in between sent none, and its
    # end of the sentinel is closed before the kernel looks for children to signal.
    if not parent.is_alive():
        os._exit(1)
    # Daemon: it never delays the worker's own exit. It blocks in the kernel, costing nothing.
    threading.Thread(
        target=_exit_when_gone, args=(parent,), name="zconvert-parent-watch", daemon=True
    ).start()


def _exit_when_gone(parent: multiprocessing.process.BaseProcess) -> None:
    parent.join()
    os._exit(1)  # at once, no cleanup: nothing is left to report to


def _set_parent_death_signal() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        # prctl takes unsigned longs after the option: a bare int would leave the upper half
        # of the register to chance
        args = (ctypes.c_ulong(int(signal.SIGKILL)), *[ctypes.c_ulong(0)] * 3)
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, *args)
    except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
        pass


apply()
