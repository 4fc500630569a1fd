"""Where a Zarr store's keys go: a local folder or object storage, behind one small interface.

The Zarr sink writes every store the same way, key by key ('a/zarr.json', 'a/c/3/0'), and a
place turns keys into storage. The bytes are the sink's, so a store on S3 is byte for byte
the store a local run writes; only how keys are stored, and how a store becomes visible,
differ:

- FolderPlace: files in a hidden temporary sibling of the final path, written through
  FileWriter (O_DIRECT where aligned), renamed into place by commit (atomic.publish). A file
  takes pieces at any offset (`partial_writes`), and a local path can be mapped.
- ObjectPlace: one object per key through fsspec, each stored by one PUT (object stores make
  a single-request upload visible whole or not at all), so a key is written whole: no piece
  is ever a read-modify-write of an object. There is no rename: an older store at the URL
  is removed first, and the store becomes visible when the sink writes its root document,
  last; commit has nothing more to do.

The place is chosen once per store (open_place), never per key.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from ..core.storage import filesystem, is_url, join, remove_tree
from .atomic import publish, remove_path, temp_sibling
from .directio import FileWriter


class KeyWriter(Protocol):
    """One key written by positional writes; `close()` completes it (FileWriter's methods)."""

    def pwrite(self, data: memoryview | bytes, offset: int) -> None: ...

    def truncate(self, size: int) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> KeyWriter: ...

    def __exit__(self, *exc: object) -> None: ...


class Place(Protocol):
    # Whether a key takes pieces written straight to storage at any offset, and has a local
    # path that can be mapped; if not, the sink writes each key whole.
    partial_writes: bool

    def writer(self, key: str, create: bool = True) -> KeyWriter:
        """A writer of `key` ('/'-separated, below the store's root); `create` starts it empty."""

    def write_bytes(self, key: str, data: bytes) -> None:
        """Store `data` at `key` in one write."""

    def local_path(self, key: str) -> str:
        """The file holding `key` (only where `partial_writes`)."""

    def flush(self) -> None:
        """Store every key written so far before any written after (a barrier)."""

    def commit(self) -> None:
        """Make the store visible at its final path, once every key is written."""

    def abort(self) -> None:
        """Remove everything written so far."""


def open_place(
    final_path: str, storage_options: dict[str, Any] | None, durable: bool, direct_io: bool
) -> Place:
    """The place of a store at `final_path`: an ObjectPlace for a URL, else a FolderPlace."""
    if is_url(final_path):
        return ObjectPlace(final_path, storage_options or {})
    return FolderPlace(final_path, durable, direct_io)


class FolderPlace:
    """Keys as files below a temporary sibling of `final_path`, published on commit."""

    partial_writes = True

    def __init__(self, final_path: str, durable: bool, direct_io: bool) -> None:
        self.final_path = final_path
        self.root = temp_sibling(final_path)
        self.durable = durable
        self.direct_io = direct_io
        os.makedirs(self.root)
        self._folders = {self.root}  # made already: one makedirs per folder, not per chunk

    def local_path(self, key: str) -> str:
        return os.path.join(self.root, key)  # '/' inside a key is a separator on Windows too

    def _made(self, key: str) -> str:
        """The file of `key`, its folder made."""
        path = self.local_path(key)
        folder = os.path.dirname(path)
        if folder not in self._folders:
            os.makedirs(folder, exist_ok=True)
            self._folders.add(folder)
        return path

    def writer(self, key: str, create: bool = True) -> FileWriter:
        return FileWriter(self._made(key), create=create, enabled=self.direct_io)

    def write_bytes(self, key: str, data: bytes) -> None:
        with open(self._made(key), "wb") as f:
            f.write(data)

    def flush(self) -> None:
        """Nothing to do: a file is written when its writer closes."""

    def commit(self) -> None:
        publish(self.root, self.final_path, self.durable)

    def abort(self) -> None:
        remove_path(self.root)


# Queued PUTs of an object-storage place sent together (they are in flight at once): memory
# holds at most this many keys, or bytes, beyond the slab being written.
PENDING_KEYS = 16
PENDING_BYTES = 32 << 20


class ObjectPlace:
    """Keys as objects below `final_url` (fsspec), each stored by one PUT."""

    partial_writes = False

    def __init__(self, final_url: str, storage_options: dict[str, Any]) -> None:
        self.final_url = final_url
        self.storage_options = storage_options
        # No rename here: an older store is removed first, its root document with it, so that
        # readers never see old metadata over new chunks.
        remove_tree(final_url, storage_options)
        self._pending: dict[str, bytes] = {}
        self._pending_bytes = 0

    def local_path(self, key: str) -> str:
        raise TypeError(f"{join(self.final_url, key)}: an object has no local path to map")

    def writer(self, key: str, create: bool = True) -> _ObjectWriter:
        if not create:
            raise TypeError(f"{join(self.final_url, key)}: an object cannot be written twice")
        return _ObjectWriter(self, key)

    def write_bytes(self, key: str, data: bytes) -> None:
        """Queue one PUT; PENDING_KEYS of them (or PENDING_BYTES) go at once, in flight
        together (a worker writing one key at a time waits on every round trip)."""
        self._pending[join(self.final_url, key)] = data
        self._pending_bytes += len(data)
        if len(self._pending) >= PENDING_KEYS or self._pending_bytes >= PENDING_BYTES:
            self.flush()

    def flush(self) -> None:
        """Store every queued key now (the sink's barrier before the root document)."""
        if self._pending:
            pending, self._pending, self._pending_bytes = self._pending, {}, 0
            filesystem(self.final_url, self.storage_options).pipe(pending)

    def commit(self) -> None:
        """The last keys: the sink wrote the root document after a flush, so it is the last
        stored and the store is visible only once every other key is."""
        self.flush()

    def abort(self) -> None:
        self._pending, self._pending_bytes = {}, 0
        remove_tree(self.final_url, self.storage_options)


class _ObjectWriter:
    """FileWriter's methods over memory: the object is stored whole, by one PUT, on close (on
    a clean one: a writer left by an exception stores nothing)."""

    def __init__(self, place: ObjectPlace, key: str) -> None:
        self._place = place
        self._key = key
        self._data: bytearray | None = bytearray()

    def pwrite(self, data: memoryview | bytes, offset: int) -> None:
        """Write all of `data` at `offset` (zeros fill any gap before it)."""
        assert self._data is not None, f"{self._key}: written after close"
        view = memoryview(data).cast("B")
        if offset > len(self._data):
            self._data.extend(bytes(offset - len(self._data)))
        self._data[offset : offset + len(view)] = view

    def truncate(self, size: int) -> None:
        assert self._data is not None, f"{self._key}: truncated after close"
        if size < len(self._data):
            del self._data[size:]
        else:
            self._data.extend(bytes(size - len(self._data)))

    def close(self) -> None:
        if self._data is not None:
            data, self._data = bytes(self._data), None
            self._place.write_bytes(self._key, data)

    def __enter__(self) -> _ObjectWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self._data = None  # an incomplete object is never stored
        self.close()
