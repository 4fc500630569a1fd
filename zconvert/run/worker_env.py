"""The process-wide settings of a worker process, applied before numpy or any codec loads.

Worker processes each use one core, so the libraries inside must not start thread pools of
their own: numpy's OpenBLAS started one thread per core in the forkserver and in each worker,
and those threads spun for about 0.1 s of CPU per process (perf). Imported first by the
forkserver and by every pool worker; never in the caller's own process.
"""

from __future__ import annotations

import ctypes
import os

ONE_THREAD = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLOSC_NTHREADS",
    "ZARR_THREADING__MAX_WORKERS",  # zarr (object storage only) reads it at import
)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


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


apply()
