"""Zarr sink: one group per archive, one array per member, Zarr format 3 (or 2).

The sink writes the format itself: metadata documents as JSON and every chunk as one file,
encoded with numcodecs. zarr-python's array API costs about 12 ms per 4 MiB chunk here (three
times the Blosc-LZ4 work) and 0.4 s to import; the files written are exactly what zarr-python
writes (tests read them with zarr, tensorstore and xarray).

The store is built under a temporary name and renamed into place by commit, which first writes
the root group's documents with consolidated metadata (see _consolidated): they are the last
files written, so even the temporary folder is a store only once it is complete.

Chunk files hold full chunks, edge chunks padded with the fill value (0), as the spec says.
Uncompressed arrays may be written a piece of a chunk at a time (a one-chunk array is then a
plain file that can be memory-mapped); compressed ones take whole chunks.

Sharded arrays (Zarr 3 `sharding_indexed`) are written a whole shard at a time: one file per
shard at the usual chunk key, holding its inner chunks encoded one after the other, then the
index (offset and length of each inner chunk, C order, uint64 little-endian; 2**64-1 for both
where an inner chunk lies wholly past the array's end and is not stored) and its CRC32C.

Slabs along another axis than the first (Fortran-ordered sources) are chunked along that axis
and stored in C order like any other: no `order: F` (Zarr 2) or transpose codec (Zarr 3),
which some readers ignore or refuse. A one-chunk uncompressed array stays one plain file,
filled through a map of it (see write_mapped). A 0-d array is one chunk, key `c` (Zarr 3) or
`0` (Zarr 2), as zarr-python writes it; it is never sharded (zarr-python 3.1 cannot write a
sharded 0-d array).

Byte order is kept: a big-endian dtype is stored big-endian (Zarr 2 dtype `>f8`, Zarr 3 bytes
codec `endian: big`). zarr-python reads Zarr 2 back as `>f8` and Zarr 3 as the native `float64`
(it keeps no byte order in a Zarr 3 dtype); the values are the same.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import google_crc32c
import numpy as np

from ..core.convert_options import ConvertOptions
from . import ArraySpec, chunk_encoder, write_mapped
from ._consolidated import root_documents
from .atomic import publish, remove_path, temp_sibling
from .codecs import get_preset
from .directio import ALIGN, FileWriter, aligned_buffer

_V3_TYPES = {"i": "int", "u": "uint", "f": "float", "c": "complex", "b": "bool"}
_NO_CHUNK = 2**64 - 1  # a shard index's offset and length of an inner chunk not stored
# A shard's encoded chunks are gathered to about this size before each write: page-aligned
# pieces go to disk direct, and memory holds one piece rather than a whole encoded shard.
SHARD_PIECE_BYTES = 1 << 20


def zarr3_data_type(dtype: np.dtype) -> str:
    """The Zarr 3 `data_type` of a numpy dtype (byte order lives in the bytes codec)."""
    if dtype.kind == "b":
        return "bool"
    return f"{_V3_TYPES[dtype.kind]}{dtype.itemsize * 8}"


def _endian(dtype: np.dtype) -> str:
    order = dtype.byteorder
    if order == "=":
        order = "<" if np.little_endian else ">"
    return "big" if order == ">" else "little"


def _write_json(path: str, document: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=2, ensure_ascii=False)


@dataclass
class _ZarrArray:
    path: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype
    zarr_format: int
    inner_chunks: tuple[int, ...] | None = None  # sharded: `chunks` is the shard shape
    axis: int = 0  # the axis slabs run along; chunks are whole on every other
    stored_bytes: int = 0
    chunk_dirs: set[str] = field(default_factory=set)
    # The uncompressed chunk being filled piece by piece, kept open between pieces.
    current: tuple[int, FileWriter] | None = None

    def close_current(self) -> None:
        if self.current is not None:
            self.current[1].close()
            self.current = None

    def chunk_path(self, index: int) -> str:
        """The file of the chunk `index` along the array's axis (the only one across it)."""
        coords = ["0"] * len(self.shape)
        if coords:
            coords[self.axis] = str(index)
        if self.zarr_format == 3:
            return os.path.join(self.path, "c", *coords)
        return os.path.join(self.path, ".".join(coords) or "0")

    def mapped(self, uncompressed: bool) -> bool:
        """Written through a map of its one chunk file: an uncompressed, unsharded array in a
        single chunk whose slabs run along another axis than the first."""
        return (
            uncompressed
            and self.inner_chunks is None
            and self.axis > 0
            and self.chunks[self.axis] >= self.shape[self.axis]
        )


