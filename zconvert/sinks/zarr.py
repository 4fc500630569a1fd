"""Zarr sink: one group per archive, one array per member, Zarr format 3 (or 2)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import zarr

from ..codecs import get_preset
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
        os.makedirs(os.path.dirname(final_path), exist_ok=True)
        self.group = zarr.open_group(
            self.temp_path, mode="w", zarr_format=options.zarr_format, attributes=attributes
        )

    def add_array(self, spec: ArraySpec) -> zarr.Array:
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
            chunks=spec.chunks,
            compressors=self.compressors,
            fill_value=0,
            attributes=attributes,
            # Every chunk file exists, zeros included: an uncompressed one-chunk array is then
            # a plain file that can be memory-mapped.
            config={"write_empty_chunks": True},
            **kwargs,
        )

    def write_slab(self, handle: zarr.Array, row_start: int, slab: np.ndarray) -> None:
        handle[row_start : row_start + len(slab)] = slab

    def finish_array(self, handle: zarr.Array) -> int | None:
        return int(handle.nbytes_stored())

    def commit(self) -> None:
        publish(self.temp_path, self.final_path)

    def abort(self) -> None:
        remove_path(self.temp_path)
