"""Open converted stores by path, read-only and lazily; memory-map them; hand them between
processes as StoreRefs (a path and a name, never data)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the types the readers return; imported when used
    import h5py
    import zarr

from ..core.errors import StoreError
from ..core.storage import as_path, is_url
from ..stores import opened
from ..stores.folder import absolute, manifest_arrays, store_location


def array_names(
    store: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> list[str]:
    """Every array in a store (or data member of a ZIP/.npz), '/'-separated, in sorted order.
    `store` may be a URL (s3://...; `storage_options` as fsspec takes them, else fsspec's
    defaults and the environment)."""
    path = as_path(store)
    from .archive_memmap import is_archive

    if is_archive(path):
        _refuse_url(path, "a ZIP/.npz by URL")
        from .archive_memmap import member_names

        return sorted(member_names(path))
    return opened.array_names(path, storage_options)


def _refuse_url(path: str, what: str) -> None:
    if is_url(path):
        raise StoreError(
            f"{path}: {what} cannot be memory-mapped (np.memmap maps local files only); "
            "open the store lazily with zconvert.open(), or copy it to a local disk first"
        )


def _pick(path: str, name: str | None, storage_options: Mapping[str, Any] | None = None) -> str:
    if name is not None:
        return name
    names = array_names(path, storage_options)
    if len(names) != 1:
        raise StoreError(f"{path}: holds {len(names)} arrays ({', '.join(names)}); pass name=")
    return names[0]


def open(
    store: str | os.PathLike[str],
    name: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> zarr.Array | h5py.Dataset | np.memmap:
    """The array `name` of a store, lazily: a zarr.Array or an h5py.Dataset, read-only. For a
    ZIP or .npz path: a stored member as a read-only np.memmap (see open_memmap). `store` may
    be a URL (s3://...): HDF5 is then read through ranges of the object."""
    path = as_path(store)
    from .archive_memmap import is_archive

    if is_archive(path):
        return open_memmap(path, name)
    return opened.open_array(path, _pick(path, name, storage_options), storage_options)


_MAPPABLE_HOW = (
    "convert with --codec none for HDF5, or --codec none --contiguous for Zarr "
    "(YAML: codec: none, contiguous: true)"
)


def open_memmap(
    store: str | os.PathLike[str],
    name: str | None = None,
    *,
    dtype: Any = None,
    shape: Any = None,
    verify: bool = False,
) -> np.memmap:
    """The array `name` as a read-only np.memmap of the store's own bytes (no copy).

    Only uncompressed single-extent layouts can be mapped; anything else raises StoreError
    saying which conversion options make a store mappable. `store` may also be a ZIP or .npz:
    a stored member is mapped straight from the archive (.npy members through their header,
    raw ones through `dtype` and `shape`, default <f4 and (-1, 4)); `verify=True` then checks
    the member's CRC32 first (one read of its bytes). An array of 0 rows (an empty member)
    has no bytes to map, in any layout: it comes back as an empty read-only np.memmap that
    maps no file (`filename` None).
    """
    path = as_path(store)
    _refuse_url(path, "a store or archive by URL")
    path = os.path.abspath(path)
    from .archive_memmap import archive_memmap, empty_memmap, holds_nothing, is_archive

    if is_archive(path):
        return archive_memmap(path, name, dtype, shape, verify)
    if dtype is not None or shape is not None or verify:
        raise StoreError(
            f"{path}: dtype=, shape= and verify= apply to ZIP/.npz members; a store knows its "
            "own (zconvert.verify checks a store)"
        )
    fmt = opened.store_format(path)
    name = _pick(path, name)
    if fmt == "references":  # the member itself, mapped in its archive
        array = open(path, name)
        if array.attrs.get("member_format") == "npy":  # its header says
            return archive_memmap(array.attrs["source_archive"], name, None, None, verify)
        dtype, shape = array.attrs.get("dtype"), array.shape
        return archive_memmap(array.attrs["source_archive"], name, dtype, shape, verify)
    if fmt == "zarr":
        from ..sinks.layout import chunk_dtype, chunk_path, not_mappable_reason

        array = open(path, name)
        if holds_nothing(array.shape):  # 0 rows: no chunk file, whatever the codec
            return empty_memmap(chunk_dtype(array), array.shape)
        reason = not_mappable_reason(array)
        if reason is not None:
            raise StoreError(f"{path}: {name!r} cannot be memory-mapped: {reason}; {_MAPPABLE_HOW}")
        file, offset, dtype, shape = chunk_path(path, array), 0, chunk_dtype(array), array.shape
        expected = dtype.itemsize * int(np.prod(shape))
        try:
            size = os.path.getsize(file)
        except FileNotFoundError:
            size = -1
        if size != expected:
            raise StoreError(
                f"{path}: {name!r}: chunk file {file} holds {max(size, 0)} bytes, not the "
                f"{expected} of the array; the store is incomplete, convert it again"
            )
    else:
        dset = open(path, name)
        try:
            file, offset, dtype, shape = path, dset.id.get_offset(), dset.dtype, dset.shape
            if holds_nothing(shape):  # 0 rows: stored with no data block, so no offset
                return empty_memmap(dtype, shape)
            if dset.chunks is not None:
                plist = dset.id.get_create_plist()
                names = [
                    plist.get_filter(i)[3].decode().split(";")[0]
                    for i in range(plist.get_nfilters())
                ]
                filters = ", ".join(names) or "no filter"
                reason = f"it is chunked ({dset.chunks}, {filters})"
            elif offset is None:
                reason = "it has no storage allocated (empty or never written)"
            else:
                reason = None
        finally:
            dset.file.close()
        if reason is not None:
            raise StoreError(f"{path}: {name!r} cannot be memory-mapped: {reason}; {_MAPPABLE_HOW}")
    return np.memmap(file, dtype=dtype, mode="r", offset=offset, shape=tuple(shape))


@dataclass(frozen=True, slots=True)
class StoreRef:
    """A picklable handle on one array of a store, or one member of a ZIP/.npz: its path and
    name (and, for a raw archive member, dtype and shape), never its data.

    Hand these to worker processes; each reopens the store there, read-only. A store on
    object storage is named by its URL; the storage options (credentials) never travel with
    it: the process that opens it passes them to open()/read(), or fsspec takes them from
    its environment (AWS_ENDPOINT_URL, AWS_PROFILE, credentials files).
    """

    store: str
    name: str | None = None
    dtype: str | None = None  # raw archive members only
    shape: tuple[int, ...] | None = None  # raw archive members only

    def __init__(
        self,
        store: str | os.PathLike[str],
        name: str | None = None,
        dtype: Any = None,
        shape: Any = None,
    ) -> None:
        object.__setattr__(self, "store", absolute(as_path(store)))
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "dtype", None if dtype is None else np.dtype(dtype).str)
        object.__setattr__(self, "shape", None if shape is None else tuple(shape))

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        if self.dtype is None and self.shape is None:  # the smallest pickle: two strings
            return (StoreRef, (self.store, self.name))
        return (StoreRef, (self.store, self.name, self.dtype, self.shape))

    def open(
        self, storage_options: Mapping[str, Any] | None = None
    ) -> zarr.Array | h5py.Dataset | np.memmap:
        """The array lazily: a zarr.Array or an h5py.Dataset (close its .file when done); an
        archive member as a read-only np.memmap."""
        if self.dtype is not None or self.shape is not None:
            return self.memmap()
        return open(self.store, self.name, storage_options)

    def memmap(self, verify: bool = False) -> np.memmap:
        """The array as a read-only np.memmap (uncompressed layouts and stored members only)."""
        if self.dtype is None and self.shape is None and not verify:
            return open_memmap(self.store, self.name)
        return open_memmap(self.store, self.name, dtype=self.dtype, shape=self.shape, verify=verify)

    def read(
        self, selection: Any = ..., storage_options: Mapping[str, Any] | None = None
    ) -> np.ndarray:
        """A numpy copy of `selection` of the array (the whole array by default)."""
        array = self.open(storage_options)
        try:
            return np.asarray(array[selection])
        finally:
            h5file = getattr(array, "file", None)  # h5py keeps the file open; zarr holds nothing
            if h5file is not None:
                h5file.close()


def refs(
    out: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
) -> list[StoreRef]:
    """A StoreRef for every array a run folder's manifest serves, in manifest order. OUT may be
    a URL (s3://bucket/out): the refs then name their stores by URL."""
    root = absolute(as_path(out))
    opened.refuse_bad_place(root, storage_options)
    # Stores are found relative to the manifest, so a run folder can be moved or mounted elsewhere.
    return [
        StoreRef(store_location(root, a.relpath), a.name)
        for a in manifest_arrays(root, storage_options)
    ]
