"""Deflate64 (ZIP method 9) members, as 7-Zip writes them: exact, checked, bounded in memory."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

import zconvert
from tests.conftest import corrupt_crc, float_rows


def _seven_zip() -> str:
    tool = shutil.which("7zz") or shutil.which("7z")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("7-Zip is not installed (scripts/install_system_deps.sh installs it)")
        pytest.skip("7-Zip is not installed")
    return tool


def _deflate64_zip(folder: Path, name: str, files: dict[str, np.ndarray]) -> Path:
    for member, data in files.items():
        (folder / member).parent.mkdir(parents=True, exist_ok=True)
        data.tofile(folder / member)
    archive = folder / name
    subprocess.run(
        [_seven_zip(), "a", "-tzip", "-mm=Deflate64", "-bso0", "-bsp0", name, *files],
        cwd=folder,
        check=True,
    )
    with zipfile.ZipFile(archive) as zf:
        assert {i.compress_type for i in zf.infolist()} == {9}
    return archive


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_deflate64_members_convert_exactly_and_verify_against_the_archive(tmp_path, fmt):
    a, b = float_rows(30_000, seed=1), float_rows(777, seed=2)
    archive = _deflate64_zip(tmp_path, "d64.zip", {"a.bin": a, "sub/b.bin": b})
    report = zconvert.convert(archive, tmp_path / "out", format=fmt, workers=1)
    assert [r.status for r in report.results] == ["converted"]
    store = report.results[0].store
    assert np.array_equal(zconvert.open(store, "a")[...], a)
    assert np.array_equal(zconvert.open(store, "sub/b")[...], b)
    assert zconvert.verify(tmp_path / "out", sources=True) == []


def test_deflate64_crc_mismatch_fails_with_one_line(tmp_path):
    archive = _deflate64_zip(tmp_path, "bad.zip", {"a.bin": float_rows(5000)})
    corrupt_crc(archive, "a.bin")
    report = zconvert.convert(archive, tmp_path / "out", workers=1)
    (result,) = report.results
    assert result.status == "failed" and "CRC32 mismatch" in result.error
    assert not os.path.exists(result.store)


def test_truncated_deflate64_stream_fails_with_one_line(tmp_path):
    archive = _deflate64_zip(tmp_path, "cut.zip", {"a.bin": float_rows(20_000)})
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("a.bin")
    blob = bytearray(archive.read_bytes())
    name_len, extra_len = struct.unpack_from("<HH", blob, info.header_offset + 26)  # local header
    start = info.header_offset + 30 + name_len + extra_len
    blob[start + info.compress_size // 2 : start + info.compress_size] = bytes(
        info.compress_size - info.compress_size // 2
    )
    archive.write_bytes(bytes(blob))
    (result,) = zconvert.convert(archive, tmp_path / "out", workers=1).results
    assert result.status == "failed" and result.member == "a.bin"
    assert "\n" not in result.error


@pytest.mark.slow
def test_deflate64_bomb_like_member_inflates_in_bounded_memory(tmp_path):
    """256 MiB of zeros deflate64 to about 250 kB; inflate64 has no output limit of its own, so
    unbounded pieces would hold the whole member at once."""
    zeros = np.zeros((16 << 20, 4), dtype=np.float32)
    archive = _deflate64_zip(tmp_path, "zeros.zip", {"z.bin": zeros})
    del zeros
    report = zconvert.convert(
        archive, tmp_path / "out", format="hdf5", codec="none", executor="local", workers=1
    )
    (result,) = report.results
    assert result.status == "converted", result.error
    assert result.peak_rss < 160 << 20, result.peak_rss  # the member is 256 MiB
    m = zconvert.open_memmap(result.store, "z")
    assert m.shape == (16 << 20, 4) and not m[::4096].any()
