"""Resume: a rerun skips complete, up-to-date stores and redoes the rest; one run per OUT."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import zconvert
from zconvert.core.errors import ConfigError
from zconvert.run.config import build_config
from zconvert.run.outdir import lock_output
from zconvert.run.resume import store_is_current
from zconvert.run.task_list import task_list

from ..conftest import float_rows, make_zip
from ..zipread.test_hostile import patch_member


def _statuses(report) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {Path(r.archive).stem: r.status for r in report.results}


def _tasks(inp: Path, out: Path, **options):  # type: ignore[no-untyped-def]
    return {
        Path(t.archive).stem: t
        for t in task_list(build_config(None, inputs=[str(inp)], output=str(out), **options))
    }


@pytest.mark.parametrize(("fmt", "zarr_format"), [("zarr", 3), ("zarr", 2), ("hdf5", 3)])
def test_rerun_skips_every_current_store_and_keeps_it_in_the_manifest(
    seed_dir, tmp_path, fmt, zarr_format
):
    out = tmp_path / "out"
    opts = {"format": fmt, "zarr_format": zarr_format, "executor": "serial"}
    first = zconvert.convert(seed_dir, out, **opts)
    assert first.ok
    # Nothing changes, not even the manifest or all.h5: a rerun that finds every store
    # current decides from the manifest and a stat per archive, in the parent (pid 0).
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    manifest = (out / "manifest.json").read_bytes()
    second = zconvert.convert(seed_dir, out, **opts)
    assert set(_statuses(second).values()) == {"skipped"}
    assert {r.pid for r in second.results} == {0}
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
    assert (out / "manifest.json").read_bytes() == manifest
    # decided from the manifest's index: Results without arrays (the manifest keeps them)
    assert [r.arrays for r in second.results] == [()] * 3
    assert [Path(r.store).name for r in zconvert.refs(out)] == [r.relpath for r in first.results]
    # Once one archive changes, the manifest is rewritten: the others recorded as skipped.
    archive = seed_dir / "archive_1.zip"
    os.utime(archive, ns=(time.time_ns(), archive.stat().st_mtime_ns + 1))
    third = zconvert.convert(seed_dir, out, **opts)
    assert _statuses(third) == {
        "archive_0": "skipped",
        "archive_1": "converted",
        "archive_2": "skipped",
    }
    stores = json.loads((out / "manifest.json").read_text())["stores"]
    assert [s["status"] for s in stores] == ["skipped", "converted", "skipped"]
    before = json.loads(json.dumps([r.to_dict()["arrays"] for r in first.results]))
    assert [s["arrays"] for s in stores] == before
    assert zconvert.verify(out) == []


def test_changed_archive_is_redone_and_the_others_skipped(seed_dir, tmp_path):
    out = tmp_path / "out"
    zconvert.convert(seed_dir, out, executor="serial")
    new = float_rows(500, seed=42)
    make_zip(seed_dir / "archive_1.zip", {"blob_1.bin": new})
    touched = seed_dir / "archive_2.zip"
    os.utime(touched, ns=(time.time_ns(), touched.stat().st_mtime_ns + 10**9))
    report = zconvert.convert(seed_dir, out, executor="serial")
    assert _statuses(report) == {
        "archive_0": "skipped",
        "archive_1": "converted",
        "archive_2": "converted",
    }
    np.testing.assert_array_equal(zconvert.open(out / "archive_1.zarr")[...], new)


def test_store_is_current_says_why_not(seed_dir, tmp_path):
    out = tmp_path / "out"
    tasks = _tasks(seed_dir, out)
    assert store_is_current(tasks["archive_0"]) == "store missing"
    zconvert.convert(seed_dir, out, executor="serial")
    assert store_is_current(tasks["archive_0"]) is None
    assert (
        store_is_current(_tasks(seed_dir, out, codec="zstd")["archive_0"])
        == "options changed: codec"
    )
    assert store_is_current(_tasks(seed_dir, out, chunk_rows=100)["archive_0"]) == (
        "options changed: chunk_rows"
    )
    assert "options changed: " in store_is_current(_tasks(seed_dir, out, shape="-1,2")["archive_0"])
    assert store_is_current(_tasks(seed_dir, out, zarr_format=2)["archive_0"]) == (
        "options changed: zarr_format"
    )
    archive = seed_dir / "archive_0.zip"
    os.utime(archive, ns=(time.time_ns(), archive.stat().st_mtime_ns + 1))
    assert store_is_current(tasks["archive_0"]) == "archive modified (modification time changed)"


def test_same_size_and_mtime_but_other_crc_is_redone(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    archive = make_zip(
        inp / "a.zip", {"blob.bin": float_rows(1000)}, compression=zipfile.ZIP_STORED
    )
    zconvert.convert(inp, out, executor="serial")
    stat = archive.stat()
    other = float_rows(1000, seed=5)
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("blob.bin")
    blob = bytearray(archive.read_bytes())
    start = info.header_offset + 30 + len(b"blob.bin")
    blob[start : start + other.nbytes] = other.tobytes()  # same size, other bytes
    archive.write_bytes(bytes(blob))
    patch_member(archive, "blob.bin", crc=zlib.crc32(other.tobytes()))
    os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert archive.stat().st_size == stat.st_size
    task = _tasks(inp, out)["a"]
    assert store_is_current(task) == "blob.bin: CRC32 or size differs from what the store records"
    report = zconvert.convert(inp, out, executor="serial")
    assert _statuses(report) == {"a": "converted"}
    np.testing.assert_array_equal(zconvert.open(out / "a.zarr")[...], other)


def test_options_change_or_overwrite_redoes_everything(seed_dir, tmp_path):
    out = tmp_path / "out"
    zconvert.convert(seed_dir, out, executor="serial")
    assert set(
        _statuses(zconvert.convert(seed_dir, out, executor="serial", overwrite=True)).values()
    ) == {"converted"}
    assert set(
        _statuses(zconvert.convert(seed_dir, out, executor="serial", codec="none")).values()
    ) == {"converted"}
    assert set(
        _statuses(zconvert.convert(seed_dir, out, executor="serial", codec="none")).values()
    ) == {"skipped"}


def test_sharding_on_or_off_is_another_store(seed_dir, tmp_path):
    out = tmp_path / "out"
    zconvert.convert(seed_dir, out, executor="serial", chunk_rows=1000)
    sharded = {"executor": "serial", "chunk_rows": 1000, "shard_rows": 8000}
    tasks = _tasks(seed_dir, out, **sharded)
    assert "options changed" in store_is_current(tasks["archive_0"])
    assert set(_statuses(zconvert.convert(seed_dir, out, **sharded)).values()) == {"converted"}
    assert zconvert.open(out / "archive_0.zarr").shards == (8000, 4)
    report = zconvert.convert(seed_dir, out, **sharded)
    assert set(_statuses(report).values()) == {"skipped"}
    # A skipped store's manifest record is the one its conversion wrote.
    (entry, *_) = json.loads((out / "manifest.json").read_text())["stores"]
    assert entry["arrays"][0]["shards"] == [8000, 4] and entry["arrays"][0]["chunks"] == [1000, 4]
    assert set(
        _statuses(zconvert.convert(seed_dir, out, executor="serial", chunk_rows=1000)).values()
    ) == {"converted"}


def test_missing_store_and_failed_archive_are_redone(seed_dir, tmp_path):
    out = tmp_path / "out"
    zconvert.convert(seed_dir, out, executor="serial")
    import shutil

    shutil.rmtree(out / "archive_2.zarr")
    report = zconvert.convert(seed_dir, out, executor="serial")
    assert _statuses(report)["archive_2"] == "converted"
    assert zconvert.verify(out) == []


def test_leftover_temporaries_of_a_crashed_run_are_removed(seed_dir, tmp_path):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    junk = [
        out / ".archive_0.zarr.zconvert-tmp-123-abcdef01",
        out / "sub" / ".x.h5.zconvert-tmp-9-00000000",
        out / ".manifest.abc.tmp",
    ]
    junk[0].mkdir()
    (junk[0] / "zarr.json").write_text("{}")
    junk[1].write_bytes(b"partial")
    junk[2].write_text("{")
    keep = out / "sub" / "notes.txt"
    keep.write_text("mine")
    report = zconvert.convert(seed_dir, out, executor="serial")
    assert report.ok
    assert not any(p.exists() for p in junk)
    assert keep.read_text() == "mine"


def test_a_second_run_on_a_locked_output_refuses(seed_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with lock_output(str(out)):
        with pytest.raises(ConfigError, match="in use by another zconvert run"):
            zconvert.convert(seed_dir, out, executor="serial")
        proc = subprocess.run(
            [sys.executable, "-m", "zconvert", "convert", str(seed_dir), "-o", str(out)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2
        assert proc.stderr.strip() == (
            f"zconvert: error: output: {out} is in use by another zconvert run "
            f"(pid {os.getpid()}); wait for it to finish or choose another output folder"
        )
    assert not any(out.glob("*.zarr"))
    assert zconvert.convert(seed_dir, out, executor="serial").ok  # released


def test_lock_of_a_killed_run_is_released(seed_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from zconvert.run.outdir import lock_output\n"
            "with lock_output(sys.argv[1]):\n print('locked', flush=True); time.sleep(60)",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(ConfigError, match=f"pid {holder.pid}"):
        zconvert.convert(seed_dir, out, executor="serial")
    holder.kill()
    holder.wait()
    assert zconvert.convert(seed_dir, out, executor="serial").ok


def test_dry_run_reports_current_stores_as_skipped(seed_dir, tmp_path):
    from zconvert.run.config import build_config
    from zconvert.run.dryrun import plan_run

    out = tmp_path / "out"
    zconvert.convert(seed_dir, out, executor="serial")
    (seed_dir / "archive_1.zip").touch()  # a newer mtime: that store must be redone
    planned = {
        Path(p.archive).stem: p
        for p in plan_run(build_config(None, inputs=[str(seed_dir)], output=str(out)))
    }
    assert planned["archive_0"].action == "skip"
    assert planned["archive_0"].reason == "complete and up to date"
    assert planned["archive_1"].action == "convert"
