"""Memory maps straight from stored members of .zip and .npz files, with no conversion."""

from __future__ import annotations

import os
import pickle
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import zconvert
from tests.conftest import float_rows, make_zip

RNG = np.random.default_rng(6)
VALUES = RNG.random((2000, 4), dtype=np.float32)
CUBE = np.asfortranarray(RNG.random((3, 5, 7)))
BIG = RNG.random((10, 3)).astype(">f8")


@pytest.fixture
def stored_npz(tmp_path: Path) -> Path:
    path = tmp_path / "arrays.npz"
    np.savez(
        path, values=VALUES, cube=CUBE, big=BIG, scalar=np.float32(1.5), flags=VALUES[:, 0] > 0.5
    )
    return path


def test_stored_npz_member_is_a_memmap_of_the_archive_itself(stored_npz):
    m = zconvert.open_memmap(stored_npz, "values")
    assert isinstance(m, np.memmap)
    assert m.filename == os.path.abspath(stored_npz)
    assert not m.flags.writeable
    assert m.dtype == np.float32 and m.shape == VALUES.shape
    assert np.array_equal(m, VALUES)
    # every layout numpy writes: Fortran order, big-endian, 0-d, bool
    with np.load(stored_npz) as expected:
        for name in ("cube", "big", "scalar", "flags"):
            got = zconvert.open_memmap(stored_npz, name)
            assert isinstance(got, np.memmap), name
            assert got.dtype == expected[name].dtype and got.shape == expected[name].shape
            assert np.array_equal(got, expected[name]), name
    assert zconvert.open_memmap(stored_npz, "cube").flags.f_contiguous


def test_member_may_be_named_with_or_without_npy(stored_npz):
    a = zconvert.open_memmap(stored_npz, "values.npy")
    b = zconvert.open_memmap(stored_npz, "values")
    assert a.offset == b.offset


def test_raw_stored_zip_member_maps_through_dtype_and_shape(tmp_path):
    raw = RNG.random((300, 4), dtype=np.float32)
    stamps = np.arange(77, dtype="<i8")
    path = make_zip(
        tmp_path / "raw.zip", {"a.bin": raw, "t/stamps.bin": stamps}, compression=zipfile.ZIP_STORED
    )
    m = zconvert.open_memmap(path, "a")  # the defaults of convert: <f4, (-1, 4)
    assert isinstance(m, np.memmap) and np.array_equal(m, raw)
    t = zconvert.open_memmap(path, "t/stamps", dtype="<i8", shape=[-1])
    assert t.dtype == np.int64 and np.array_equal(t, stamps)
    with pytest.raises(zconvert.ArchiveError, match="not a multiple of the record size 56"):
        zconvert.open_memmap(path, "a", shape=(-1, 7), dtype="<f8")


@pytest.mark.parametrize("name", ["packed", "packed data (v2)"])
def test_deflated_member_is_refused_with_the_command_that_makes_it_mappable(tmp_path, name):
    path = tmp_path / f"{name}.npz"
    np.savez_compressed(path, values=VALUES)
    with pytest.raises(zconvert.StoreError) as info:
        zconvert.open_memmap(path, "values")
    message = str(info.value)
    assert "values.npy is compressed (deflate)" in message
    command = message.split("`")[1]
    assert command == f"zconvert convert {shlex.quote(str(path))} -o OUT --format hdf5 --codec none"
    assert f"zconvert.open_memmap({f'OUT/{name}.h5'!r}, 'values')" in message
    # ... and that command, pasted into a shell as it is, does make it mappable
    zconvert_cli = f"{shlex.quote(sys.executable)} -m zconvert"
    pasted = command.replace("zconvert", zconvert_cli, 1)
    subprocess.run(pasted, shell=True, cwd=tmp_path, check=True, capture_output=True)
    assert np.array_equal(zconvert.open_memmap(tmp_path / "OUT" / f"{name}.h5", "values"), VALUES)


