"""Zarr sink: one group per archive, one array per member, Zarr format 3 (or 2).

With `contiguous` (codec none only) each array is one uncompressed chunk whose file holds the
raw C-order bytes, so readers can memory-map it (see zconvert.layout). zarr itself would
rewrite that one big chunk on every slab (quadratic), so the sink creates the metadata with
zarr and streams the slabs straight into the chunk file: memory stays one slab.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import zarr

from ..codecs import get_preset
from ..layout import chunk_dtype, chunk_path
from ..records import ConvertOptions
from . import ArraySpec
from ._atomic import publish, remove_path, temp_sibling


class ZarrSink:
    def __init__(
        self, final_path: str, options: ConvertOptions, attributes: dict[str, Any]
    ) -> None:
        self.final_path = final_path
        self.temp_path = temp_sibling(final_path)
        self.zarr_format = options.zarr_format
        self.compressors = get_preset(options.codec).zarr_compressors(options.zarr_format)
        self.contiguous = options.contiguous
        self.writers: list[_ChunkFileWriter] = []
        os.makedirs(os.path.dirname(final_path), exist_ok=True)
        self.group = zarr.open_group(
            self.temp_path, mode="w", zarr_format=options.zarr_format, attributes=attributes
        )

    def add_array(self, spec: ArraySpec) -> Any:
        if self.contiguous:
            writer = _ChunkFileWriter(self.temp_path, self._create(spec, whole_array_chunks(spec)))
            self.writers.append(writer)
            return writer
        return self._create(spec, spec.chunks)

    def _create(self, spec: ArraySpec, chunks: tuple[int, ...]) -> zarr.Array:
        attributes = dict(spec.attributes)
        kwargs: dict[str, Any] = {}
        if self.zarr_format == 3:
            kwargs["dimension_names"] = spec.dimension_names
        else:
            attributes["_ARRAY_DIMENSIONS"] = list(spec.dimension_names)
            kwargs["filters"] = None
        return self.group.create_array(
            spec.name,
            shape=spec.shape,
            dtype=spec.dtype,
            chunks=chunks,
            compressors=self.compressors,
            fill_value=0,
            attributes=attributes,
            # Every chunk file exists, zeros included: an uncompressed one-chunk array is then
            # a plain file that can be memory-mapped.
            config={"write_empty_chunks": True},
            **kwargs,
        )

    def write_slab(self, handle: Any, row_start: int, slab: np.ndarray) -> None:
        if isinstance(handle, _ChunkFileWriter):
            handle.write(row_start, slab)
        else:
            handle[row_start : row_start + len(slab)] = slab

    def finish_array(self, handle: Any) -> int | None:
        if isinstance(handle, _ChunkFileWriter):
            return handle.close()
        return int(handle.nbytes_stored())

    def commit(self) -> None:
        publish(self.temp_path, self.final_path)

    def abort(self) -> None:
        for writer in self.writers:
            writer.discard()
        remove_path(self.temp_path)


def whole_array_chunks(spec: ArraySpec) -> tuple[int, ...]:
    """One chunk covering the whole array (zarr wants every chunk size at least 1)."""
    return tuple(max(1, n) for n in spec.shape)


class _ChunkFileWriter:
    """Streams the rows of a one-chunk uncompressed array into its chunk file, in order."""

    def __init__(self, store: str, array: zarr.Array) -> None:
        self.array = array
        self.dtype = chunk_dtype(array)
        self.expected_bytes = self.dtype.itemsize * int(np.prod(array.shape))
        self.path = chunk_path(store, array)
        self.rows_written = 0
        self.file = None
        if self.expected_bytes:  # an empty array has no chunk file, as zarr would write it
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self.file = open(self.path, "wb")  # noqa: SIM115 -- closed in close() or by abort

    def write(self, row_start: int, slab: np.ndarray) -> None:
        if row_start != self.rows_written:  # a chunk file is only ever appended to
            raise ValueError(
                f"rows must arrive in order: got {row_start}, expected {self.rows_written}"
            )
        data = np.ascontiguousarray(slab, dtype=self.dtype)
        if self.file is not None and data.size:
            self.file.write(memoryview(data).cast("B"))
        self.rows_written += len(slab)

    def discard(self) -> None:
        if self.file is not None:
            self.file.close()

    def close(self) -> int:
        if self.file is None:
            return 0
        self.file.close()
        size = os.path.getsize(self.path)
        if size != self.expected_bytes:
            raise ValueError(f"{self.path}: wrote {size} bytes, expected {self.expected_bytes}")
        return size
