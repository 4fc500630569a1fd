"""One large deflated member inflated on several threads (rapidgzip): same bytes, same checks."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

import zconvert
from zconvert.core.errors import ArchiveError
from zconvert.zipread import parallel_inflate
from zconvert.zipread.archive import MemberReader
from zconvert.zipread.members import list_members, open_archive

from ..conftest import float_rows, make_zip

pytestmark = pytest.mark.skipif(not parallel_inflate.available(), reason="rapidgzip missing")


@pytest.fixture
def small_threshold(monkeypatch):
    """Members of a few MB take the parallel path (the real threshold is 64 MiB)."""
    monkeypatch.setattr(parallel_inflate, "PARALLEL_MIN_BYTES", 1 << 20)


def _read_all(path, threads):  # type: ignore[no-untyped-def]
    fileobj, zf = open_archive(str(path))
    with fileobj, zf:
        (member,) = list_members(str(path), zf)
        reader = MemberReader(str(path), fileobj, zf, member, inflate_threads=threads)
        try:
            parallel = reader._raw is None and reader._direct is None
            out = bytearray(member.file_size + 1)
            n = 0
            while True:
                got = reader.readinto(memoryview(out)[n : n + (3 << 20)])
                if not got:
                    break
                n += got
            reader.verify_end()
        finally:
            reader.close()
    return parallel, bytes(out[:n])


def test_parallel_inflate_gives_the_same_bytes(tmp_path, small_threshold):
    data = float_rows(400_000)  # 6.4 MB
    path = make_zip(tmp_path / "a.zip", {"blob.bin": data})
    parallel, raw = _read_all(path, threads=2)
    assert parallel
    assert raw == data.tobytes()
    serial, raw1 = _read_all(path, threads=1)
    assert not serial and raw1 == raw


def test_truncated_member_fails_cleanly_in_parallel(tmp_path, small_threshold):
    path = make_zip(tmp_path / "a.zip", {"blob.bin": float_rows(400_000)})
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("blob.bin")
    blob = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    blob[start + 2_000_000 : start + 2_100_000] = bytes(100_000)  # zeros mid-stream: corrupt
    path.write_bytes(bytes(blob))
    with pytest.raises(ArchiveError) as caught:
        _read_all(path, threads=2)
    assert caught.value.member == "blob.bin"


def test_a_single_large_archive_converts_through_the_parallel_path(tmp_path, small_threshold):
    data = float_rows(400_000)
    make_zip(tmp_path / "in" / "a.zip", {"blob.bin": data})
    report = zconvert.convert(
        tmp_path / "in", tmp_path / "out", format="hdf5", codec="none", parallel_inflate=True
    )
    assert report.ok, report.failed
    np.testing.assert_array_equal(zconvert.open_memmap(report.results[0].store), data)


def test_auto_inflates_in_parallel_only_where_memory_stays_bounded():
    from zconvert.zipread.parallel_inflate import (
        PARALLEL_AUTO_MAX_BYTES,
        PARALLEL_MIN_BYTES,
        threads_for,
    )

    large, huge = PARALLEL_MIN_BYTES, PARALLEL_AUTO_MAX_BYTES + 1
    assert threads_for(large, 2, None) == 2  # auto: large members on spare cores
    assert threads_for(huge, 2, None) == 1  # auto: rapidgzip's index would grow past bounds
    assert threads_for(huge, 2, True) == 2  # asked for explicitly
    assert threads_for(large, 2, False) == 1
    assert threads_for(large - 1, 2, True) == 1  # too small to pay for the threads


@pytest.mark.parametrize("setting", [None, True, False])
def test_one_archive_gets_the_idle_cores_unless_parallel_inflate_is_off(tmp_path, setting):
    import os

    from zconvert.run.config import build_config
    from zconvert.run.convert import _with_spare_cores
    from zconvert.run.task_list import task_list

    make_zip(tmp_path / "in" / "a.zip", {"blob.bin": float_rows(1000)})
    options = {} if setting is None else {"parallel_inflate": setting}
    config = build_config(
        None, inputs=[str(tmp_path / "in")], output=str(tmp_path / "out"), codec="none", **options
    )
    assert config.options.parallel_inflate is setting  # unset means auto (None)
    (task,) = _with_spare_cores(task_list(config), "serial", None)
    expected = 1 if setting is False else max(1, os.cpu_count() or 1)
    assert task.options.inflate_threads == expected
