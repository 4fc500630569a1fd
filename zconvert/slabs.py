"""Overlap inflating the next slab with writing the last one.

The caller inflates into one buffer while a writer thread compresses and writes the other:
Blosc/Zstd encoding and file writes release the GIL, so on a machine with a spare core a
single large member converts at about the speed of inflate alone. Two buffers bound the
memory at two slabs.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from types import TracebackType

import numpy as np

WriteSlab = Callable[[int, np.ndarray], None]


class SlabPipeline:
    """Hand slabs to `write(row_start, slab)` on a background thread, two buffers in turn."""

    def __init__(self, write: WriteSlab, buffers: list[np.ndarray]) -> None:
        self._write = write
        self._free: queue.Queue[np.ndarray] = queue.Queue()
        for buffer in buffers:
            self._free.put(buffer)
        self._work: queue.Queue[tuple[int, np.ndarray, np.ndarray] | None] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="zconvert-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            row_start, slab, buffer = item
            if self._error is None:
                try:
                    self._write(row_start, slab)
                except BaseException as exc:  # re-raised in the caller's thread
                    self._error = exc
            self._free.put(buffer)

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def buffer(self) -> np.ndarray:
        """A buffer no write is using; blocks until the writer has finished with one."""
        buffer = self._free.get()
        self._raise_pending()
        return buffer

    def release(self, buffer: np.ndarray) -> None:
        """Give back a buffer taken with buffer() but not submitted."""
        self._free.put(buffer)

    def submit(self, row_start: int, slab: np.ndarray, buffer: np.ndarray) -> None:
        """Queue `slab` (a view of `buffer`) for writing; `buffer` returns to the pool after."""
        self._work.put((row_start, slab, buffer))

    def close(self) -> None:
        """Wait for every queued write; raise the first write error, if any."""
        if self._thread.is_alive():
            self._work.put(None)
            self._thread.join()
        self._raise_pending()

    def __enter__(self) -> SlabPipeline:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:  # already failing: stop the writer, keep the original error
            self._error = None
            if self._thread.is_alive():
                self._work.put(None)
                self._thread.join()
