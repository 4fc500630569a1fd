"""Deflate64 (ZIP method 9) members as a bounded stream, through inflate64.

inflate64 returns everything one input piece inflates to, with no output limit; pieces of
16 KiB bound that at a few MiB even for all-zero data (about 1,000:1), so memory stays
O(piece) for any member. Sizes and CRC32 are checked by the caller like every other method.
"""

from __future__ import annotations

from typing import BinaryIO

INPUT_PIECE = 16 << 10


class Deflate64Stream:
    """`readinto` over a member's inflated bytes, read from `offset` of `fileobj`."""

    def __init__(self, fileobj: BinaryIO, offset: int, compress_size: int) -> None:
        import inflate64

        self._inflater = inflate64.Inflater()
        self._fileobj = fileobj
        self._remaining = compress_size
        self._pending = memoryview(b"")
        fileobj.seek(offset)

    def readinto(self, out: memoryview) -> int:
        filled = 0
        while filled < len(out):
            if self._pending:
                take = min(len(self._pending), len(out) - filled)
                out[filled : filled + take] = self._pending[:take]
                self._pending = self._pending[take:]
                filled += take
                continue
            if self._inflater.eof:
                break
            if self._remaining <= 0:
                raise EOFError("deflate64 stream ends early (archive truncated or corrupt)")
            piece = self._fileobj.read(min(INPUT_PIECE, self._remaining))
            if not piece:
                raise EOFError("archive is truncated")
            self._remaining -= len(piece)
            self._pending = memoryview(self._inflater.inflate(piece))
        return filled

    def close(self) -> None:
        self._pending = memoryview(b"")
