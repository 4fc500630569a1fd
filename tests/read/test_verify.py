"""verify: re-read every array and check CRC32 and size against the store, manifest and source."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

import zconvert
from zconvert.sinks.codecs import PRESETS

from ..conftest import float_rows, make_zip
from ..zipread.test_hostile import patch_member


def zverify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zconvert", "verify", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("codec", list(PRESETS))
@pytest.mark.parametrize(("fmt", "zarr_format"), [("zarr", 3), ("zarr", 2), ("hdf5", 3)])
def test_fresh_output_verifies_clean(tmp_path, fmt, zarr_format, codec):
    make_zip(tmp_path / "in" / "a.zip", {"x.bin": float_rows(10_007), "d/y.bin": float_rows(3)})
    make_zip(tmp_path / "in" / "b.zip", {"empty.bin": b""})
    report = zconvert.convert(
        tmp_path / "in",
        tmp_path / "out",
        format=fmt,
        zarr_format=zarr_format,
        codec=codec,
        chunk_rows=1000,
        executor="serial",
    )
    assert report.ok, report.failed
    assert zconvert.verify(tmp_path / "out", sources=True) == []
    assert zconvert.verify([r.store for r in report.results]) == []


def test_big_endian_dtype_verifies_against_the_raw_bytes(tmp_path):
    data = float_rows(5000).astype(">f8")
    make_zip(tmp_path / "in" / "a.zip", {"x.bin": data})
    report = zconvert.convert(tmp_path / "in", tmp_path / "out", dtype=">f8", executor="serial")
    assert report.ok, report.failed
    assert zconvert.verify(tmp_path / "out", sources=True) == []


def _converted(tmp_path: Path, **options) -> Path:  # type: ignore[no-untyped-def]
    make_zip(tmp_path / "in" / "a.zip", {"x.bin": float_rows(10_000)})
    make_zip(tmp_path / "in" / "b.zip", {"x.bin": float_rows(10_000, seed=1)})
    report = zconvert.convert(
        tmp_path / "in", tmp_path / "out", codec="none", executor="serial", **options
    )
    assert report.ok
    return tmp_path / "out"


def _flip(path: Path, offset: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_a_flipped_byte_in_a_zarr_chunk_is_one_line_and_exit_1(tmp_path):
    out = _converted(tmp_path, chunk_rows=1000)
    _flip(out / "a.zarr" / "x" / "c" / "3" / "0", 100)
    proc = zverify(str(out))
    assert proc.returncode == 1
    (line,) = proc.stdout.splitlines()
    assert line.startswith(f"{out / 'a.zarr'}: x: CRC32 ")
    assert "but the source member had" in line
    assert "1 problem" in proc.stderr


@pytest.mark.parametrize("codec", ["none", "blosc-lz4"])
def test_sharded_output_verifies_clean(tmp_path, codec):
    make_zip(tmp_path / "in" / "a.zip", {"x.bin": float_rows(10_007), "d/y.bin": float_rows(3)})
    report = zconvert.convert(
        tmp_path / "in",
        tmp_path / "out",
        codec=codec,
        chunk_rows=1000,
        shard_rows=4000,
        executor="serial",
    )
    assert report.ok, report.failed
    assert zconvert.verify(tmp_path / "out", sources=True) == []
    assert zverify(str(tmp_path / "out")).returncode == 0


def test_a_flipped_byte_in_a_shard_or_its_index_is_found(tmp_path):
    out = _converted(tmp_path, chunk_rows=1000, shard_rows=4000)
    _flip(out / "a.zarr" / "x" / "c" / "1" / "0", 100)  # chunk data: the CRC32 differs
    (problem,) = zconvert.verify(out / "a.zarr")
    assert problem.startswith(f"{out / 'a.zarr'}: x: CRC32 ")
    shard = out / "b.zarr" / "x" / "c" / "2" / "0"  # the index: its CRC32C fails
    _flip(shard, shard.stat().st_size - 10)
    (problem,) = zconvert.verify(out / "b.zarr")
    assert problem.startswith(f"{out / 'b.zarr'}: x: cannot be read")


def test_a_flipped_byte_in_an_hdf5_dataset_is_found(tmp_path):
    out = _converted(tmp_path, format="hdf5")
    with h5py.File(out / "b.h5", "r") as f:
        offset = f["x"].id.get_offset()
    _flip(out / "b.h5", offset + 5000)
    problems = zconvert.verify(out / "b.h5")
    assert len(problems) == 1 and problems[0].startswith(f"{out / 'b.h5'}: x: CRC32")
    assert zverify(str(out / "a.h5")).returncode == 0


def test_missing_store_and_manifest_disagreement_are_problems(tmp_path):
    out = _converted(tmp_path)
    import shutil

    shutil.rmtree(out / "b.zarr")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["stores"][0]["arrays"][0]["crc32"] ^= 1
    (out / "manifest.json").write_text(json.dumps(manifest))
    problems = zconvert.verify(out)
    assert problems == [
        f"{out / 'a.zarr'}: x: store attributes (crc32, nbytes) = "
        f"{manifest['stores'][0]['arrays'][0]['crc32'] ^ 1}, 160000 but the manifest records "
        f"{manifest['stores'][0]['arrays'][0]['crc32']}, 160000",
        f"{out / 'b.zarr'}: listed in the manifest but missing",
    ]


def test_sources_rereads_the_archives(tmp_path):
    out = _converted(tmp_path)
    assert zconvert.verify(out, sources=True) == []
    archive = tmp_path / "in" / "a.zip"
    with archive.open("r+b") as f:  # corrupt the deflate data in place
        f.seek(200)
        f.write(b"\0" * 64)
    assert zconvert.verify(out) == []  # the stores themselves are fine
    problems = zconvert.verify(out, sources=True)
    assert len(problems) == 1
    assert problems[0].startswith(f"{out / 'a.zarr'}: source {archive}: x.bin: ")
    proc = zverify(str(out), "--sources")
    assert proc.returncode == 1 and proc.stdout.splitlines() == problems


def test_sources_notices_an_archive_that_now_records_other_data(tmp_path):
    out = _converted(tmp_path)
    archive = tmp_path / "in" / "b.zip"
    with __import__("zipfile").ZipFile(archive) as zf:
        crc = zf.getinfo("x.bin").CRC
    patch_member(archive, "x.bin", crc=crc ^ 0xFF)
    problems = zconvert.verify(out / "b.zarr", sources=True)
    assert any("the archive now records CRC32" in p for p in problems)


def test_not_a_store_is_a_problem_not_a_crash(tmp_path):
    (tmp_path / "junk").write_text("hello")
    problems = zconvert.verify([tmp_path / "junk", tmp_path / "absent.zarr"])
    assert len(problems) == 2 and all("cannot be opened" in p for p in problems)
    assert zverify(str(tmp_path / "junk")).returncode == 1


VERIFY_MEMORY = textwrap.dedent(
    """
    import sys
    import zconvert, zarr, numpy

    def hwm():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM"):
                return int(line.split()[1]) * 1024

    if __name__ == "__main__":
        zconvert.verify(sys.argv[2])  # warm up imports and caches on a small store
        before = hwm()
        problems = zconvert.verify(sys.argv[1])
        assert problems == [], problems
        print(hwm() - before)
    """
)


@pytest.mark.slow
def test_verify_reads_in_bounded_memory(tmp_path):
    big = np.zeros((8_000_000, 4), np.float32)  # 128 MB; zeros keep the archive small
    big[::1000] = 1.0
    make_zip(tmp_path / "in" / "big.zip", {"x.bin": big})
    make_zip(tmp_path / "small" / "s.zip", {"x.bin": float_rows(10)})
    del big
    zconvert.convert(tmp_path / "in", tmp_path / "out", executor="serial")
    zconvert.convert(tmp_path / "small", tmp_path / "out_small", executor="serial")
    script = tmp_path / "m.py"
    script.write_text(VERIFY_MEMORY)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "out"), str(tmp_path / "out_small")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    growth = int(proc.stdout)
    # Measured: about 26 MiB (an 8 MiB slab, its decoded chunks and a copy), flat in the size.
    assert growth < 48 << 20, f"verify grew peak memory by {growth / 2**20:.0f} MiB on 128 MB"
