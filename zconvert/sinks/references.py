"""Reference sink: a kerchunk reference file per archive, pointing at its stored members.

A stored (ZIP method 0) member's bytes are a plain byte range of its archive, so instead of
copying them the store says where they are: one JSON document, kerchunk's version 1, whose
keys are a Zarr 2 store's (`.zgroup`, `.zattrs`, `NAME/.zarray`, `NAME/.zattrs`) and whose
chunks are `[archive, offset, length]`. fsspec's "reference" filesystem serves it as a
read-only Zarr 2 store: zarr-python, xarray and dask read the archive in place, with no
zconvert installed.

- Archives are named by absolute path, or by URL (an s3:// archive stays s3://).
- An array is cut into chunks of whole rows (the run's chunk rows) along the axis its bytes
  run slowest: the rows of a C-order member, the last axis of a Fortran-order .npy member
  (Zarr 2's `order: "F"`: each chunk is then a Fortran-order block of whole columns). Zarr 2
  needs every chunk full, so the worker picks chunk lengths that divide the axis
  (run/array_sizes.py: reference_chunk_rows).
- Attributes are the Zarr stores': `_ARRAY_DIMENSIONS`, the member, its CRC32, sizes and, for
  references, the member's local header offset, which a rerun checks against the archive.
- Nothing is written until commit: the document is written whole to a temporary sibling and
  renamed into place (one PUT on object storage), so a reference file at its final path is
  complete.
"""

from __future__ import annotations

import json
import math
from typing import Any, NamedTuple

from ..core.convert_options import ConvertOptions
from . import ArraySpec
from .atomic import publish, remove_path, temp_sibling

ZGROUP = json.dumps({"zarr_format": 2})


class _Array(NamedTuple):
    name: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    axis: int
    itemsize: int


class ReferenceSink:
    """One reference document: arrays are added, then referred to, then committed."""

    def __init__(
        self,
        final_path: str,
        options: ConvertOptions,
        attributes: dict[str, Any],
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        from ..core.storage import is_url

        self.final_path = final_path
        self.storage_options = storage_options or {}
        self.temp_path = None if is_url(final_path) else temp_sibling(final_path)
        self.durable = options.durable
        self.refs: dict[str, Any] = {".zgroup": ZGROUP, ".zattrs": _json(attributes)}

    def add_array(self, spec: ArraySpec, itemsize: int) -> _Array:
        """The array's metadata; `itemsize`: its dtype's, which the worker knows (no numpy)."""
        parts = spec.name.split("/")
        for depth in range(1, len(parts)):  # the groups a nested member's name passes through
            self.refs["/".join(parts[:depth]) + "/.zgroup"] = ZGROUP
        fortran = spec.axis > 0  # slabs along the last axis: a Fortran-order member
        self.refs[f"{spec.name}/.zarray"] = _json(
            {
                "chunks": list(spec.chunks),
                "compressor": None,
                "dtype": spec.dtype,
                # None, as in zconvert's Zarr 2 stores: xarray reads values equal to a Zarr 2
                # fill value as missing (int 0 -> NaN). Every chunk is referenced.
                "fill_value": None,
                "filters": None,
                "order": "F" if fortran else "C",
                "shape": list(spec.shape),
                "zarr_format": 2,
            }
        )
        self.refs[f"{spec.name}/.zattrs"] = _json(
            {**spec.attributes, "_ARRAY_DIMENSIONS": list(spec.dimension_names)}
        )
        return _Array(spec.name, tuple(spec.shape), tuple(spec.chunks), spec.axis, itemsize)

    def refer(self, handle: _Array, url: str, offset: int) -> None:
        """The array's chunks are the bytes of `url` from `offset` on, one after another."""
        if not handle.shape:
            self.refs[f"{handle.name}/0"] = [url, offset, handle.itemsize]
            return
        length = handle.chunks[handle.axis]
        count = handle.shape[handle.axis] // length
        if count * length != handle.shape[handle.axis]:
            raise ValueError(f"{handle.name}: chunks of {length} do not divide {handle.shape}")
        chunk_bytes = handle.itemsize * math.prod(handle.chunks)
        index = ["0"] * len(handle.shape)
        for i in range(count):
            index[handle.axis] = str(i)
            self.refs[f"{handle.name}/{'.'.join(index)}"] = [
                url,
                offset + i * chunk_bytes,
                chunk_bytes,
            ]

    def partial_writes(self, handle: _Array) -> bool:
        return False

    def write_slab(self, handle: _Array, row_start: int, slab: Any) -> None:
        raise TypeError("a reference store holds no array data: refer() to the member instead")

    def finish_array(self, handle: _Array) -> int:
        return 0  # no array byte is stored

    def document(self) -> dict[str, Any]:
        """The kerchunk document, with Zarr 2's consolidated metadata (.zmetadata) as the
        Zarr stores have it: readers open every array from one key."""
        metadata = {
            key: json.loads(value)
            for key, value in self.refs.items()
            if key.rpartition("/")[2] in (".zgroup", ".zattrs", ".zarray")
        }
        consolidated = {"zarr_consolidated_format": 1, "metadata": metadata}
        return {"version": 1, "refs": {**self.refs, ".zmetadata": _json(consolidated)}}

    def commit(self) -> None:
        data = json.dumps(self.document(), separators=(", ", ": ")).encode()
        if self.temp_path is None:  # object storage: one PUT, visible once complete
            from ..core.storage import write_bytes

            write_bytes(self.final_path, data, self.storage_options)
            return
        import os

        os.makedirs(os.path.dirname(self.final_path) or ".", exist_ok=True)
        with open(self.temp_path, "wb") as f:
            f.write(data)
            if self.durable:
                os.fsync(f.fileno())
        publish(self.temp_path, self.final_path, self.durable)

    def abort(self) -> None:
        if self.temp_path is not None:
            remove_path(self.temp_path)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
