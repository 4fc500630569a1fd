"""HDF5 sink: one file per archive, one dataset per member.

Uncompressed datasets are contiguous, allocated early and page-aligned, so that their bytes
sit at a fixed file offset and can be memory-mapped; compressed ones are chunked with filters
from hdf5plugin (which the HDF5 tools also read with HDF5_PLUGIN_PATH set).

Compressed chunks are encoded here and written as HDF5 stores them (H5Dwrite_chunk): a Blosc
buffer for the Blosc filter, whatever library made it; a zstd frame or zlib stream of the
byte-shuffled chunk for shuffle + zstd or deflate. Through h5py's dataset write, HDF5 copied
each chunk into its cache and ran the filters (a 32 MB member took 120-137 ms of CPU against
89-98 ms for the same Blosc-LZ4 chunks in Zarr), and crashed when a chunk write failed.
HDF5 writes through DirectFile, so chunks, like contiguous data, go around the page cache.

The file is netCDF-4 as well, so that xarray (h5netcdf, netCDF4) sees the dimension names a
Zarr store of the same archive has: on commit, each dimension becomes a dataset at the root,
named after it, marked as a dimension scale that is not a variable (no data, nothing
allocated), and attached to every axis that has that name. Names follow the worker's rule (one
name, one length: arrays whose rows differ in length each have their own row dimension). A
name that is not one dimension of one length, or that names an array or group at the root,
gets no scale, and the arrays using it none at all (netCDF readers refuse an array with some
axes scaled and others not): they read as phony dimensions. Readers of the store list its
arrays without the scales (layout.hdf5_arrays). The file format is HDF5 1.8's (libver v108),
readable by every HDF5 since 1.8: its dense attribute storage lets a dimension be shared by
thousands of arrays (each attached array is an entry in the scale's REFERENCE_LIST, which the
earliest format caps at 64 KiB, about 4,000 entries).

Slabs along another axis than the first (Fortran-ordered sources) fill the dataset in C order
like any other: chunks along that axis, written at offsets with the chunk index at that axis;
a contiguous dataset stays contiguous and mappable, its strided runs written through a map of
its bytes (see write_mapped). A 0-d array is a scalar dataset, never chunked or filtered (HDF5
allows neither for a scalar). Byte order is kept: '>f8' is stored, and read back, as '>f8';
bool is h5py's enum of int8, read back as bool.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from ..core.convert_options import ConvertOptions
from . import ArraySpec, chunk_encoder, write_mapped
from .atomic import publish, remove_path, temp_sibling
from .codecs import get_preset
from .directio import DirectFile, aligned_buffer
from .layout import ARRAYS_ATTR, MANY_ARRAYS, NETCDF_DIMENSION_ONLY, arrays_table

_PAGE = 4096
# Above this many arrays a store gets no dimension scales, no labels and no attributes on its
# datasets: their attributes are one root attribute (see layout.MANY_ARRAYS). h5netcdf names
# each array's dimensions by dereferencing its scales, and HDF5 finds the name of an object
# opened by reference by searching the file, so opening took time growing with the square of
# the arrays (1,000 arrays: 8.1 s, against 0.33 s for the same Zarr store). Readers see
# netCDF's phony dimensions (phony_dim_0, ...) instead.
MAX_SCALED_ARRAYS = MANY_ARRAYS


@dataclass
class _Dataset:
    """A dataset being written, and the file offset of its bytes if it is contiguous
    (looked up once: h5py's `name` costs about 0.3 ms a call under its lock)."""

    dset: h5py.Dataset
    offset: int | None
    chunks: tuple[int, ...] | None = None  # a chunked dataset's chunk shape
    axis: int = 0  # the axis slabs run along
    shape: tuple[int, ...] = ()  # kept here for the same reason as `offset`
    dimension_names: tuple[str, ...] = ()
    attributes: dict[str, Any] | None = None  # written on commit
    name: str = ""  # its path in the file, as the ArraySpec gave it


class HDF5Sink:
    def __init__(
        self, final_path: str, options: ConvertOptions, attributes: dict[str, Any]
    ) -> None:
        self.final_path = final_path
        self.temp_path = temp_sibling(final_path)
        preset = get_preset(options.codec)
        self.filters = preset.hdf5_kwargs()
        # Chunks are encoded here and handed to HDF5 as stored: Blosc into page-aligned
        # buffers, shuffle + zstd or deflate into bytes. HDF5's own filters only as a fallback
        # (a Blosc whose direct call failed its self-test).
        self._encode_into = chunk_encoder.direct_encoder(preset)
        self._encode_bytes = chunk_encoder.hdf5_filtered_encoder(preset)
        self._encodes_chunks = self._encode_into is not None or self._encode_bytes is not None
        self.durable = options.durable
        self.direct_io = options.direct_io
        os.makedirs(os.path.dirname(final_path), exist_ok=True)
        # HDF5 writes through our file object (h5py's fileobj driver): its chunk writes are
        # page-aligned (alignment below) and go around the page cache like every other array
        # byte zconvert writes. libver v108 (HDF5 1.8's format, no later one) keeps files
        # readable by the HDF5 1.10 tools; the default, earliest, format would cap how many
        # arrays a dimension scale can serve (see the module docstring).
        self._direct_file = DirectFile(self.temp_path, enabled=self.direct_io)
        self._datasets: list[_Dataset] = []
        try:
            self.file = h5py.File(
                self._direct_file,
                "w",
                libver=("v108", "v108"),
                alignment_threshold=_PAGE,
                alignment_interval=_PAGE,
            )
        except BaseException:
            self._direct_file.close()
            remove_path(self.temp_path)
            raise
        self.file.attrs.update(attributes)

    def add_array(self, spec: ArraySpec) -> _Dataset:
        offset = None
        chunks = None
        if not spec.shape:
            dset = self.file.create_dataset(spec.name, shape=(), dtype=spec.dtype)
        elif (self.filters and not _tiny(spec)) or spec.shape[spec.axis] == 0:
            if spec.shape[spec.axis] == 0:
                dset = self.file.create_dataset(spec.name, shape=spec.shape, dtype=spec.dtype)
            else:
                dset = self.file.create_dataset(
                    spec.name,
                    shape=spec.shape,
                    dtype=spec.dtype,
                    chunks=spec.chunks,
                    **self.filters,
                )
                chunks = tuple(spec.chunks)
        else:
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)  # offset known before any write
            dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)  # no pass writing zeros first
            dset = self.file.create_dataset(
                spec.name, shape=spec.shape, dtype=spec.dtype, dcpl=dcpl
            )
            offset = dset.id.get_offset()
        handle = _Dataset(
            dset,
            offset,
            chunks,
            spec.axis,
            tuple(spec.shape),
            tuple(spec.dimension_names),
            {**spec.attributes, "_ARRAY_DIMENSIONS": list(spec.dimension_names)},
            spec.name.strip("/"),
        )
        self._datasets.append(handle)
        return handle

    def partial_writes(self, handle: _Dataset) -> bool:
        return handle.offset is not None  # contiguous: a byte range at a fixed offset

    def write_slab(self, handle: _Dataset, row_start: int, slab: np.ndarray) -> None:
        offset = handle.offset
        if offset is None and self._encodes_chunks and handle.chunks is not None:
            self._write_chunks(handle, handle.chunks, row_start, slab)
            return
        if offset is None:
            if slab.ndim == 0:
                handle.dset[()] = slab
                return
            axis = handle.axis
            where = chunk_encoder.run_along(axis, row_start, row_start + slab.shape[axis])
            handle.dset[where] = slab
            return
        if handle.axis:
            # Strided runs of the dataset's bytes; HDF5 never writes them itself (no fill).
            write_mapped(self.temp_path, offset, handle.shape, row_start, slab, handle.axis)
            return
        # A contiguous, early-allocated dataset is a fixed byte range of the file that HDF5
        # never writes itself (no fill): the slab's bytes go there directly, around HDF5
        # and, where possible, around the page cache.
        row_bytes = slab.nbytes // max(len(slab), 1)
        self._direct_file.pwrite(
            memoryview(np.ascontiguousarray(slab)).cast("B"), offset + row_start * row_bytes
        )

    def _write_chunks(
        self, handle: _Dataset, chunks: tuple[int, ...], row_start: int, slab: np.ndarray
    ) -> None:
        """Whole chunks (the slab starts on a chunk boundary), encoded and written as stored."""
        axis = handle.axis
        length = chunks[axis]
        before, after = (0,) * axis, (0,) * (len(chunks) - axis - 1)
        for index, piece in chunk_encoder.whole_chunks(slab, row_start, chunks, axis):
            piece = chunk_encoder.padded(piece, chunks)
            where = (*before, index * length, *after)
            if self._encode_bytes is not None:
                handle.dset.id.write_direct_chunk(where, self._encode_bytes(piece))
                continue
            # Page-aligned: HDF5 hands this buffer to DirectFile, which writes it direct.
            with aligned_buffer(chunk_encoder.bound(piece.nbytes)) as out:
                n = self._encode_into(piece, out)  # type: ignore[misc]
                handle.dset.id.write_direct_chunk(where, out[:n])

    def finish_array(self, handle: _Dataset) -> int | None:
        return int(handle.dset.id.get_storage_size())

    def _write_attributes(self) -> None:
        """Each array's attributes and axis labels on its dataset, or, for a store of more
        than MAX_SCALED_ARRAYS arrays, all of them in one root attribute (see there)."""
        if len(self._datasets) > MAX_SCALED_ARRAYS:
            table = {h.name: h.attributes or {} for h in self._datasets}
            self.file.attrs[ARRAYS_ATTR] = arrays_table(table)
            return
        for handle in self._datasets:
            dset = handle.dset
            for dim, label in zip(dset.dims, handle.dimension_names, strict=True):
                dim.label = label
            dset.attrs.update(handle.attributes or {})

    def _write_dimensions(self) -> None:
        """The netCDF-4 dimensions: a scale per dimension name, attached to the arrays' axes;
        none for a store of more than MAX_SCALED_ARRAYS arrays (see there)."""
        if len(self._datasets) > MAX_SCALED_ARRAYS:
            return
        lengths = netcdf_dimensions(
            [(h.dimension_names, h.shape) for h in self._datasets], set(self.file)
        )
        scales = {}
        for dimid, (name, length) in enumerate(lengths.items()):
            scale = self.file.create_dataset(name, shape=(length,), dtype=">f4")
            scale.attrs["_Netcdf4Dimid"] = np.int32(dimid)  # netCDF's order of dimensions
            scale.make_scale(f"{NETCDF_DIMENSION_ONLY}{length:10d}")
            scales[name] = scale
        for handle in self._datasets:
            if handle.shape and all(name in scales for name in handle.dimension_names):
                for dim, name in zip(handle.dset.dims, handle.dimension_names, strict=True):
                    dim.attach_scale(scales[name])

    def commit(self) -> None:
        self._write_attributes()
        self._write_dimensions()
        self.file.close()
        self._direct_file.close()
        publish(self.temp_path, self.final_path, self.durable)

    def abort(self) -> None:
        try:
            if self.file.id.valid:
                self.file.close()
            self._direct_file.close()
        except Exception:  # e.g. the disk is still full: the original error is the one to report
            pass
        finally:
            remove_path(self.temp_path)


def _tiny(spec: ArraySpec) -> bool:
    """Whether an array is stored contiguous and uncompressed whatever the codec: one page or
    less. Compressing it cannot save a page of disk; a chunked dataset costs a chunk index
    (over 2 KiB each, 14.7 MB for 5,000 arrays of 16 bytes against 1.6 MB contiguous) and
    h5netcdf's opening a third more time (6.9 s against 5.1 s for those 5,000 arrays)."""
    return math.prod(spec.shape) * np.dtype(spec.dtype).itemsize <= _PAGE


def netcdf_dimensions(
    arrays: list[tuple[tuple[str, ...], tuple[int, ...]]], root_names: set[str]
) -> dict[str, int]:
    """The dimensions that get a scale, by name in order of first use, with their lengths:
    each name the arrays (dimension names, shape) give one length, and that names no array
    or group among `root_names` (where its scale would go)."""
    lengths: dict[str, set[int]] = {}
    for names, shape in arrays:
        for name, length in zip(names, shape, strict=True):
            lengths.setdefault(name, set()).add(length)
    return {
        name: next(iter(found))
        for name, found in lengths.items()
        if len(found) == 1 and name not in root_names and name not in ("", ".") and "/" not in name
    }
