"""Overlap inflating the next piece of a member with writing the last one.

The caller inflates into one buffer while a writer thread compresses and writes what the
caller has handed over: Blosc/Zstd encoding and file writes release the GIL, so on a machine
with a spare core a member converts at about the speed of inflate alone. Two buffers bound the
memory at two slabs.

A slab is handed over in pieces (one chunk, or about 1 MiB of an uncompressed array), each as
soon as it is inflated, so that after the member's last byte only one piece is still to be
written. With whole 8 MiB slabs, each archive ended with an 8 ms wait for the last slab's
write (the disk here writes about 1 GB/s), 8-10% of the time of a 32 MB member.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from types import TracebackType

import numpy as np

WriteSlab = Callable[[int, np.ndarray], None]


class SlabPipeline:
    """Hand pieces to `write(row_start, piece)` on a background thread; buffers in turn."""

    def __init__(self, write: WriteSlab, buffers: list[np.ndarray]) -> None:
        self._write = write
        self._free: queue.Queue[np.ndarray] = queue.Queue()
        for buffer in buffers:
            self._free.put(buffer)
        # Work items: (row_start, piece) to write, or a bare buffer to give back; None stops.
        self._work: queue.Queue[tuple[int, np.ndarray] | np.ndarray | None] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="zconvert-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            if isinstance(item, np.ndarray):  # every piece queued before it is written
                self._free.put(item)
                continue
            if self._error is None:
                try:
                    self._write(*item)
                except BaseException as exc:  # re-raised in the caller's thread
                    self._error = exc

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def buffer(self) -> np.ndarray:
        """A buffer no write is using; blocks until the writer has finished with one."""
        buffer = self._free.get()
        self._raise_pending()
        return buffer

    def submit(self, row_start: int, piece: np.ndarray) -> None:
        """Queue `piece` (a view of a buffer taken with buffer()) for writing."""
        self._raise_pending()
        self._work.put((row_start, piece))

    def release(self, buffer: np.ndarray) -> None:
        """Give `buffer` back once every piece submitted from it so far has been written."""
        self._work.put(buffer)

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
