"""Zarr sink for URL outputs (s3://...): chunks written straight to object storage, metadata last.

Object stores have no rename, so a temporary-then-publish store is impossible. Instead the
metadata documents are the completeness record: every chunk is written first, while zarr's
metadata writes are held back in memory; on commit the array (and intermediate group)
documents are written, then the root group's documents with consolidated metadata (see
_consolidated), the root `zarr.json` (Zarr 3) or `.zgroup` (Zarr 2, after `.zattrs` and
`.zmetadata`) last of all. A reader opening the store by its URL finds no group until that
last PUT, so it sees either nothing or a complete store, which it opens with that one read.
A failed archive deletes everything under the store's prefix.

Slabs along another axis than the first hold whole chunks along it, and chunks span every
other axis, so each slab is whole chunks of the array, which zarr stores in C order. A 0-d
array is zarr's own (chunk key `c` or `0`), never sharded (zarr-python 3.1 cannot write a
sharded 0-d array). Byte order is zarr-python's: Zarr 2 keeps '>f8'; Zarr 3 stores
little-endian and reads back native float64 (as the local sink's Zarr 3 does, from big-endian
bytes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from zarr.abc.store import ByteRequest
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import FsspecStore, WrapperStore

from ..core.convert_options import ConvertOptions
from ..core.storage import remove_tree
from . import ArraySpec
from ._consolidated import root_documents
from .chunk_encoder import run_along
from .codecs import get_preset

_METADATA_NAMES = ("zarr.json", ".zgroup", ".zarray", ".zattrs", ".zmetadata")


def _is_metadata(key: str) -> bool:
    return key.rsplit("/", 1)[-1] in _METADATA_NAMES


class MetadataLastStore(WrapperStore[FsspecStore]):
    """Passes chunk writes through; holds metadata documents until `flush_metadata`."""

    def __init__(self, store: FsspecStore) -> None:
        super().__init__(store)
        self.held: dict[str, Buffer] = {}
        self.written_bytes: dict[str, int] = {}

    async def set(self, key: str, value: Buffer) -> None:
        if _is_metadata(key):
            self.held[key] = value
            return
        self.written_bytes[key] = len(value)
        await self._store.set(key, value)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        if key not in self.held and not await self._store.exists(key):
            await self.set(key, value)

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        if key in self.held and byte_range is None:
            return self.held[key]
        return await self._store.get(key, prototype, byte_range)

    async def exists(self, key: str) -> bool:
        return key in self.held or await self._store.exists(key)

    async def delete(self, key: str) -> None:
        self.held.pop(key, None)
        await self._store.delete(key)

    def flush_metadata(self, zarr_format: int) -> None:
        """Write held documents: nested ones first (deepest first), then the root group's
        documents with consolidated metadata, the one that makes the store a group last."""
        nested = {key: self.held[key] for key in self.held if "/" in key}
        for key in sorted(nested, key=lambda key: -key.count("/")):
            sync(self._store.set(key, nested[key]))
        documents = {key: json.loads(value.to_bytes()) for key, value in nested.items()}
        for key, document in root_documents(zarr_format, self._root_attributes(), documents):
            data = json.dumps(document, indent=2, allow_nan=True).encode()
            sync(self._store.set(key, default_buffer_prototype().buffer.from_bytes(data)))
        self.held.clear()

    def _root_attributes(self) -> dict[str, Any]:
        """The root group's attributes as zarr wrote them (held, not yet stored)."""
        if "zarr.json" in self.held:
            return json.loads(self.held["zarr.json"].to_bytes()).get("attributes", {})
        if ".zattrs" in self.held:
            return json.loads(self.held[".zattrs"].to_bytes())
        return {}

    def stored_bytes(self, prefix: str) -> int:
        """Bytes of chunks and held documents under `prefix/` (no listing of the bucket)."""
        start = prefix.rstrip("/") + "/"
        chunks = sum(n for k, n in self.written_bytes.items() if k.startswith(start))
        return chunks + sum(len(v) for k, v in self.held.items() if k.startswith(start))


@dataclass
class _URLArray:
    array: zarr.Array
    axis: int  # the axis slabs run along


class ZarrURLSink:
    """Zarr to object storage through zarr's FsspecStore, metadata documents held to the end.

    Object stores have no rename, so this sink goes through zarr's API (one PUT per chunk)
    rather than the local sink's files-then-rename."""

    def __init__(
        self,
        final_url: str,
        options: ConvertOptions,
        attributes: dict[str, Any],
        storage_options: dict[str, Any],
    ) -> None:
        self.final_path = final_url
        self.storage_options = storage_options
        self.zarr_format = options.zarr_format
        self.compressors = get_preset(options.codec).zarr_compressors(options.zarr_format)
        # An older store at this URL is removed first (its root document with it), so readers
        # never see old metadata over new chunks.
        remove_tree(final_url, storage_options)
        self.store = MetadataLastStore(
            FsspecStore.from_url(final_url, storage_options=dict(storage_options))
        )
        self.group = zarr.open_group(
            self.store, mode="w", zarr_format=options.zarr_format, attributes=attributes
        )

    def add_array(self, spec: ArraySpec) -> _URLArray:
        attributes = dict(spec.attributes)
        kwargs: dict[str, Any] = {}
        chunks = spec.chunks
        if spec.inner_chunks is not None and spec.shape:  # zarr's chunks are the inner ones
            chunks, kwargs["shards"] = spec.inner_chunks, spec.chunks
        if self.zarr_format == 3:
            kwargs["dimension_names"] = spec.dimension_names
        else:
            attributes["_ARRAY_DIMENSIONS"] = list(spec.dimension_names)
            kwargs["filters"] = None
        array = self.group.create_array(
            spec.name,
            shape=spec.shape,
            dtype=spec.dtype,
            chunks=chunks,
            compressors=self.compressors,
            fill_value=0,
            attributes=attributes,
            config={"write_empty_chunks": True},  # every chunk exists, as in local stores
            **kwargs,
        )
        return _URLArray(array, spec.axis)

    def partial_writes(self, handle: _URLArray) -> bool:
        return False  # a piece of a chunk would be a read-modify-write of an object

    def write_slab(self, handle: _URLArray, row_start: int, slab: np.ndarray) -> None:
        if slab.ndim == 0:
            handle.array[()] = slab
            return
        axis = handle.axis
        handle.array[run_along(axis, row_start, row_start + slab.shape[axis])] = slab

    def finish_array(self, handle: _URLArray) -> int | None:
        return self.store.stored_bytes(handle.array.path)

    def commit(self) -> None:
        self.store.flush_metadata(self.zarr_format)

    def abort(self) -> None:
        self.store.held.clear()
        remove_tree(self.final_path, self.storage_options)
