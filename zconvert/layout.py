"""Where a mappable Zarr array keeps its bytes: one uncompressed chunk, one plain file.

zarr has no memory-mapped read path, but an array stored as a single chunk with no
compressor, no filter and C order is, byte for byte, the raw array in its chunk file
(`c/0/0` in Zarr 3 with the default key encoding, `0.0` in Zarr 2). The sink writes that file
itself and the readers map it; both ask this module where it is and in what byte order.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np


def chunk_key(array: Any) -> str:
    """The store key, relative to the array's folder, of the array's only chunk."""
    return array.metadata.encode_chunk_key((0,) * array.ndim)


def chunk_dtype(array: Any) -> np.dtype:
    """The dtype of the chunk's bytes, byte order included (Zarr 3 keeps it in the codec)."""
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
