"""HDF5 sink: one file per archive, one dataset per member.

Uncompressed datasets are contiguous, allocated early and page-aligned, so that their bytes
sit at a fixed file offset and can be memory-mapped; compressed ones are chunked with filters
from hdf5plugin (which the HDF5 tools also read with HDF5_PLUGIN_PATH set).
"""

from __future__ import annotations

import os
from typing import Any

import h5py
import numpy as np

from ..codecs import get_preset
from ..records import ConvertOptions
from . import ArraySpec
from ._atomic import publish, remove_path, temp_sibling

_PAGE = 4096


class HDF5Sink:
    def __init__(
        self, final_path: str, options: ConvertOptions, attributes: dict[str, Any]
    ) -> None:
        self.final_path = final_path
        self.temp_path = temp_sibling(final_path)
        self.filters = get_preset(options.codec).hdf5_kwargs()
        self.durable = options.durable
        os.makedirs(os.path.dirname(final_path), exist_ok=True)
        # The default libver keeps files readable by older HDF5 tools (1.10).
        self.file = h5py.File(
            self.temp_path, "w", alignment_threshold=_PAGE, alignment_interval=_PAGE
        )
        self.file.attrs.update(attributes)

    def add_array(self, spec: ArraySpec) -> h5py.Dataset:
        if self.filters or spec.shape[0] == 0:
            if spec.shape[0] == 0:
                dset = self.file.create_dataset(spec.name, shape=spec.shape, dtype=spec.dtype)
            else:
                dset = self.file.create_dataset(
                    spec.name,
                    shape=spec.shape,
                    dtype=spec.dtype,
                    chunks=spec.chunks,
                    **self.filters,
                )
        else:
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)  # offset known before any write
            dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)  # no pass writing zeros first
            dset = self.file.create_dataset(
                spec.name, shape=spec.shape, dtype=spec.dtype, dcpl=dcpl
            )
        for dim, label in zip(dset.dims, spec.dimension_names, strict=True):
            dim.label = label
        dset.attrs.update(spec.attributes)
        dset.attrs["_ARRAY_DIMENSIONS"] = list(spec.dimension_names)
        return dset

    def write_slab(self, handle: h5py.Dataset, row_start: int, slab: np.ndarray) -> None:
        handle[row_start : row_start + len(slab)] = slab

    def finish_array(self, handle: h5py.Dataset) -> int | None:
        return int(handle.id.get_storage_size())

    def commit(self) -> None:
        self.file.close()
        publish(self.temp_path, self.final_path, self.durable)

    def abort(self) -> None:
        try:
            if self.file.id.valid:
                self.file.close()
        except Exception:  # e.g. the disk is still full: the original error is the one to report
            pass
        finally:
            remove_path(self.temp_path)
