"""End-to-end conversion: real archives, real worker processes, real zarr and h5py stores."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr

import zconvert
from zconvert.sinks.codecs import PRESETS

from ..conftest import corrupt_crc, float_rows, make_zip

CODECS = list(PRESETS)


def _store_files(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir())


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize(("fmt", "zarr_format"), [("zarr", 3), ("zarr", 2), ("hdf5", 3)])
def test_round_trip_every_format_and_codec(tmp_path, fmt, zarr_format, codec):
    data = float_rows(10_007)  # not a multiple of the chunk: an edge chunk too
    make_zip(tmp_path / "in" / "a.zip", {"blob.bin": data})
    report = zconvert.convert(
        tmp_path / "in",
        tmp_path / "out",
        format=fmt,
        zarr_format=zarr_format,
        codec=codec,
        chunk_rows=1000,
        slab_bytes=3 * 1000 * 16,
        executor="serial",
    )
    assert report.ok, report.failed
    suffix = ".zarr" if fmt == "zarr" else ".h5"
    arr = zconvert.open(tmp_path / "out" / f"a{suffix}")
    np.testing.assert_array_equal(arr[...], data)
    assert arr.dtype == np.dtype("<f4")
    assert report.results[0].arrays[0].chunks == (1000, 4)


def test_zarr3_metadata_names_dimensions_and_source(seed_dir, tmp_path):
    zconvert.convert(seed_dir, tmp_path / "out", executor="serial")
    arr = zarr.open_array(tmp_path / "out" / "archive_1.zarr", path="blob_1", mode="r")
    assert arr.metadata.zarr_format == 3
    assert arr.metadata.dimension_names == ("row", "column")
    attrs = dict(arr.attrs)
    assert attrs["member"] == "blob_1.bin"
    assert attrs["source_archive"] == str(seed_dir / "archive_1.zip")
    assert attrs["nbytes"] == 20_000 * 16
    with zipfile.ZipFile(seed_dir / "archive_1.zip") as zf:
        assert attrs["crc32"] == zf.getinfo("blob_1.bin").CRC
    assert attrs["dtype"] == "<f4" and attrs["zconvert_version"] == zconvert.__version__


def test_zarr2_carries_xarray_dimensions(seed_dir, tmp_path):
    zconvert.convert(seed_dir, tmp_path / "out", zarr_format=2, executor="serial")
    arr = zarr.open_array(tmp_path / "out" / "archive_0.zarr", path="blob_0", mode="r")
    assert arr.metadata.zarr_format == 2
    assert arr.attrs["_ARRAY_DIMENSIONS"] == ["row", "column"]


def test_hdf5_labels_dimensions_and_attributes(seed_dir, tmp_path):
    zconvert.convert(seed_dir, tmp_path / "out", format="hdf5", executor="serial")
    with h5py.File(tmp_path / "out" / "archive_2.h5", "r") as f:
        dset = f["blob_2"]
        assert [d.label for d in dset.dims] == ["row", "column"]
        assert dset.attrs["member"] == "blob_2.bin"
        assert dset.shape == (20_000, 4)


def test_multi_member_archive_keeps_folders_and_names(tmp_path):
    a, b, c = float_rows(500, seed=1), float_rows(700, seed=2), float_rows(500, seed=3)
    make_zip(
        tmp_path / "in" / "multi.zip",
        {"x.bin": a, "sub/y.raw": b, "sub/dir/z.bin": c, "emptydir/": b""},
    )
    for fmt in ("zarr", "hdf5"):
        report = zconvert.convert(tmp_path / "in", tmp_path / fmt, format=fmt, executor="serial")
        assert report.ok, report.failed
        store = report.results[0].store
        assert sorted(zconvert.array_names(store)) == ["sub/dir/z", "sub/y", "x"]
        np.testing.assert_array_equal(zconvert.open(store, "x")[...], a)
        np.testing.assert_array_equal(zconvert.open(store, "sub/y")[...], b)
        np.testing.assert_array_equal(zconvert.open(store, "sub/dir/z")[...], c)
        with pytest.raises(zconvert.StoreError, match="holds 3 arrays"):
            zconvert.open(store)


def test_arrays_of_different_lengths_get_their_own_row_dimension(tmp_path):
    make_zip(tmp_path / "in" / "m.zip", {"a.bin": float_rows(10), "b.bin": float_rows(20)})
    report = zconvert.convert(tmp_path / "in", tmp_path / "out", executor="serial")
    store = report.results[0].store
    assert zconvert.open(store, "a").metadata.dimension_names == ("a_row", "column")
    assert zconvert.open(store, "b").metadata.dimension_names == ("b_row", "column")


@pytest.mark.parametrize(
    "method",
    [zipfile.ZIP_STORED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA],
    ids=["stored", "bzip2", "lzma"],
)
def test_non_deflate_members_convert(tmp_path, method):
    data = float_rows(3000)
    make_zip(tmp_path / "in" / "s.zip", {"blob.bin": data}, compression=method)
    report = zconvert.convert(tmp_path / "in", tmp_path / "out", executor="serial", chunk_rows=512)
    assert report.ok, report.failed
    np.testing.assert_array_equal(zconvert.open(report.results[0].store)[...], data)


def test_zip64_archive_converts(tmp_path):
    data = float_rows(2000)
    path = tmp_path / "in" / "z64.zip"
    path.parent.mkdir()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("blob.bin", "w", force_zip64=True) as member:
            member.write(data.tobytes())
    report = zconvert.convert(tmp_path / "in", tmp_path / "out", executor="serial")
    assert report.ok, report.failed
    np.testing.assert_array_equal(zconvert.open(report.results[0].store)[...], data)


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_bad_crc_fails_that_archive_only_and_leaves_no_store(tmp_path, fmt):
    make_zip(tmp_path / "in" / "good.zip", {"blob.bin": float_rows(4000, seed=1)})
    bad = make_zip(tmp_path / "in" / "bad.zip", {"blob.bin": float_rows(4000, seed=2)})
    corrupt_crc(bad, "blob.bin")
    report = zconvert.convert(
        tmp_path / "in", tmp_path / "out", format=fmt, workers=2, executor="local"
    )
    by_name = {Path(r.archive).name: r for r in report.results}
    assert by_name["good.zip"].status == "converted"
    failed = by_name["bad.zip"]
    assert failed.status == "failed" and failed.member == "blob.bin"
    assert "CRC32 mismatch" in failed.error
    suffix = ".zarr" if fmt == "zarr" else ".h5"
    combined = ["all.h5"] if fmt == "hdf5" else []  # the run's virtual dataset (virtual_dataset.py)
    expected = [*combined, f"good{suffix}", "manifest.json"]
    assert _store_files(tmp_path / "out") == expected  # no temporaries


def test_dtype_and_shape_options(tmp_path):
    data = np.random.default_rng(0).random((300, 2, 3)).astype(">f8")
    make_zip(tmp_path / "in" / "d.zip", {"blob.bin": data})
    report = zconvert.convert(
        tmp_path / "in", tmp_path / "out", dtype=">f8", shape="-1,2,3", executor="serial"
    )
    arr = zconvert.open(report.results[0].store)
    assert arr.shape == (300, 2, 3)
    np.testing.assert_array_equal(arr[...], data)
    fixed = zconvert.convert(
        tmp_path / "in", tmp_path / "out2", dtype=">f8", shape=[301, 2, 3], executor="serial"
    )
    assert "holds 300 rows, not the 301" in fixed.failed[0].error


def test_zero_length_member_becomes_an_empty_array(tmp_path):
    make_zip(tmp_path / "in" / "e.zip", {"empty.bin": b"", "full.bin": float_rows(10)})
    for fmt in ("zarr", "hdf5"):
        report = zconvert.convert(tmp_path / "in", tmp_path / fmt, format=fmt, executor="serial")
        assert report.ok, report.failed
        assert zconvert.open(report.results[0].store, "empty").shape == (0, 4)


def test_pool_runs_in_other_processes_and_returns_small_records(seed_dir, tmp_path):
    report = zconvert.convert(seed_dir, tmp_path / "out", workers=2, executor="local")
    assert report.ok
    pids = {r.pid for r in report.results}
    assert os.getpid() not in pids and all(pids)
    for result in report.results:
        assert len(pickle.dumps(result)) < 2048


def test_stores_mirror_the_input_tree(tmp_path):
    make_zip(tmp_path / "in" / "2024" / "jan" / "a.zip", {"blob.bin": float_rows(10)})
    make_zip(tmp_path / "in" / "2024" / "feb" / "a.zip", {"blob.bin": float_rows(10, seed=5)})
    report = zconvert.convert(tmp_path / "in", tmp_path / "out", format="hdf5", executor="serial")
    assert sorted(r.relpath for r in report.results) == ["2024/feb/a.h5", "2024/jan/a.h5"]
    assert (tmp_path / "out" / "2024" / "jan" / "a.h5").is_file()


def test_two_archives_aiming_at_one_store_are_refused(tmp_path):
    a = make_zip(tmp_path / "x" / "a.zip", {"b.bin": float_rows(1)})
    b = make_zip(tmp_path / "y" / "a.zip", {"b.bin": float_rows(1)})
    with pytest.raises(zconvert.ConfigError, match=r"would both be written to a\.zarr"):
        zconvert.convert([a, b], tmp_path / "out")


def test_manifest_records_every_store(tmp_path, seed_dir):
    bad = make_zip(seed_dir / "bad.zip", {"blob.bin": float_rows(100)})
    corrupt_crc(bad, "blob.bin")
    import json

    zconvert.convert(seed_dir, tmp_path / "out", executor="serial", codec="blosc-zstd")
    doc = json.loads((tmp_path / "out" / "manifest.json").read_text())
    stores = {s["relpath"]: s for s in doc["stores"]}
    assert sorted(stores) == ["archive_0.zarr", "archive_1.zarr", "archive_2.zarr", "bad.zarr"]
    good = stores["archive_0.zarr"]
    assert good["status"] == "converted" and good["error"] is None
    (array,) = good["arrays"]
    assert array["shape"] == [20_000, 4] and array["dtype"] == "<f4"
    assert array["codec"] == "blosc-zstd" and array["chunks"] == [20_000, 4]
    assert isinstance(array["crc32"], int) and array["stored_bytes"] > 0
    assert stores["bad.zarr"]["status"] == "failed"
    assert "CRC32" in stores["bad.zarr"]["error"]


def test_auto_runs_small_jobs_in_process_and_large_ones_in_the_pool(tmp_path, monkeypatch):
    from zconvert.run import convert as run_module

    make_zip(tmp_path / "in" / "a.zip", {"blob.bin": float_rows(1000)})
    make_zip(tmp_path / "in" / "b.zip", {"blob.bin": float_rows(1000, seed=1)})
    small = zconvert.convert(tmp_path / "in", tmp_path / "out1", workers=2)
    assert {r.pid for r in small.results} == {os.getpid()}
    monkeypatch.setattr(run_module, "IN_PROCESS_MAX_BYTES", 1000)  # a threshold, not a mock
    large = zconvert.convert(tmp_path / "in", tmp_path / "out2", workers=2)
    assert os.getpid() not in {r.pid for r in large.results}


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_durable_stores_round_trip(tmp_path, fmt):
    data = float_rows(3000)
    make_zip(tmp_path / "in" / "a.zip", {"blob.bin": data, "sub/b.bin": data})
    report = zconvert.convert(
        tmp_path / "in",
        tmp_path / "out",
        format=fmt,
        durable=True,
        chunk_rows=1000,
        executor="serial",
    )
    assert report.ok, report.failed
    np.testing.assert_array_equal(zconvert.open(report.results[0].store, "sub/b")[...], data)


def test_a_script_without_a_main_guard_converts_once_in_the_pool(seed_dir, tmp_path):
    """Spawned workers must not re-run the caller's script (no `if __name__ == "__main__"`)."""
    import subprocess
    import sys

    script = tmp_path / "convert_all.py"
    script.write_text(
        "import sys, zconvert\n"
        "report = zconvert.convert(sys.argv[1], sys.argv[2], workers=2, executor='local')\n"
        "print('converted', len(report.converted), 'failed', len(report.failed))\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script), str(seed_dir), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines() == ["converted 3 failed 0"]
    assert "Traceback" not in proc.stderr


def test_the_parent_process_never_imports_numpy_for_a_zarr_run_or_its_rerun(seed_dir, tmp_path):
    """Workers do the array work; numpy in the parent costs 0.1 s and a BLAS thread pool that
    spins on the cores the workers need."""
    code = (
        "import sys, zconvert\n"
        "report = zconvert.convert(sys.argv[1], sys.argv[2], workers=2, executor='local', "
        "dtype='float32')\n"
        "assert report.ok and len(report.converted) == 3, report.failed\n"
        "report = zconvert.convert(sys.argv[1], sys.argv[2], dtype='float32')\n"
        "assert report.ok and len(report.skipped) == 3, report.failed\n"
        "assert 'numpy' not in sys.modules, 'numpy imported in the parent'\n"
    )
    run_python(code, seed_dir, tmp_path / "out")


def test_workers_are_forked_only_from_a_single_threaded_parent_without_hdf5(seed_dir, tmp_path):
    """fork starts workers sooner; a parent with threads or HDF5 loaded gets a forkserver."""
    code = (
        "import sys, threading, zconvert\n"
        "from zconvert.run.executors.local import _context\n"
        "assert _context().get_start_method() == 'fork'\n"
        "report = zconvert.convert(sys.argv[1], sys.argv[2], workers=2, executor='local')\n"
        "assert report.ok and len(report.converted) == 3, report.failed\n"
        "stop = threading.Event()\n"
        "t = threading.Thread(target=stop.wait); t.start()\n"
        "assert _context().get_start_method() == 'forkserver'\n"
        "stop.set(); t.join()\n"
        # A joined thread can still be listed in /proc for a moment while the OS ends it.
        "import time\n"
        "deadline = time.monotonic() + 5\n"
        "while _context().get_start_method() != 'fork' and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        "assert _context().get_start_method() == 'fork'\n"
        "import h5py\n"
        "assert _context().get_start_method() == 'forkserver'\n"
        "report = zconvert.convert(sys.argv[1], sys.argv[3], workers=2, executor='local')\n"
        "assert report.ok and len(report.converted) == 3, report.failed\n"
    )
    run_python(code, seed_dir, tmp_path / "a", tmp_path / "b")


def test_the_command_loads_numpy_without_a_blas_thread_pool(seed_dir, tmp_path):
    """An HDF5 run loads numpy in the command's process for all.h5: its OpenBLAS threads spun
    on the cores the last workers needed. A value the user set is kept."""
    import os

    code = (
        "import os, sys, time\n"
        "from zconvert.cli.commands import main\n"
        "assert main(['convert', sys.argv[1], '-o', sys.argv[2], '--format', 'hdf5', "
        "'--workers', '2', '--executor', 'local', '-q']) == 0\n"
        "assert 'numpy' in sys.modules\n"
        "assert os.environ['OPENBLAS_NUM_THREADS'] == sys.argv[3]\n"
        "deadline = time.monotonic() + 5\n"  # the pool's threads can linger a moment
        "while len(os.listdir('/proc/self/task')) > 1 and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        "if sys.argv[3] == '1':\n"
        "    assert len(os.listdir('/proc/self/task')) == 1, os.listdir('/proc/self/task')\n"
    )
    for n, value in enumerate(("1", "2")):  # unset: the command's default; set: the user's
        env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
        if value != "1":
            env["OPENBLAS_NUM_THREADS"] = value
        run_python(code, seed_dir, tmp_path / f"out{n}", value, env=env)


def test_hdf5_workers_never_load_numcodecs(seed_dir, tmp_path):
    """numcodecs (15-25 ms to import) is Zarr's; an HDF5 worker has no use for it."""
    code = (
        "import sys\n"
        "from zconvert.run.worker import convert_task, init_process\n"
        "from zconvert.core.convert_options import ConvertOptions\n"
        "from zconvert.core.records import Task\n"
        "init_process()\n"
        "options = ConvertOptions(format='hdf5', codec='none')\n"
        "store = sys.argv[2] + '/a.h5'\n"
        "result = convert_task(Task(archive=sys.argv[1], store=store, relpath='a.h5', "
        "options=options))\n"
        "assert result.status == 'converted', result.error\n"
        "assert 'numcodecs' not in sys.modules\n"
    )
    run_python(code, sorted(seed_dir.glob("*.zip"))[0], tmp_path)


def run_python(code: str, *args: object, env: dict[str, str] | None = None) -> None:
    """Run `code` in a fresh interpreter (its own parent process) and require exit 0."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
