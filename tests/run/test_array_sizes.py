"""How one array is cut into chunks, shards, slabs and pieces: pure functions, no files."""

from __future__ import annotations

import pytest

from zconvert.core.convert_options import ConvertOptions
from zconvert.run.array_sizes import PIECE_BYTES, array_sizes, piece_rows, shard_rows

ROW = 16  # 4 float32 per row


def test_default_chunks_are_about_4_mib_and_slabs_about_slab_bytes():
    sizes = array_sizes(ConvertOptions(), 2_000_000, (4,), ROW, scalar=False)
    assert sizes.chunks == (262144, 4) and sizes.inner_chunks is None
    assert sizes.buffer_rows == 2 * 262144  # 8 MiB slab of 4 MiB chunks
    assert sizes.slab_rows == 2 * 262144


def test_an_array_shorter_than_a_chunk_is_one_chunk_and_one_slab():
    sizes = array_sizes(ConvertOptions(), 50, (4,), ROW, scalar=False)
    assert sizes.chunks == (50, 4) and sizes.buffer_rows == 50 and sizes.slab_rows == 50


@pytest.mark.parametrize("rows", [0, 1, 999, 1000, 1001, 123_457])
@pytest.mark.parametrize("chunk_rows", [1, 7, 1000, 4096])
@pytest.mark.parametrize("slab_bytes", [1, 4096, 1 << 20, 8 << 20])
def test_a_slab_is_whole_chunks_or_the_whole_array(rows, chunk_rows, slab_bytes):
    options = ConvertOptions(chunk_rows=chunk_rows, slab_bytes=slab_bytes)
    sizes = array_sizes(options, rows, (4,), ROW, scalar=False)
    assert sizes.slab_rows <= sizes.buffer_rows <= max(rows, 1)
    assert sizes.slab_rows % sizes.chunks[0] == 0 or sizes.slab_rows == max(rows, 1)
    assert sizes.slab_rows >= 1


def test_contiguous_is_one_chunk_streamed_in_slabs():
    options = ConvertOptions(codec="none", contiguous=True, chunk_rows=1000)
    sizes = array_sizes(options, 1_000_000, (4,), ROW, scalar=False)
    assert sizes.chunks == (1_000_000, 4)
    assert sizes.buffer_rows == (8 << 20) // (1000 * ROW) * 1000  # slabs of chunk_rows
    assert sizes.slab_rows == sizes.buffer_rows  # the one chunk is longer: written in parts


def test_shards_are_the_grid_and_slabs_whole_shards():
    options = ConvertOptions(chunk_rows=1000, shard_rows=8000)
    sizes = array_sizes(options, 100_000, (4,), ROW, scalar=False)
    assert sizes.chunks == (8000, 4) and sizes.inner_chunks == (1000, 4)
    assert sizes.slab_rows % 8000 == 0
    short = array_sizes(options, 2500, (4,), ROW, scalar=False)
    assert short.chunks == (3000, 4)  # the chunks that cover it, not 8000
    assert array_sizes(options, 0, (), 4, scalar=True).inner_chunks is None


def test_shard_rows_covers_a_short_array_with_whole_chunks():
    assert shard_rows(8000, 1000, 100_000) == 8000
    assert shard_rows(8000, 1000, 2500) == 3000
    assert shard_rows(8000, 1000, 0) == 1000


def test_pieces_are_page_aligned_for_partial_writers_and_whole_chunks_otherwise():
    rows = piece_rows(1000, 1_000_000, 12, partial=True)
    assert (rows * 12) % 4096 == 0 and rows * 12 <= PIECE_BYTES
    assert piece_rows(1000, 1_000_000, ROW, partial=False) % 1000 == 0
    assert piece_rows(1_000_000, 1_000_000, ROW, partial=False) == 1_000_000  # >= one chunk
    assert piece_rows(1000, 10, ROW, partial=True) == 10  # never past the slab
