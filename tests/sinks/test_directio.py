"""O_DIRECT writes: the bytes that land are the bytes given, aligned or not, direct or not."""

from __future__ import annotations

import os

import numpy as np
import pytest

import zconvert
from zconvert.sinks.directio import ALIGN, DirectFile, FileWriter, aligned_buffer, slab_buffers

from ..conftest import float_rows, make_zip


@pytest.mark.parametrize("enabled", [True, False])
def test_unaligned_sources_offsets_and_tails_land_intact(tmp_path, enabled):
    rng = np.random.default_rng(0)
    blob = rng.integers(0, 255, size=ALIGN * 300 + 123, dtype=np.uint8).tobytes()
    half = ALIGN * 100  # over DIRECT_MIN_BYTES: these pieces go direct when enabled
    path = tmp_path / "f.bin"
    with FileWriter(str(path), enabled=enabled) as w:
        w.pwrite(memoryview(blob)[1:], 1)  # unaligned offset: ordinary write
        w.pwrite(memoryview(blob)[:half], 0)  # aligned offset, unaligned source memory
        w.pwrite(blob[half:], half)  # aligned offset with an unaligned tail
        assert (w._direct_fd >= 0) == (enabled and bool(os.O_DIRECT))
    assert path.read_bytes() == blob


def test_slab_buffers_are_page_aligned_and_reused():
    a = slab_buffers(1000, (4,), "<f4")
    b = slab_buffers(500, (4,), "<f4")
    for arr in (*a, *b):
        assert arr.ctypes.data % ALIGN == 0
    assert a[0].ctypes.data == b[0].ctypes.data  # the same mapping serves the next task
    assert a[0].ctypes.data != a[1].ctypes.data


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
@pytest.mark.parametrize("codec", ["none", "blosc-lz4", "zstd"])
def test_direct_and_buffered_stores_hold_the_same_data(tmp_path, fmt, codec):
    data = float_rows(100_003)  # an unaligned size: the last piece goes through the page cache
    make_zip(tmp_path / "in" / "a.zip", {"blob.bin": data, "b.bin": data[:5]})
    for direct in (True, False):
        out = tmp_path / f"out{direct}"
        report = zconvert.convert(
            tmp_path / "in", out, format=fmt, codec=codec, direct_io=direct, executor="serial"
        )
        assert report.ok, report.failed
        store = report.results[0].store
        np.testing.assert_array_equal(zconvert.open(store, "blob")[...], data)
        np.testing.assert_array_equal(zconvert.open(store, "b")[...], data[:5])
    if fmt == "hdf5" and codec == "none":
        mm = zconvert.open_memmap(os.path.join(tmp_path, "outTrue", "a.h5"), "blob")
        np.testing.assert_array_equal(mm, data)


@pytest.mark.parametrize("enabled", [True, False])
def test_direct_file_reads_back_what_was_written_anywhere(tmp_path, enabled):
    """DirectFile is the file HDF5 writes through: positional writes of any size and
    alignment, reads of what was written, seeks from the end, truncation."""
    rng = np.random.default_rng(1)
    big = rng.integers(0, 255, size=ALIGN * 80, dtype=np.uint8).tobytes()
    expected = bytearray(ALIGN * 100)
    path = tmp_path / "f.h5"
    with DirectFile(str(path), enabled=enabled) as f:
        with aligned_buffer(len(big)) as aligned:  # aligned memory and offset: goes direct
            aligned[:] = big
            f.seek(ALIGN * 4)
            assert f.write(aligned) == len(big)
        expected[ALIGN * 4 : ALIGN * 84] = big
        f.seek(100)  # small and unaligned: the page cache
        f.write(b"metadata")
        expected[100:108] = b"metadata"
        f.seek(ALIGN * 84 + 5)
        f.write(big[:300])
        expected[ALIGN * 84 + 5 : ALIGN * 84 + 305] = big[:300]
        assert f.seek(0, os.SEEK_END) == ALIGN * 84 + 305
        f.seek(ALIGN * 4 - 10)
        back = bytearray(ALIGN + 20)
        assert f.readinto(back) == len(back)
        assert back == expected[ALIGN * 4 - 10 : ALIGN * 5 + 10]
        f.truncate(ALIGN * 90)
        assert f.seek(0, os.SEEK_END) == ALIGN * 90
    assert path.read_bytes() == bytes(expected[: ALIGN * 90])
