"""Encode a chunk straight into a page-aligned buffer, where the codec library allows it.

numcodecs' Blosc.encode compresses into a new bytes object and then slices it to the
compressed size (a second copy), and an O_DIRECT write needs page-aligned memory, which a
bytes object is not (a third copy). Calling c-blosc's `blosc_compress_ctx` (exported by
numcodecs' own extension module) with the same arguments writes the same bytes into an
aligned buffer the sink hands to the disk as it is. The output is checked, once per process,
to be byte-identical to numcodecs' on a sample chunk; otherwise (another numcodecs, another
codec) `direct_encoder` returns None and the sink encodes through numcodecs.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .codecs import CodecPreset

try:
    from zlib_ng.zlib_ng import compress as _zlib_compress
except ImportError:  # pragma: no cover - depends on the install
    from zlib import compress as _zlib_compress

BLOSC_MAX_OVERHEAD = 16  # c-blosc: the largest an encoded buffer grows beyond its input
_SHUFFLE = 1

# encode(chunk, out) -> bytes written to out (a writable buffer of chunk.nbytes + overhead)
Encoder = Callable[[np.ndarray, memoryview], int]

_blosc: Any = None
_checked: dict[tuple[str, int], bool] = {}
_lock = threading.Lock()


def bound(nbytes: int) -> int:
    """The output buffer an encoder needs for `nbytes` of input."""
    return nbytes + BLOSC_MAX_OVERHEAD


def padded(piece: np.ndarray, chunk_shape: tuple[int, ...]) -> np.ndarray:
    """A whole chunk: an edge chunk's elements followed, along its short axis, by the fill
    value (0). Zarr and HDF5 both store edge chunks at full size."""
    if piece.shape == tuple(chunk_shape):
        return piece
    whole = np.zeros(chunk_shape, dtype=piece.dtype)
    whole[tuple(slice(0, n) for n in piece.shape)] = piece
    return whole


def run_along(axis: int, start: int, stop: int) -> tuple[slice, ...]:
    """The index of [start, stop) along `axis`, everything along the axes before it."""
    return (*(slice(None),) * axis, slice(start, stop))


def whole_chunks(
    slab: np.ndarray, start: int, chunk_shape: tuple[int, ...], axis: int
) -> Iterator[tuple[int, np.ndarray]]:
    """(chunk index along `axis`, the chunk's piece of the slab) for a slab of whole chunks
    starting at `start` along `axis` (the last piece may be short); a 0-d slab is chunk 0.

    Pieces are views: along any axis but the first they are not C-contiguous, and whatever
    stores their bytes must take them in C order (np.ascontiguousarray)."""
    if slab.ndim == 0:
        yield 0, slab
        return
    length = chunk_shape[axis]
    if start % length:
        raise ValueError(
            f"slabs of compressed or sharded arrays must start on a chunk boundary: {start} "
            f"is not a multiple of {length} along axis {axis}"
        )
    for offset in range(0, slab.shape[axis], length):
        yield (start + offset) // length, slab[run_along(axis, offset, offset + length)]


def direct_encoder(preset: CodecPreset) -> Encoder | None:
    """An encoder writing `preset`'s bytes into a caller's buffer, or None where there is
    none here (only Blosc has one)."""
    if preset.kind != "blosc" or not preset.cname:
        return None
    key = (preset.cname, preset.level)
    with _lock:
        if key not in _checked:
            _checked[key] = _load_blosc() and _same_as_numcodecs(preset)
    if not _checked[key]:
        return None
    return _blosc_encoder(preset)


def hdf5_filtered_encoder(preset: CodecPreset) -> Callable[[np.ndarray], bytes] | None:
    """For HDF5's shuffle + zstd and shuffle + deflate presets: a function giving a whole
    chunk's bytes as that filter pipeline stores them (byte shuffle, then a zstd frame or a
    zlib stream), for H5Dwrite_chunk. None for other presets.

    HDF5 running these filters itself crashed the process (SIGSEGV) when a chunk write failed
    (a full disk, a file size limit), instead of returning the error.
    """
    if preset.kind == "zstd":
        import numcodecs

        compress = numcodecs.Zstd(level=preset.level).encode
    elif preset.kind == "gzip":
        level = preset.level

        def compress(data: np.ndarray) -> bytes:
            return deflate(data, level)

    else:
        return None

    def encode(chunk: np.ndarray) -> bytes:
        return bytes(compress(byte_shuffle(chunk)))

    return encode


def byte_shuffle(chunk: np.ndarray) -> np.ndarray:
    """HDF5's shuffle filter: byte 0 of every element, then byte 1 of every element, ..."""
    chunk = np.ascontiguousarray(chunk)
    size = chunk.dtype.itemsize
    raw = chunk.reshape(-1).view(np.uint8).reshape(-1, size)
    return np.ascontiguousarray(raw.T).reshape(-1)


def deflate(data: np.ndarray, level: int) -> bytes:
    """A zlib stream (what HDF5's deflate filter stores), with zlib-ng where installed."""
    return _zlib_compress(memoryview(data), level)


def _load_blosc() -> bool:
    global _blosc
    if _blosc is not None:
        return True
    try:
        import numcodecs.blosc

        lib = ctypes.CDLL(numcodecs.blosc.__file__)
        fn = lib.blosc_compress_ctx
    except (ImportError, OSError, AttributeError):
        return False
    fn.argtypes = [
        ctypes.c_int,  # clevel
        ctypes.c_int,  # doshuffle
        ctypes.c_size_t,  # typesize
        ctypes.c_size_t,  # nbytes
        ctypes.c_void_p,  # src
        ctypes.c_void_p,  # dest
        ctypes.c_size_t,  # destsize
        ctypes.c_char_p,  # compressor
        ctypes.c_size_t,  # blocksize (0: automatic, as numcodecs)
        ctypes.c_int,  # numinternalthreads
    ]
    fn.restype = ctypes.c_int
    _blosc = fn
    return True


def _blosc_encoder(preset: CodecPreset) -> Encoder:
    compress, level, cname = _blosc, preset.level, str(preset.cname).encode()

    def encode(chunk: np.ndarray, out: memoryview) -> int:
        chunk = np.ascontiguousarray(chunk)
        if len(out) < bound(chunk.nbytes):
            raise ValueError("output buffer too small for Blosc's worst case")
        target = ctypes.addressof(ctypes.c_char.from_buffer(out))
        n = compress(
            level, _SHUFFLE, chunk.itemsize, chunk.nbytes, chunk.ctypes.data, target, len(out),
            cname, 0, 1,
        )  # fmt: skip
        if n <= 0:
            raise RuntimeError(f"Blosc compression failed ({n})")
        return int(n)

    return encode


def _same_as_numcodecs(preset: CodecPreset) -> bool:
    """Our call and numcodecs' encode give the same bytes on a sample chunk."""
    rows = np.arange(20_000, dtype="<f4").reshape(-1, 4)
    sample = np.concatenate([np.sin(rows / 50.0), np.cos(rows * 1.7)]).astype("<f4")
    try:
        expected = bytes(preset.numcodecs_codec().encode(sample))
        out = bytearray(bound(sample.nbytes))
        n = _blosc_encoder(preset)(sample, memoryview(out))
        return bytes(out[:n]) == expected
    except Exception:  # pragma: no cover - any surprise means: encode through numcodecs
        return False
