"""Writing stores: the formats (one module each), chunk encoding, direct I/O, slabs, atomic
commit, and the layout readers rely on. May import core only.

Sinks write one store: arrays are added, filled a slab of whole chunks at a time, then the
store is committed (made visible at its final path) or aborted (nothing left behind).

One Zarr writer (zarr.py) writes local folders and object storage (URLs) alike, through the
place it writes keys to (places.py), so both get the same bytes. HDF5 needs a rewritable file:
for a URL it is built locally and uploaded whole on commit (hdf5_url.py).

Slabs run along one axis of an array (`ArraySpec.axis`): the rows (axis 0) for raw blobs and
C-ordered .npy members, the last axis for Fortran-ordered ones, which arrive a slab of whole
columns at a time. Every store holds C-order data whatever the axis, so that every reader
(zarr, tensorstore, h5py, xarray, the HDF5 tools) sees the source's values with no transpose.

A new output format is a new module here registered in SINKS; nothing else changes.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..core.convert_options import ConvertOptions

if TYPE_CHECKING:  # the parent process plans with this module and never needs numpy
    import numpy as np


@dataclass(frozen=True)
class ArraySpec:
    """What a sink needs to create one array."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]
    dimension_names: tuple[str, ...]
    attributes: dict[str, Any]
    # Sharded (Zarr 3): the chunk shape inside each shard. `chunks` is then the shard shape,
    # the grid the store is written in, so "whole chunks" everywhere means whole shards.
    inner_chunks: tuple[int, ...] | None = None
    # The axis write_slab runs along. `chunks` (and `inner_chunks`) are whole on every other
    # axis, so a run of whole chunks along `axis` is a run of whole chunks of the array. A 0-d
    # array (shape and chunks ()) has axis 0 and is written by one write_slab of a 0-d slab.
    axis: int = 0

    def __post_init__(self) -> None:
        ndim = len(self.shape)
        for grid in (self.chunks, self.inner_chunks):
            if grid is None:
                continue
            if not 0 <= self.axis < max(ndim, 1) or len(grid) != ndim:
                raise ValueError(
                    f"array {self.name!r}: axis {self.axis} and chunks {grid} do not fit "
                    f"shape {self.shape}"
                )
            if any(
                c != s
                for i, (c, s) in enumerate(zip(grid, self.shape, strict=True))
                if i != self.axis
            ):
                raise ValueError(
                    f"array {self.name!r}: chunks {grid} must span shape {self.shape} on "
                    f"every axis but axis {self.axis}"
                )


class Sink(Protocol):
    def add_array(self, spec: ArraySpec) -> Any:
        """Create an array; returns a handle for write_slab."""

    def partial_writes(self, handle: Any) -> bool:
        """Whether write_slab takes any run along the array's axis (raw bytes in a file); if
        not, every slab starts on a chunk boundary and holds whole chunks (the last may be
        short)."""

    def write_slab(self, handle: Any, row_start: int, slab: np.ndarray) -> None:
        """Write [row_start, row_start + n) along the array's axis, where the slab's shape is
        the array's with n on that axis (any strides: the store gets C order); a 0-d array
        takes one 0-d slab at 0. See partial_writes."""

    def finish_array(self, handle: Any) -> int | None:
        """Called once an array is fully written; returns its stored bytes if known."""

    def commit(self) -> None:
        """Make the complete store visible at its final path."""

    def abort(self) -> None:
        """Remove everything written so far; safe to call after a failed commit."""


SINKS = {
    "zarr": "zconvert.sinks.zarr:ZarrSink",
    "hdf5": "zconvert.sinks.hdf5:HDF5Sink",
    "references": "zconvert.sinks.references:ReferenceSink",
    "icechunk": "zconvert.sinks.references:ReferenceSink",  # the repository: run/icechunk_run
}
SUFFIXES = {"zarr": ".zarr", "hdf5": ".h5", "references": ".json", "icechunk": ".json"}


# Sinks for URL outputs, given the storage options: Zarr's one writer, over object storage
# (no rename: the root document, written last, makes the store); HDF5 uploaded whole.
URL_SINKS = {
    "zarr": "zconvert.sinks.zarr:ZarrSink",
    "hdf5": "zconvert.sinks.hdf5_url:HDF5URLSink",
    "references": "zconvert.sinks.references:ReferenceSink",
    "icechunk": "zconvert.sinks.references:ReferenceSink",
}


def open_sink(
    final_path: str,
    options: ConvertOptions,
    attributes: dict[str, Any],
    storage_options: dict[str, Any] | None = None,
) -> Sink:
    """A sink of options.format writing a temporary sibling of `final_path` (for a URL: a store
    that stays invisible until commit)."""
    import importlib

    from ..core.storage import is_url

    if is_url(final_path):
        module_name, class_name = URL_SINKS[options.format].split(":")
        cls = getattr(importlib.import_module(module_name), class_name)
        return cls(final_path, options, attributes, storage_options or {})
    module_name, class_name = SINKS[options.format].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(final_path, options, attributes)


# write_mapped maps the file a window of about this many bytes at a time: a slab along the
# last axis touches every page of a C-order array, and a page stays resident while mapped.
MAP_WINDOW_BYTES = 8 << 20


def write_mapped(
    path: str, offset: int, shape: tuple[int, ...], start: int, slab: np.ndarray, axis: int
) -> None:
    """Write `slab`, the run [start, start + n) along `axis` > 0, into the C-order array of
    `shape` (the slab's dtype) whose bytes are at `offset` of the file `path`.

    For a layout that must stay one plain C-order extent (a mappable Zarr chunk, a contiguous
    HDF5 dataset) while slabs arrive along another axis than the first: the slab lands in
    strided pieces of the file. The file is mapped a window of whole leading indices at a
    time, so resident memory stays about MAP_WINDOW_BYTES whatever the array's size.
    """
    import numpy as np

    if slab.size == 0:
        return
    dtype = slab.dtype
    end = offset + dtype.itemsize * math.prod(shape)
    # The deepest leading axis whose whole sub-arrays fit a window; the axes before it are
    # walked one index at a time.
    split = 0
    while split + 1 < axis and dtype.itemsize * math.prod(shape[split + 1 :]) > MAP_WINDOW_BYTES:
        split += 1
    sub_bytes = dtype.itemsize * math.prod(shape[split + 1 :])
    per_window = max(1, MAP_WINDOW_BYTES // sub_bytes)
    target = (slice(None),) * (axis - split) + (slice(start, start + slab.shape[axis]),)
    strides = [dtype.itemsize * math.prod(shape[i + 1 :]) for i in range(split)]
    with open(path, "r+b") as f:
        if os.fstat(f.fileno()).st_size < end:  # HDF5 may not have extended the file yet
            os.ftruncate(f.fileno(), end)
        for outer in np.ndindex(*shape[:split]):
            base = offset + sum(i * s for i, s in zip(outer, strides, strict=True))
            for first in range(0, shape[split], per_window):
                last = min(shape[split], first + per_window)
                window = np.memmap(
                    f,
                    dtype=dtype,
                    mode="r+",
                    offset=base + first * sub_bytes,
                    shape=(last - first, *shape[split + 1 :]),
                )
                window[target] = slab[(*outer, slice(first, last))]
                del window  # unmapped: its pages leave this process (still in the page cache)