def test_archive_of_several_members_needs_a_name(stored_npz):
    with pytest.raises(zconvert.StoreError, match=r"holds 5 members .*; pass name="):
        zconvert.open_memmap(stored_npz)
    with pytest.raises(zconvert.StoreError, match="no member named 'nope'"):
        zconvert.open_memmap(stored_npz, "nope")
    assert zconvert.array_names(stored_npz) == sorted(["values", "cube", "big", "scalar", "flags"])


def test_verify_checks_the_members_crc32_on_request_only(tmp_path):
    path = make_zip(tmp_path / "a.zip", {"a.bin": float_rows(500)}, compression=zipfile.ZIP_STORED)
    offset = zconvert.open_memmap(path).offset
    blob = bytearray(path.read_bytes())
    blob[offset + 100] ^= 0xFF  # the data changes, the recorded CRC32 does not
    path.write_bytes(bytes(blob))
    zconvert.open_memmap(path)  # not forced on every open
    with pytest.raises(zconvert.StoreError, match=r"CRC32 .* but the archive records"):
        zconvert.open_memmap(path, verify=True)
    with pytest.raises(zconvert.StoreError, match="CRC32"):
        zconvert.StoreRef(path).memmap(verify=True)


def test_store_ref_of_an_archive_member_pickles_small_and_maps_in_the_receiver(
    tmp_path, stored_npz
):
    ref = zconvert.StoreRef(stored_npz, "values")
    data = pickle.dumps(ref)
    assert len(data) < 300
    back = pickle.loads(data)
    assert back == ref
    assert isinstance(back.memmap(), np.memmap) and np.array_equal(back.read(), VALUES)
    assert isinstance(back.open(), np.memmap)
    path = make_zip(
        tmp_path / "t.zip", {"t.bin": np.arange(9, dtype=">i4")}, compression=zipfile.ZIP_STORED
    )
    raw = pickle.loads(pickle.dumps(zconvert.StoreRef(path, "t", dtype=">i4", shape=[-1])))
    got = raw.read()
    assert got.dtype == np.dtype(">i4") and np.array_equal(got, np.arange(9))


def test_self_extracting_prefix_maps_the_right_bytes(tmp_path):
    path = make_zip(tmp_path / "a.zip", {"a.bin": VALUES}, compression=zipfile.ZIP_STORED)
    sfx = tmp_path / "a.exe"
    sfx.write_bytes(b"MZ" + bytes(5000) + path.read_bytes())  # offsets not fixed
    assert np.array_equal(zconvert.open_memmap(sfx, verify=True), VALUES)


def test_info_zip_stored_member_maps(tmp_path):
    zip_tool = shutil.which("zip")
    if zip_tool is None:
        if os.environ.get("CI"):
            pytest.fail("zip is not installed (scripts/install_system_deps.sh installs it)")
        pytest.skip("zip is not installed")
    VALUES.tofile(tmp_path / "a.bin")
    subprocess.run([zip_tool, "-q", "-0", "out.zip", "a.bin"], cwd=tmp_path, check=True)
    m = zconvert.open_memmap(tmp_path / "out.zip", "a", verify=True)
    assert m.filename == str(tmp_path / "out.zip") and np.array_equal(m, VALUES)


def test_empty_member_maps_to_an_empty_read_only_array(tmp_path):
    path = tmp_path / "e.npz"
    np.savez(path, e=np.zeros((0, 4), dtype=np.float32))
    mm = zconvert.open_memmap(path)  # no bytes to map: an empty array, as in any store
    assert isinstance(mm, np.memmap) and mm.shape == (0, 4) and mm.dtype == np.float32
    assert not mm.flags.writeable and mm.filename is None


def test_store_only_options_are_refused_for_stores(tmp_path):
    path = make_zip(tmp_path / "a.zip", {"a.bin": VALUES})
    zconvert.convert(path, tmp_path / "out", format="hdf5", codec="none", workers=1)
    with pytest.raises(zconvert.StoreError, match=r"apply to ZIP/\.npz members"):
        zconvert.open_memmap(tmp_path / "out" / "a.h5", dtype="<f4")
