"""Sinks write one store: arrays are added, filled a slab of whole chunks at a time, then the
store is committed (made visible at its final path) or aborted (nothing left behind).

A new output format is a new module here registered in SINKS; nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..records import ConvertOptions

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


class Sink(Protocol):
    def add_array(self, spec: ArraySpec) -> Any:
        """Create an array; returns a handle for write_slab."""

    def partial_writes(self, handle: Any) -> bool:
        """Whether write_slab takes any run of rows (raw bytes at a file offset); if not,
        every slab starts on a chunk boundary and holds whole chunks (the last may be short)."""

    def write_slab(self, handle: Any, row_start: int, slab: np.ndarray) -> None:
        """Write rows [row_start, row_start + len(slab)); see partial_writes."""

    def finish_array(self, handle: Any) -> int | None:
        """Called once an array is fully written; returns its stored bytes if known."""

    def commit(self) -> None:
        """Make the complete store visible at its final path."""

    def abort(self) -> None:
        """Remove everything written so far; safe to call after a failed commit."""


SINKS = {"zarr": "zconvert.sinks.zarr:ZarrSink", "hdf5": "zconvert.sinks.hdf5:HDF5Sink"}
SUFFIXES = {"zarr": ".zarr", "hdf5": ".h5"}


# Sinks for URL outputs (object storage: no rename, so completeness is a record written last).
URL_SINKS = {
    "zarr": "zconvert.sinks.zarr_url:ZarrURLSink",
    "hdf5": "zconvert.sinks.hdf5_url:HDF5URLSink",
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

    from ..storage import is_url

    if is_url(final_path):
        module_name, class_name = URL_SINKS[options.format].split(":")
        cls = getattr(importlib.import_module(module_name), class_name)
        return cls(final_path, options, attributes, storage_options or {})
    module_name, class_name = SINKS[options.format].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(final_path, options, attributes)
