"""The sizes one array is written in: its chunks (and shards), the slabs a worker inflates at a
time and the pieces it hands the writer. Pure functions of the options and the member's
layout: no I/O (tests/run/test_array_sizes.py). run/worker.py streams by them."""

from __future__ import annotations

import math
from typing import NamedTuple

from ..core.convert_options import ConvertOptions, default_chunk_rows


class ArraySizes(NamedTuple):  # not a dataclass: 6x cheaper to define at start-up
    """How one array is cut, in the member's stream order (rows first)."""

    chunks: tuple[int, ...]  # the write grid: shards where there are shards, else chunks
    inner_chunks: tuple[int, ...] | None  # the chunks inside shards; None without shards
    buffer_rows: int  # rows each of the two slab buffers holds
    slab_rows: int  # rows inflated per slab: whole grid units (or the whole, shorter, array)


def array_sizes(
    options: ConvertOptions, rows: int, row_shape: tuple[int, ...], row_bytes: int, scalar: bool
) -> ArraySizes:
    """Chunks, shards and slabs of an array of `rows` rows of `row_bytes` bytes each (`scalar`:
    a 0-d array, never sharded). A slab is a whole number of chunks (shards), so no chunk is
    ever written twice, and about `slab_bytes` long."""
    chunk_rows = options.chunk_rows or default_chunk_rows(row_bytes)
    chunks = (max(1, min(chunk_rows, rows)), *row_shape)
    if options.contiguous:  # one chunk for the whole array; slabs still stream in pieces
        chunks = (max(1, rows), *row_shape)
    inner_chunks = None
    if options.shard_rows and not scalar:  # the grid is shards; chunks live inside them
        inner_chunks = chunks
        chunks = (shard_rows(options.shard_rows, chunks[0], rows), *row_shape)
    # Slabs are whole shards where there are shards: the sink writes one at a time. A
    # contiguous array's one chunk is still written a slab of chunk_rows at a time.
    grid_rows = options.shard_rows or chunk_rows
    slab_units = max(1, options.slab_bytes // (grid_rows * row_bytes))
    buffer_rows = min(grid_rows * slab_units, max(rows, 1))
    slab_rows = (buffer_rows // chunks[0]) * chunks[0] if buffer_rows >= chunks[0] else buffer_rows
    return ArraySizes(chunks, inner_chunks, buffer_rows, slab_rows)


def shard_rows(configured: int, chunk_rows: int, rows: int) -> int:
    """Rows per shard of an array: as configured, but no more than the whole chunks that
    cover a shorter array (its single shard then indexes no chunk past its end)."""
    covering = -(-max(rows, 1) // chunk_rows) * chunk_rows
    return min(configured, covering)


# Uncompressed pieces handed to the writer: small enough that little is left to write after
# the last byte is inflated, large enough for full-speed direct writes (1 MiB: 0.94 GB/s
# here, as fast as 8 MiB).
PIECE_BYTES = 1 << 20


def piece_rows(chunk_rows: int, slab_rows: int, row_bytes: int, partial: bool) -> int:
    """Rows handed to the writer at a time: about PIECE_BYTES of page-aligned rows where the
    sink takes any rows, else whole chunks (as few as make PIECE_BYTES, at least one)."""
    if partial:
        unit = 4096 // math.gcd(row_bytes, 4096)  # rows that are a whole number of pages
        rows = max(unit, PIECE_BYTES // row_bytes // unit * unit)
    else:
        rows = max(1, PIECE_BYTES // (chunk_rows * row_bytes)) * chunk_rows
    return max(1, min(rows, slab_rows))


def reference_chunk_rows(rows: int, wanted: int) -> int:
    """Rows per chunk of a referenced member (Zarr 2 needs every chunk full, and the member's
    bytes end where its last row does): the largest divisor of `rows` up to `wanted`, if it
    is at least an eighth of it (2,000,000 rows, 65,536 wanted: 62,500); else one chunk of
    all the rows (a prime number of rows cannot be cut evenly)."""
    if rows <= wanted:
        return max(rows, 1)
    best = max(d for d in _divisors(rows) if d <= wanted)
    return best if best * 8 >= wanted else rows


def _divisors(n: int) -> list[int]:
    """Every divisor of n > 0, from its prime factors (trial division: quick for the
    many-factored row counts arrays have, a square root's worth of steps for a prime)."""
    factors: dict[int, int] = {}
    p = 2
    while p * p <= n:
        while n % p == 0:
            factors[p] = factors.get(p, 0) + 1
            n //= p
        p += 1 if p == 2 else 2
    if n > 1:
        factors[n] = factors.get(n, 0) + 1
    divisors = [1]
    for prime, count in factors.items():
        divisors = [d * prime**k for d in divisors for k in range(count + 1)]
    return divisors
