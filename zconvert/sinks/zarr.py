"""Zarr sink, the one Zarr writer: one group per archive, one array per member, Zarr format 3
(or 2), to a local folder or to object storage alike.

The sink writes the format itself, metadata as JSON and chunks encoded with numcodecs, exactly
as zarr-python writes them (whose array API costs 12 ms per 4 MiB chunk here and 0.4 s to
import). Keys go to a place (see places): files renamed into place by commit, or objects below
a URL; the bytes are the same in both. Metadata is written by commit, deepest first, then the
root group's with consolidated metadata (see _consolidated), the one that makes the store a
group last, after every other key is stored: a store opens only once it is complete.

Chunks hold full chunks, edge chunks padded with the fill value (0), as the spec says.
Uncompressed arrays in a folder may be written a piece of a chunk at a time (a one-chunk
array is then a plain file that can be memory-mapped); compressed ones, and all on object
storage, take whole chunks: an object is written whole, never read back and rewritten. There
a one-chunk array (--contiguous) is gathered in memory run by run and stored with its last.

Sharded arrays (Zarr 3 `sharding_indexed`) are written a whole shard at a time: one key per
shard at the usual chunk key, holding its inner chunks encoded one after the other, then the
index (offset and length of each inner chunk, C order, uint64 little-endian; 2**64-1 for both
where an inner chunk lies wholly past the array's end and is not stored) and its CRC32C.

Slabs along another axis than the first (Fortran-ordered sources) are chunked along that axis
and stored in C order like any other: no `order: F` (Zarr 2) or transpose codec (Zarr 3),
which some readers ignore or refuse. A one-chunk uncompressed array in a folder stays one
plain file, filled through a map of it (see write_mapped). A 0-d array is one chunk, key `c`
(Zarr 3) or `0` (Zarr 2), as zarr-python writes it; it is never sharded (zarr-python 3.1
cannot write a sharded 0-d array).

Byte order is kept: a big-endian dtype is stored big-endian (Zarr 2 dtype `>f8`, Zarr 3 bytes
codec `endian: big`). zarr-python reads Zarr 2 back as `>f8` and Zarr 3 as the native `float64`
(it keeps no byte order in a Zarr 3 dtype); the values are the same.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import google_crc32c
import numpy as np

from ..core.convert_options import ConvertOptions
from . import ArraySpec, chunk_encoder, write_mapped
from ._consolidated import root_documents
from .codecs import get_preset
from .directio import ALIGN, aligned_buffer
from .places import KeyWriter, open_place

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


def json_bytes(document: dict[str, Any]) -> bytes:
    """A metadata document as the sink stores it, in every place."""
    return json.dumps(document, indent=2, ensure_ascii=False).encode()


@dataclass
class _ZarrArray:
    name: str  # the array's key below the store's root
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype
    zarr_format: int
    inner_chunks: tuple[int, ...] | None = None  # sharded: `chunks` is the shard shape
    axis: int = 0  # the axis slabs run along; chunks are whole on every other
    stored_bytes: int = 0
    document_bytes: int = 0  # of the array's own metadata documents
    # The uncompressed chunk being filled piece by piece, kept open between pieces.
    current: tuple[int, KeyWriter] | None = None
    # A one-chunk array's chunk gathered run by run where keys are written whole.
    gathered: np.ndarray | None = None
    gathered_rows: int = 0

    def close_current(self) -> None:
        if self.current is not None:
            self.current[1].close()
            self.current = None

    def chunk_key(self, index: int) -> str:
        """The key of the chunk `index` along the array's axis (the only one across it)."""
        coords = ["0"] * len(self.shape)
        if coords:
            coords[self.axis] = str(index)
        if self.zarr_format == 3:
            return "/".join([self.name, "c", *coords])
        return f"{self.name}/{'.'.join(coords) or '0'}"

    def one_chunk(self) -> bool:
        """Unsharded, with one chunk along its axis."""
        return (
            bool(self.shape)
            and self.inner_chunks is None
            and self.chunks[self.axis] >= self.shape[self.axis]
        )

    def mapped(self, uncompressed: bool) -> bool:
        """Written through a map of its one chunk file: an uncompressed, unsharded array in a
        single chunk whose slabs run along another axis than the first."""
        return uncompressed and self.axis > 0 and self.one_chunk()


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
        self,
        final_path: str,
        options: ConvertOptions,
        attributes: dict[str, Any],
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.final_path = final_path
        self.zarr_format = options.zarr_format
        self.preset = get_preset(options.codec)
        self.codec = self.preset.numcodecs_codec()
        self._encode_into = chunk_encoder.direct_encoder(self.preset)
        self._arrays: list[_ZarrArray] = []
        self._nodes: dict[str, str] = {}  # "group" or "array", by name below the root
        # Every metadata document is written by commit (the root group's last, see
        # _consolidated); until then they are kept here, by store key, and encoded.
        self._attributes = attributes
        self._documents: dict[str, dict[str, Any]] = {}
        self._encoded: dict[str, bytes] = {}
        self.place = open_place(final_path, storage_options, options.durable, options.direct_io)
        self._partial_place = self.place.partial_writes

    def _add_document(self, key: str, document: dict[str, Any]) -> int:
        """Keep a metadata document at a '/'-separated store key below the root; returns its
        stored size."""
        self._documents[key] = document
        self._encoded[key] = json_bytes(document)
        return len(self._encoded[key])

    def _add_node(self, name: str) -> None:
        """Record an array and the intermediate groups of its nested name (new groups get
        their documents)."""
        parts = name.split("/")
        for depth in range(1, len(parts) + 1):
            node = "/".join(parts[:depth])
            kind = "array" if depth == len(parts) else "group"
            known = self._nodes.get(node)
            if known == kind == "group":
                continue
            if known is not None:
                raise ValueError(f"array {name!r}: the store already has a {known} {node!r}")
            self._nodes[node] = kind
            if kind == "group" and self.zarr_format == 3:
                doc = {"attributes": {}, "zarr_format": 3, "node_type": "group"}
                self._add_document(f"{node}/zarr.json", doc)
            elif kind == "group":
                self._add_document(f"{node}/.zgroup", {"zarr_format": 2})

    def add_array(self, spec: ArraySpec) -> _ZarrArray:
        self._add_node(spec.name)
        dtype = np.dtype(spec.dtype)
        inner_chunks = spec.inner_chunks if spec.shape else None  # one value: nothing to shard
        if self.zarr_format == 3:
            fill: Any = {"f": 0.0, "c": [0.0, 0.0], "b": False}.get(dtype.kind, 0)
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
            array = _ZarrArray(
                spec.name, spec.shape, spec.chunks, dtype, 3, inner_chunks, spec.axis
            )
            array.document_bytes = self._add_document(f"{spec.name}/zarr.json", doc)
            return self._track(array)
        doc = {
            "shape": list(spec.shape),
            "chunks": list(spec.chunks),
            "dtype": dtype.str,
            "fill_value": None,  # xarray reads a Zarr 2 fill value's values as NaN (0 -> NaN)
            "order": "C",
            "filters": None,
            "dimension_separator": ".",
            "compressor": self.preset.zarr2_compressor(),
            "zarr_format": 2,
        }
        attributes = {**spec.attributes, "_ARRAY_DIMENSIONS": list(spec.dimension_names)}
        array = _ZarrArray(spec.name, spec.shape, spec.chunks, dtype, 2, axis=spec.axis)
        array.document_bytes = self._add_document(f"{spec.name}/.zarray", doc)
        array.document_bytes += self._add_document(f"{spec.name}/.zattrs", attributes)
        return self._track(array)

    def _track(self, array: _ZarrArray) -> _ZarrArray:
        self._arrays.append(array)
        return array

    def partial_writes(self, handle: _ZarrArray) -> bool:
        # Raw chunk files take bytes at any offset; a shard's index needs all its chunks.
        # Along another axis a run is strided in its chunk: only a mapped chunk takes one.
        # Objects take none: a piece would be a read-modify-write of the object.
        if not self._partial_place:
            return False
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
        if handle.gathered is not None or (
            handle.one_chunk() and slab.shape[handle.axis] < handle.shape[handle.axis]
        ):
            self._gather(handle, row_start, slab)
            return
        for index, piece in chunk_encoder.whole_chunks(slab, row_start, handle.chunks, handle.axis):
            if handle.inner_chunks is not None:
                self._write_shard(handle, handle.inner_chunks, index, piece)
            else:
                self._write_chunk(handle, index, piece)

    def _write_chunk(self, handle: _ZarrArray, index: int, piece: np.ndarray) -> None:
        """One whole chunk (an edge chunk's piece is padded), encoded and written whole."""
        if self._encode_into is None:
            encoded = self._encode(piece, handle.chunks)
            with self.place.writer(handle.chunk_key(index)) as f:
                f.pwrite(encoded, 0)
            handle.stored_bytes += len(encoded)
            return
        piece = chunk_encoder.padded(piece, handle.chunks)
        with aligned_buffer(chunk_encoder.bound(piece.nbytes)) as out:
            n = self._encode_into(piece, out)  # aligned: straight to an O_DIRECT write
            with self.place.writer(handle.chunk_key(index)) as f:
                f.pwrite(out[:n], 0)
        handle.stored_bytes += n

    def _gather(self, handle: _ZarrArray, start: int, slab: np.ndarray) -> None:
        """A run of a one-chunk array where keys are written whole (--contiguous on object
        storage): copied into the chunk in memory, which is written with the last run."""
        if handle.gathered is None:  # zeros (the fill value) until written
            handle.gathered = np.zeros(handle.chunks, dtype=handle.dtype)
        rows = slab.shape[handle.axis]
        handle.gathered[chunk_encoder.run_along(handle.axis, start, start + rows)] = slab
        handle.gathered_rows += rows
        if handle.gathered_rows >= handle.shape[handle.axis]:
            chunk, handle.gathered = handle.gathered, None
            self._write_chunk(handle, 0, chunk)

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
        with self.place.writer(handle.chunk_key(shard)) as f:
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
                handle.current = (index, self.place.writer(handle.chunk_key(index), not within))
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
        key = handle.chunk_key(0)
        if start == 0:  # the first run: the whole chunk, zeros (the fill value) until written
            chunk_bytes = handle.dtype.itemsize * int(np.prod(handle.chunks, dtype=np.int64))
            with self.place.writer(key) as f:
                f.truncate(chunk_bytes)
            handle.stored_bytes += chunk_bytes
        write_mapped(self.place.local_path(key), 0, handle.chunks, start, slab, handle.axis)

    def finish_array(self, handle: _ZarrArray) -> int | None:
        """Chunk bytes plus the array's metadata documents: what zarr's nbytes_stored() says
        (counted as written: nothing is listed or stat'ed)."""
        handle.close_current()
        return handle.stored_bytes + handle.document_bytes

    def commit(self) -> None:
        """Every metadata document, deepest first, then the root group's (see _consolidated),
        the one that makes the store a group last; then the place makes the store visible."""
        for key in sorted(self._encoded, key=lambda key: -key.count("/")):
            self.place.write_bytes(key, self._encoded[key])
        *first, (last, document) = root_documents(
            self.zarr_format, self._attributes, self._documents
        )
        for key, earlier in first:
            self.place.write_bytes(key, json_bytes(earlier))
        self.place.flush()  # every other key stored before the one that makes the store
        self.place.write_bytes(last, json_bytes(document))
        self.place.commit()

    def abort(self) -> None:
        for array in self._arrays:
            array.close_current()
            array.gathered = None
        self.place.abort()
