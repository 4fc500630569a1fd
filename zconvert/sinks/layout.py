"""What the sinks lay out and the readers must know: which format a store is, where a
mappable Zarr array keeps its bytes, and which datasets of an HDF5 store are its arrays.

zarr has no memory-mapped read path, but an array stored as a single chunk with no
compressor, no filter and C order is, byte for byte, the raw array in its chunk file
(`c/0/0` in Zarr 3 with the default key encoding, `0.0` in Zarr 2). The sink writes that file
itself and the readers map it; both ask this module where it is and in what byte order.

Each store lists the members of its archive that were not converted (SKIPPED_ATTR): the
worker writes the attribute and `inspect` reads it, both through this module.

An HDF5 store also holds the netCDF-4 dimensions of its arrays (see sinks/hdf5.py): datasets
marked as dimension scales that are not variables, which hold no data. Readers list a store's
arrays through `hdf5_arrays`, which leaves them out.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..core.records import SkippedMember

if TYPE_CHECKING:
    import numpy as np


def chunk_key(array: Any) -> str:
    """The store key, relative to the array's folder, of the array's only chunk."""
    return array.metadata.encode_chunk_key((0,) * array.ndim)


def chunk_dtype(array: Any) -> np.dtype:
    """The dtype of the chunk's bytes, byte order included (Zarr 3 keeps it in the codec)."""
    import numpy as np  # not at import: a rerun's parent looks at layouts without numpy

    metadata = array.metadata
    if metadata.zarr_format == 2:
        return np.dtype(metadata.dtype.to_native_dtype())
    order = "<"
    for codec in metadata.codecs:
        endian = getattr(codec, "endian", None)
        if endian is not None:
            order = "<" if getattr(endian, "value", endian) == "little" else ">"
    return np.dtype(array.dtype).newbyteorder(order)


def not_mappable_reason(array: Any) -> str | None:
    """Why the array's bytes are not one plain C-order file, or None when they are."""
    metadata = array.metadata
    if array.ndim == 0 or math.prod(array.shape) == 0:
        return "it is empty (nothing to map)"
    reasons = []
    if tuple(array.chunks) != tuple(array.shape):
        nchunks = math.prod(
            math.ceil(s / c) for s, c in zip(array.shape, array.chunks, strict=True)
        )
        reasons.append(f"it is stored in {nchunks} chunks of {tuple(array.chunks)}")
    if metadata.zarr_format == 2:
        if metadata.compressor is not None:
            reasons.append(f"it is compressed ({metadata.compressor.codec_id})")
        if metadata.filters:
            reasons.append("it has filters")
        if metadata.order != "C":
            reasons.append("it is stored in Fortran order")
    else:
        names = [type(codec).__name__ for codec in metadata.codecs]
        if names != ["BytesCodec"]:
            reasons.append(f"its codecs are {', '.join(names)}, not the bytes codec alone")
    return " and ".join(reasons) or None


def chunk_path(store: str, array: Any) -> str:
    """The local file holding the array's only chunk."""
    return os.path.join(store, *array.path.split("/"), *chunk_key(array).split("/"))


# The document at a Zarr store's root that makes a folder (or a URL prefix) a store: the last
# one a sink writes, so a store is complete once it is there (Zarr 3, Zarr 2).
ZARR_ROOTS = ("zarr.json", ".zgroup")
# What a reference file (sinks/references.py) starts with, and readers recognise it by.
REFERENCES_SIGNATURE = b'{"version": 1, "refs": {'


# The NAME attribute netCDF-4 gives a dimension's scale when no variable holds its values;
# netCDF-C and h5netcdf list such a dataset as a dimension only, and so do our readers.
NETCDF_DIMENSION_ONLY = "This is a netCDF dimension but not a netCDF variable."


def is_netcdf_dimension(dataset: Any) -> bool:
    """Whether an h5py dataset is a netCDF dimension holding no array (a scale, no data)."""
    attrs = dataset.attrs
    if attrs.get("CLASS") != b"DIMENSION_SCALE":
        return False
    name = attrs.get("NAME", b"")
    name = name.decode("ascii", "replace") if isinstance(name, bytes) else str(name)
    return name.startswith(NETCDF_DIMENSION_ONLY)


# The store attribute listing the members of its archive that were not converted on purpose.
SKIPPED_ATTR = "skipped_members"


def skipped_members_attr(skipped: Iterable[SkippedMember]) -> list[list[str]]:
    """The SKIPPED_ATTR value: one [member, reason] pair each. Pairs, not 'member: reason'
    strings, because reasons hold ': ' (and a member's name may)."""
    return [[s.member, s.reason] for s in skipped]


def read_skipped_members(value: Any) -> list[SkippedMember]:
    """The skipped members a SKIPPED_ATTR value lists, as Zarr (JSON lists) or h5py (a numpy
    array: an n x 2 array of pairs, or an n-array whatever n is) gives it back. Stores written
    before the pairs hold 'member: reason' strings, split at the first ': '."""
    if value is None:
        return []
    if hasattr(value, "tolist"):  # a numpy array (h5py), without importing numpy
        value = value.tolist()
    if isinstance(value, (str, bytes)):  # one string, never its characters
        value = [value]
    skipped = []
    for item in value:
        if isinstance(item, (list, tuple)) and len(item) == 2:
            member, reason = (_text(v) for v in item)
        else:
            member, _, reason = _text(item).partition(": ")
        skipped.append(SkippedMember(member, reason))
    return skipped


# An HDF5 store of more than MANY_ARRAYS arrays keeps its arrays' attributes in one root
# attribute, ARRAYS_ATTR (JSON: array path -> attributes), and none on the datasets: neither
# dimension scales, nor labels, nor zconvert's own. h5netcdf (xarray's HDF5 engine) reads
# every attribute of every array one at a time, about 0.1 ms each, and resolves each scale by
# searching the file, so that an archive of 5,000 tiny members opened in 310 s with scales and
# 11 s with nine attributes an array, against 1.2 s for its Zarr store (5.2 s with none).
# Attributes every array shares with the root (SHARED_ATTRS) are not repeated in the table.
MANY_ARRAYS = 256
ARRAYS_ATTR = "zconvert_arrays"
SHARED_ATTRS = ("source_archive", "zconvert_version")


def arrays_table(attributes: dict[str, dict[str, Any]]) -> str:
    """The ARRAYS_ATTR value: each array's attributes, less SHARED_ATTRS, as compact JSON."""
    import json

    table = {
        name: {k: v for k, v in attrs.items() if k not in SHARED_ATTRS}
        for name, attrs in attributes.items()
    }
    return json.dumps(table, separators=(",", ":"))


def tabled_attributes(root: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each array's attributes from a store's ARRAYS_ATTR (removed from `root`, the store's
    root attributes), the shared ones taken from the root; {} for a store without one."""
    import json

    value = root.pop(ARRAYS_ATTR, None)
    if value is None:
        return {}
    shared = {k: root[k] for k in SHARED_ATTRS if k in root}
    table = json.loads(_text(value))
    return {name: {**shared, **attrs} for name, attrs in table.items()}


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def hdf5_arrays(group: Any) -> list[tuple[str, Any]]:
    """(path, h5py dataset) of every array below an HDF5 group, sorted by path: its datasets
    less the netCDF dimensions."""
    import h5py

    found: list[tuple[str, Any]] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and not is_netcdf_dimension(obj):
            found.append((name, obj))

    group.visititems(visit)
    return sorted(found, key=lambda item: item[0])
