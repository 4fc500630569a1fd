"""A local Zarr store read through one folder for as long as it is open: never a mix of the
store it opened and the one a run put at its path since.

`zconvert convert --overwrite` replaces a store by renaming a complete new folder into its
place. zarr opens every chunk by its path, so a reader holding an array across that rename
read some chunks of the old store and some of the new (both complete, the mix wrong), and,
once the old folder was deleted, the fill value for the chunks it no longer found: zeros,
silently. Here the store's folder is opened once (a descriptor) and every key is read below
it (`/proc/self/fd/N/...` on Linux), so all of a reader's chunks come from the store it
opened. When that folder is deleted under it, a chunk that zconvert wrote (every chunk of
its stores exists) is missing: StoreError, never zeros.

Where there is no /proc (macOS, Windows) the store is read by its path, as zarr does.
"""

from __future__ import annotations

import os
from typing import Any

from zarr.abc.store import ByteRequest
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.storage import LocalStore

from ..core.errors import StoreError

_METADATA = ("zarr.json", ".zgroup", ".zarray", ".zattrs", ".zmetadata")


def _is_metadata(key: str) -> bool:
    return key.rpartition("/")[2] in _METADATA


class PinnedStore(LocalStore):
    """LocalStore over a folder descriptor, read-only; pickles as its path (another process
    pins the folder at that path when it opens it)."""

    def __init__(self, path: str, fd: int) -> None:
        super().__init__(f"/proc/self/fd/{fd}", read_only=True)
        self.path = path
        self._fd = fd
        self.every_chunk_written = False  # set for zconvert's stores: a missing chunk is news

    def __del__(self) -> None:
        fd, self._fd = getattr(self, "_fd", -1), -1
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (pinned_store, (self.path,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PinnedStore) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __repr__(self) -> str:
        return f"PinnedStore({self.path!r})"

    def __str__(self) -> str:
        return f"file://{self.path}"

    async def get(
        self,
        key: str,
        prototype: BufferPrototype | None = None,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        value = await super().get(key, prototype, byte_range)
        if value is None:
            self._missing(key)
        return value

    async def get_partial_values(self, prototype: BufferPrototype, key_ranges: Any) -> Any:
        key_ranges = list(key_ranges)
        values = await super().get_partial_values(prototype, key_ranges)
        for (key, _), value in zip(key_ranges, values, strict=True):
            if value is None:
                self._missing(key)
        return values

    def _missing(self, key: str) -> None:
        if self.every_chunk_written and not _is_metadata(key):
            raise StoreError(
                f"{self.path}: chunk {key} is gone: the store was replaced or deleted while it "
                "was read; open it again"
            )


def pinned_store(path: str) -> LocalStore:
    """The store at `path`, read through its folder as it is now (see the module)."""
    if not os.path.isdir("/proc/self/fd"):
        return LocalStore(path, read_only=True)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return LocalStore(path, read_only=True)  # zarr says what is wrong with the path
    return PinnedStore(path, fd)
