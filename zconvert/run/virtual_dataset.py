"""OUT/all.h5: for an HDF5 run, HDF5 virtual datasets over the arrays of its manifest, stacked
along the row axis, that any HDF5 reader (h5py, h5dump, ...) opens as arrays: one per group of
arrays that stack (one dtype, one row shape), named after the group (stores/folder.py's
stacking_groups); a run of one group has the one dataset `all`. Its sources are named relative
to OUT, so the folder can be moved.
"""

from __future__ import annotations

import logging
import os
from typing import Any, NamedTuple

import numpy as np

from ..stores.folder import (
    COMBINED_NAME,
    StackGroup,
    manifest_arrays,
    stacking_groups,
    stacking_problem,
)

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
    """Write OUT/all.h5 over the HDF5 arrays of the manifest, one dataset per group of arrays
    that stack; without it (and a log line) when there are none, in which case any older
    all.h5 is removed, not left stale."""
    import h5py

    from ..sinks.atomic import publish, remove_path, temp_sibling

    root = os.path.abspath(os.fspath(out))
    final = os.path.join(root, COMBINED_NAME)
    arrays = [a for a in manifest_arrays(root) if a.relpath.endswith(".h5")]
    groups = stacking_groups(arrays)
    if not groups:
        reason = "no HDF5 arrays in the manifest" if not arrays else stacking_problem(arrays)
        remove_path(final)
        log.info("%s not written: %s", final, reason)
        return Combined(None, reason)
    left_out = [a for a in arrays if not a.shape]  # 0-d: no rows to stack
    if left_out:
        log.info("%s leaves out %d arrays of no rows (0-d)", final, len(left_out))
    temp = temp_sibling(final)
    try:
        # HDF5 1.10's format (virtual datasets need it anyway) keeps large attributes out of
        # the object header: `sources` names every store, and above about 5,000 stores the
        # default format's 64 KiB header refused it.
        with h5py.File(temp, "w", libver=("v110", "v110")) as f:
            for group in groups:
                name = COMBINED_DATASET if len(groups) == 1 else group.name
                _write_group(f, name, group, prefix="" if len(groups) == 1 else f"{name}_")
        publish(temp, final)
    except BaseException:
        remove_path(temp)
        raise
    return Combined(final, None)


def _write_group(f: Any, name: str, group: StackGroup, prefix: str) -> None:
    """One virtual dataset over a group's arrays; its dimension names start with `prefix`, so
    that two datasets of different rows do not claim one `row` dimension."""
    import h5py

    total_rows = sum(a.shape[0] for a in group.arrays)
    layout = h5py.VirtualLayout(shape=(total_rows, *group.row_shape), dtype=group.dtype)
    # Relative file names are looked up next to the virtual file first: the run folder can be
    # moved or mounted elsewhere as a whole.
    row = 0
    for a in group.arrays:
        layout[row : row + a.shape[0]] = h5py.VirtualSource(a.relpath, a.name, shape=a.shape)
        row += a.shape[0]
    # A missing source file reads as NaN (floats), not as plausible zeros.
    fill = np.nan if np.dtype(group.dtype).kind in "fc" else 0
    dset = f.create_virtual_dataset(name, layout, fillvalue=fill)
    rest = (
        ["column"]
        if len(group.row_shape) == 1
        else [f"dim_{i}" for i in range(1, 1 + len(group.row_shape))]
    )
    dset.attrs["_ARRAY_DIMENSIONS"] = [f"{prefix}{d}" for d in ("row", *rest)]
    dset.attrs["sources"] = [f"{a.relpath}:{a.name}" for a in group.arrays]
    dset.attrs["source_rows"] = [a.shape[0] for a in group.arrays]
