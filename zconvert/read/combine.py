"""One view over a whole run: the arrays of its manifest stacked along the row axis.

`open_all(OUT)` is a lazy dask array for any run; an HDF5 run also has OUT/all.h5, written by
virtual_dataset.py, which HDF5 readers open as one array.
"""

from __future__ import annotations

import os
from typing import Any

from ..core.errors import StoreError
from ..core.storage import as_path
from ..run.virtual_dataset import manifest_arrays, stacking_problem
from ..sinks.layout import store_format
from .readers import StoreRef


def open_all(out: str | os.PathLike[str]) -> Any:
    """A lazy dask array of every array of the run, concatenated along rows; reads nothing."""
    import dask.array as da

    root = os.path.abspath(as_path(out))
    arrays = manifest_arrays(root)
    if not arrays:
        raise StoreError(f"{root}: the manifest lists no converted arrays")
    reason = stacking_problem(arrays)
    if reason is not None:
        raise StoreError(f"{root}: cannot concatenate along rows: {reason}; open them one by one")
    parts = []
    for a in arrays:
        ref = StoreRef(os.path.join(root, a.relpath), a.name)
        if store_format(ref.store) == "zarr":
            # One dask chunk per shard of a sharded array (None: zarr's chunks): a shard's
            # small chunks are read together, not as many tiny tasks.
            shards = ref.open().shards
            parts.append(da.from_zarr(ref.store, component=ref.name, chunks=shards))
        else:
            dset = ref.open()  # h5py keeps the file open for as long as dask reads from it
            parts.append(da.from_array(dset, chunks=dset.chunks or "auto", name=False))
    return da.concatenate(parts, axis=0)
