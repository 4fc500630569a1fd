"""A seekable, read-only raw file over a file descriptor, read with pread.

Positional reads share no file offset, so several readers (rapidgzip's threads, HDF5 beside
our own writes) can use one descriptor. A window of a file is a member's compressed bytes
for parallel inflate; the whole file, as it grows, is what HDF5 reads back through DirectFile.
"""

from __future__ import annotations

import io
import os
from typing import Any


class PreadFile(io.RawIOBase):
    """The bytes [offset, offset + length) of the file open as `fd`; with no length, up to
    the file's end as it is at each call."""

    def __init__(self, fd: int, offset: int = 0, length: int | None = None) -> None:
        super().__init__()
        self._fd = fd
        self._offset = offset
        self._length = length
        self._pos = 0

    def _size(self) -> int:
        if self._length is not None:
            return self._length
        return os.fstat(self._fd).st_size - self._offset

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size()}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._size() - self._pos)
        if n <= 0:
            return 0
        view = memoryview(buffer).cast("B")[:n]
        got = os.preadv(self._fd, [view], self._offset + self._pos)
        self._pos += got
        return got
