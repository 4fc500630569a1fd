"""One view over a whole run: the arrays of its manifest stacked along the row axis.

`open_all(OUT)` is a lazy dask array for any run; an HDF5 run also has OUT/all.h5, written by
virtual_dataset.py, which HDF5 readers open as one array.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..core.errors import StoreError
from ..core.storage import as_path, is_url, url_options
from ..stores.folder import absolute, manifest_arrays, stacking_problem, store_location
from ..stores.opened import refuse_bad_place
from .readers import StoreRef


def open_all(out: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None) -> Any:
    """A lazy dask array of every array of the run, concatenated along rows; reads nothing.
    OUT may be a URL (s3://bucket/out); `storage_options` as fsspec takes them."""
    import dask.array as da

    root = absolute(as_path(out))
    refuse_bad_place(root, storage_options)
    arrays = manifest_arrays(root, storage_options)
    if not arrays:
        raise StoreError(f"{root}: the manifest lists no converted arrays")
    reason = stacking_problem(arrays)
    if reason is not None:
        raise StoreError(f"{root}: cannot concatenate along rows: {reason}; open them one by one")
    options = url_options(root, storage_options) if is_url(root) else None
    parts = []
    for a in arrays:
        ref = StoreRef(store_location(root, a.relpath), a.name)
        array = ref.open(storage_options)
        if not hasattr(array, "file"):  # zarr
            # One dask chunk per shard of a sharded array (None: zarr's chunks): a shard's
            # small chunks are read together, not as many tiny tasks.
            parts.append(
                da.from_zarr(
                    ref.store, component=ref.name, chunks=array.shards, storage_options=options
                )
            )
        else:  # h5py keeps the file open for as long as dask reads from it
            parts.append(da.from_array(array, chunks=array.chunks or "auto", name=False))
    return da.concatenate(parts, axis=0)