def _sharding_codec(inner_chunks: tuple[int, ...], codecs: list[dict[str, Any]]) -> dict[str, Any]:
    """The `sharding_indexed` codec over the array's own codecs, configured as zarr-python
    writes it (index at the end, protected by a CRC32C)."""
    return {
        "name": "sharding_indexed",
        "configuration": {
            "chunk_shape": list(inner_chunks),
            "codecs": codecs,
            "index_codecs": [
                {"name": "bytes", "configuration": {"endian": "little"}},
                {"name": "crc32c"},
            ],
            "index_location": "end",
        },
    }


class ZarrSink:
    def __init__(
        self, final_path: str, options: ConvertOptions, attributes: dict[str, Any]
    ) -> None:
        self.final_path = final_path
        self.temp_path = temp_sibling(final_path)
        self.zarr_format = options.zarr_format
        self.preset = get_preset(options.codec)
        self.codec = self.preset.numcodecs_codec()
        self._encode_into = chunk_encoder.direct_encoder(self.preset)
        self.durable = options.durable
        self.direct_io = options.direct_io
        self._arrays: list[_ZarrArray] = []
        # The root group's documents are written by commit, last (see _consolidated); until
        # then every document below the root is kept here too, by store key.
        self._attributes = attributes
        self._documents: dict[str, dict[str, Any]] = {}
        os.makedirs(self.temp_path)

    def _write_document(self, key: str, document: dict[str, Any]) -> None:
        """Write a metadata document at a '/'-separated store key below the root."""
        _write_json(os.path.join(self.temp_path, *key.split("/")), document)
        self._documents[key] = document

    def _ensure_groups(self, name: str) -> str:
        """Create the intermediate groups of a nested array name; returns the array folder."""
        parts = name.split("/")
        for depth in range(1, len(parts)):
            group = "/".join(parts[:depth])
            path = os.path.join(self.temp_path, *parts[:depth])
            if not os.path.isdir(path):
                os.mkdir(path)
                if self.zarr_format == 3:
                    doc = {"attributes": {}, "zarr_format": 3, "node_type": "group"}
                    self._write_document(f"{group}/zarr.json", doc)
                else:
                    self._write_document(f"{group}/.zgroup", {"zarr_format": 2})
        path = os.path.join(self.temp_path, *parts)
        os.mkdir(path)
        return path

    def add_array(self, spec: ArraySpec) -> _ZarrArray:
        path = self._ensure_groups(spec.name)
        dtype = np.dtype(spec.dtype)
        fill: Any = {"f": 0.0, "c": [0.0, 0.0], "b": False}.get(dtype.kind, 0)
        inner_chunks = spec.inner_chunks if spec.shape else None  # one value: nothing to shard
        if self.zarr_format == 3:
            codecs: list[dict[str, Any]] = [
                {"name": "bytes", "configuration": {"endian": _endian(dtype)}}
            ]
            if dtype.itemsize == 1:
                codecs = [{"name": "bytes", "configuration": {}}]
            codecs += self.preset.zarr3_codecs(dtype.itemsize)
            if inner_chunks is not None:
                codecs = [_sharding_codec(inner_chunks, codecs)]
            doc = {
                "shape": list(spec.shape),
                "data_type": zarr3_data_type(dtype),
                "chunk_grid": {
                    "name": "regular",
                    "configuration": {"chunk_shape": list(spec.chunks)},
                },
                "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
                "fill_value": fill,
                "codecs": codecs,
                "attributes": spec.attributes,
                "dimension_names": list(spec.dimension_names),
                "zarr_format": 3,
                "node_type": "array",
                "storage_transformers": [],
            }
            if not spec.shape:
                del doc["dimension_names"]  # as zarr-python writes a 0-d array
            self._write_document(f"{spec.name}/zarr.json", doc)
            return self._track(
                _ZarrArray(path, spec.shape, spec.chunks, dtype, 3, inner_chunks, spec.axis)
            )
        doc = {
            "shape": list(spec.shape),
            "chunks": list(spec.chunks),
            "dtype": dtype.str,
            "fill_value": fill,
            "order": "C",
            "filters": None,
            "dimension_separator": ".",
            "compressor": self.preset.zarr2_compressor(),
            "zarr_format": 2,
        }
        self._write_document(f"{spec.name}/.zarray", doc)
        attributes = {**spec.attributes, "_ARRAY_DIMENSIONS": list(spec.dimension_names)}
        self._write_document(f"{spec.name}/.zattrs", attributes)
        return self._track(_ZarrArray(path, spec.shape, spec.chunks, dtype, 2, axis=spec.axis))

    def _track(self, array: _ZarrArray) -> _ZarrArray:
        self._arrays.append(array)
        return array

    def _open_chunk(self, array: _ZarrArray, index: int, create: bool) -> FileWriter:
        path = array.chunk_path(index)
        folder = os.path.dirname(path)
        if folder not in array.chunk_dirs:
            os.makedirs(folder, exist_ok=True)
            array.chunk_dirs.add(folder)
        return FileWriter(path, create=create, enabled=self.direct_io)

    def partial_writes(self, handle: _ZarrArray) -> bool:
        # Raw chunk files take bytes at any offset; a shard's index needs all its chunks.
        # Along another axis a run is strided in its chunk: only a mapped chunk takes one.
        if handle.axis == 0:
            return self.codec is None and handle.inner_chunks is None and bool(handle.shape)
        return handle.mapped(self.codec is None)

    def write_slab(self, handle: _ZarrArray, row_start: int, slab: np.ndarray) -> None:
        if self.partial_writes(handle):
            if handle.axis == 0:
                self._write_raw(handle, row_start, slab)
            else:
                self._write_mapped(handle, row_start, slab)
            return
        for index, piece in chunk_encoder.whole_chunks(slab, row_start, handle.chunks, handle.axis):
            if handle.inner_chunks is not None:
                self._write_shard(handle, handle.inner_chunks, index, piece)
                continue
            if self._encode_into is None:
                encoded = self._encode(piece, handle.chunks)
                with self._open_chunk(handle, index, True) as f:
                    f.pwrite(encoded, 0)
                handle.stored_bytes += len(encoded)
                continue
            piece = chunk_encoder.padded(piece, handle.chunks)
            with aligned_buffer(chunk_encoder.bound(piece.nbytes)) as out:
                n = self._encode_into(piece, out)  # aligned: straight to an O_DIRECT write
                with self._open_chunk(handle, index, True) as f:
                    f.pwrite(out[:n], 0)
            handle.stored_bytes += n

    def _encode(self, piece: np.ndarray, chunk_shape: tuple[int, ...]) -> bytes | memoryview:
        """One chunk's stored bytes, in C order; an edge chunk is first padded with the fill
        value."""
        # C order first: numcodecs encodes a Fortran-contiguous view in Fortran order.
        piece = np.ascontiguousarray(chunk_encoder.padded(piece, chunk_shape))
        if self.codec is None:
            return memoryview(piece).cast("B")
        return self.codec.encode(piece)

    def _write_shard(
        self, handle: _ZarrArray, inner_chunks: tuple[int, ...], shard: int, rows: np.ndarray
    ) -> None:
        """One shard file: its inner chunks (all within the array) encoded, then the index.
        Inner chunks are whole on every axis but the array's axis, so the index's C order is
        their order along it."""
        axis = handle.axis
        inner_rows = inner_chunks[axis]
        index = np.full((handle.chunks[axis] // inner_rows, 2), _NO_CHUNK, dtype="<u8")
        pending: list[bytes | memoryview] = []
        pending_bytes = written = 0
        with self._open_chunk(handle, shard, True) as f:
            for i, start in enumerate(range(0, rows.shape[axis], inner_rows)):
                piece = rows[chunk_encoder.run_along(axis, start, start + inner_rows)]
                encoded = self._encode(piece, inner_chunks)
                index[i] = (written + pending_bytes, len(encoded))
                pending.append(encoded)
                pending_bytes += len(encoded)
                if pending_bytes >= SHARD_PIECE_BYTES:  # write the page-aligned part
                    block = b"".join(pending)
                    aligned = len(block) // ALIGN * ALIGN
                    f.pwrite(memoryview(block)[:aligned], written)
                    written += aligned
                    pending, pending_bytes = [block[aligned:]], len(block) - aligned
            index_bytes = index.tobytes()
            pending += [index_bytes, google_crc32c.value(index_bytes).to_bytes(4, "little")]
            tail = b"".join(pending)
            f.pwrite(tail, written)
        handle.stored_bytes += written + len(tail)

    def _write_raw(self, handle: _ZarrArray, row_start: int, slab: np.ndarray) -> None:
        chunk_rows = handle.chunks[0]
        row_bytes = slab.itemsize * int(np.prod(handle.chunks[1:], dtype=np.int64))
        chunk_bytes = chunk_rows * row_bytes
        raw = memoryview(np.ascontiguousarray(slab)).cast("B")
        row = row_start
        done = 0
        while done < len(raw):
            index, within = divmod(row, chunk_rows)
            take = min(len(raw) - done, (chunk_rows - within) * row_bytes)
            if handle.current is None or handle.current[0] != index:
                handle.close_current()
                handle.current = (index, self._open_chunk(handle, index, create=not within))
            f = handle.current[1]
            f.pwrite(raw[done : done + take], within * row_bytes)
            end = within * row_bytes + take
            if end < chunk_bytes and row + take // row_bytes >= handle.shape[0]:
                f.truncate(chunk_bytes)  # pad the edge chunk with zeros (the fill value)
                end = chunk_bytes
            if end == chunk_bytes:
                handle.stored_bytes += chunk_bytes
                handle.close_current()
            done += take
            row += take // row_bytes

    def _write_mapped(self, handle: _ZarrArray, start: int, slab: np.ndarray) -> None:
        """A run along a later axis into the array's one chunk file, kept one plain C-order
        file (mappable by readers) and padded with zeros past the array's end."""
        path = handle.chunk_path(0)
        if start == 0:  # the first run: the whole chunk, zeros (the fill value) until written
            chunk_bytes = handle.dtype.itemsize * int(np.prod(handle.chunks, dtype=np.int64))
            with self._open_chunk(handle, 0, create=True) as f:
                f.truncate(chunk_bytes)
            handle.stored_bytes += chunk_bytes
        write_mapped(path, 0, handle.chunks, start, slab, handle.axis)

    def finish_array(self, handle: _ZarrArray) -> int | None:
        """Chunk bytes plus the array's metadata documents: what zarr's nbytes_stored() says."""
        handle.close_current()
        paths = (os.path.join(handle.path, n) for n in ("zarr.json", ".zarray", ".zattrs"))
        return handle.stored_bytes + sum(os.path.getsize(p) for p in paths if os.path.exists(p))

    def commit(self) -> None:
        for key, document in root_documents(self.zarr_format, self._attributes, self._documents):
            _write_json(os.path.join(self.temp_path, key), document)
        publish(self.temp_path, self.final_path, self.durable)

    def abort(self) -> None:
        for array in self._arrays:
            array.close_current()
        remove_path(self.temp_path)
