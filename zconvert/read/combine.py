"""One view over a whole run: the arrays of its manifest stacked along the row axis.

`open_all(OUT)` is a lazy dask array for any run; an HDF5 run also has OUT/all.h5, written by
virtual_dataset.py, which HDF5 readers open as one array per group of arrays that stack.

The graph holds nothing that does not pickle as a path (h5py's handles cannot be pickled; a
local Zarr array, read through its pinned folder here, pickles as its path): a task in another
process opens its store by path or URL there, so the array computes on dask.distributed as it
does on threads.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # dask is an extra: imported when open_all runs
    import dask.array

from ..core.errors import StoreError
from ..core.storage import as_path, is_url, url_options
from ..stores.folder import (
    ManifestArray,
    absolute,
    manifest_arrays,
    some_of,
    stacking_groups,
    stacking_problem,
    store_location,
)
from ..stores.opened import hdf5_file, open_array, refuse_bad_place


def open_all(
    out: str | os.PathLike[str],
    storage_options: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> dask.array.Array:
    """A lazy dask array of the run's arrays named `name` (a glob: 'values', 'blob_*'; None:
    every array), concatenated along rows; reads no array data. OUT may be a URL
    (s3://bucket/out); `storage_options` as fsspec takes them."""
    import dask.array as da

    root = absolute(as_path(out))
    refuse_bad_place(root, storage_options)
    arrays = _named(root, manifest_arrays(root, storage_options), name)
    reason = stacking_problem(arrays)
    if reason is not None:
        raise StoreError(f"{root}: cannot concatenate along rows: {reason}; {_how_to_pick(arrays)}")
    zarr_options = url_options(root, storage_options) if is_url(root) else None
    parts = []
    for a in arrays:
        store = store_location(root, a.relpath)
        array = open_array(store, a.name, storage_options)
        if not hasattr(array, "file"):  # zarr
            # One dask chunk per shard of a sharded array (None: zarr's chunks): a shard's
            # small chunks are read together, not as many tiny tasks.
            if zarr_options is None:  # local: the array opened here, its folder pinned, so
                # the graph reads the store it opened even if a run replaces it meanwhile
                parts.append(da.from_zarr(array, chunks=array.shards))
            else:
                parts.append(
                    da.from_zarr(
                        store, component=a.name, chunks=array.shards, storage_options=zarr_options
                    )
                )
            continue
        try:
            rows = HDF5Rows(store, a.name, array.shape, array.dtype, storage_options)
            chunks = array.chunks or ("auto", *array.shape[1:])  # contiguous: row blocks
        finally:
            array.file.close()
        meta = np.empty((0,) * rows.ndim, rows.dtype)  # else dask reads a slice to learn it
        parts.append(da.from_array(rows, chunks=chunks, name=False, fancy=False, meta=meta))
    return da.concatenate(parts, axis=0)


def _named(root: str, arrays: list[ManifestArray], name: str | None) -> list[ManifestArray]:
    if not arrays:
        raise StoreError(f"{root}: the manifest lists no converted arrays")
    if name is None:
        return arrays
    picked = [a for a in arrays if fnmatchcase(a.name, name)]
    if not picked:
        names = list(dict.fromkeys(a.name for a in arrays))
        raise StoreError(
            f"{root}: no array of the run is named {name!r}; its arrays: {some_of(names, 10)}"
        )
    return picked


def _how_to_pick(arrays: list[ManifestArray]) -> str:
    shared = [
        g.arrays[0].name for g in stacking_groups(arrays) if len({a.name for a in g.arrays}) == 1
    ]
    example = f", e.g. open_all(OUT, name={shared[0]!r})" if shared else ""
    return (
        f"pass name= (a glob on array names) to pick arrays that stack{example}, "
        "or open them one by one with zconvert.refs(OUT)"
    )


class HDF5Rows:
    """One HDF5 array as dask reads it: each read opens the file by path or URL, reads the
    selection and closes the file again, in whichever process runs the task. It pickles as
    its store and name (and the storage options open_all was given, if any), never an h5py
    handle: those cannot be pickled, and a worker process could not use one anyway."""

    __slots__ = ("dtype", "name", "shape", "storage_options", "store")

    def __init__(
        self,
        store: str,
        name: str,
        shape: tuple[int, ...],
        dtype: Any,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.store = store
        self.name = name
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.storage_options = storage_options

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, selection: Any) -> np.ndarray:
        with hdf5_file(self.store, self.storage_options) as f:
            return np.asarray(f[self.name][selection])

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        args = (self.store, self.name, self.shape, self.dtype.str)
        if self.storage_options is None:
            return (HDF5Rows, args)
        return (HDF5Rows, (*args, dict(self.storage_options)))

    def __repr__(self) -> str:
        return f"HDF5Rows({self.store!r}, {self.name!r}, shape={self.shape}, dtype={self.dtype})"
