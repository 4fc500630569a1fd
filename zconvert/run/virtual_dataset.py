"""OUT/all.h5: for an HDF5 run, one HDF5 virtual dataset over every array of its manifest,
stacked along the row axis, that any HDF5 reader (h5py, h5dump, ...) opens as one array. Its
sources are named relative to OUT, so the folder can be moved.
"""

from __future__ import annotations

import logging
import os
from typing import NamedTuple

import numpy as np

from ..stores.folder import COMBINED_NAME, manifest_arrays, stacking_problem

log = logging.getLogger("zconvert")

COMBINED_DATASET = "all"


def load_writer() -> None:
    """Import what write_virtual_dataset needs (h5py and the modules it loads on first use:
    30-40 ms), so that a run can do it while a core is idle rather than after its last
    result."""
    import h5py
    import h5py._hl.vds  # noqa: F401 - loaded on first use otherwise

    from ..sinks import atomic  # noqa: F401


class Combined(NamedTuple):
    path: str | None  # OUT/all.h5, or None when it was not written
    reason: str | None  # why not: for the run's summary


def write_virtual_dataset(out: str | os.PathLike[str]) -> Combined:
    """Write OUT/all.h5 over every HDF5 array of the manifest; without it (and a log line)
    when they cannot be stacked, in which case any older all.h5 is removed, not left stale."""
    import h5py

    from ..sinks.atomic import publish, remove_path, temp_sibling

    root = os.path.abspath(os.fspath(out))
    final = os.path.join(root, COMBINED_NAME)
    arrays = [a for a in manifest_arrays(root) if a.relpath.endswith(".h5")]
    reason = "no HDF5 arrays in the manifest" if not arrays else stacking_problem(arrays)
    if reason is not None:
        remove_path(final)
        log.info("%s not written: %s", final, reason)
        return Combined(None, reason)
    row_shape, dtype = arrays[0].shape[1:], arrays[0].dtype
    total_rows = sum(a.shape[0] for a in arrays)
    layout = h5py.VirtualLayout(shape=(total_rows, *row_shape), dtype=dtype)
    # Relative file names are looked up next to the virtual file first: the run folder can be
    # moved or mounted elsewhere as a whole.
    row = 0
    for a in arrays:
        layout[row : row + a.shape[0]] = h5py.VirtualSource(a.relpath, a.name, shape=a.shape)
        row += a.shape[0]
    temp = temp_sibling(final)
    try:
        # HDF5 1.10's format (virtual datasets need it anyway) keeps large attributes out of
        # the object header: `sources` names every store, and above about 5,000 stores the
        # default format's 64 KiB header refused it.
        with h5py.File(temp, "w", libver=("v110", "v110")) as f:
            # A missing source file reads as NaN (floats), not as plausible zeros.
            fill = np.nan if np.dtype(dtype).kind in "fc" else 0
            dset = f.create_virtual_dataset(COMBINED_DATASET, layout, fillvalue=fill)
            rest = (
                ["column"]
                if len(row_shape) == 1
                else [f"dim_{i}" for i in range(1, 1 + len(row_shape))]
            )
            dset.attrs["_ARRAY_DIMENSIONS"] = ["row", *rest]
            dset.attrs["sources"] = [f"{a.relpath}:{a.name}" for a in arrays]
            dset.attrs["source_rows"] = [a.shape[0] for a in arrays]
        publish(temp, final)
    except BaseException:
        remove_path(temp)
        raise
    return Combined(final, None)
