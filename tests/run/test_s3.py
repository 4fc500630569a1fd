"""fsspec URLs against a real S3 API server on 127.0.0.1 (moto): S3 in, S3 out, read back."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (Blosc filter for reading)
import numpy as np
import pytest
import zarr

import zconvert
from zconvert.core.convert_options import ConvertOptions
from zconvert.core.storage import discover, is_url, join
from zconvert.stores.manifest import read_manifest

from .._s3 import S3, s3_fixture, s3_server  # noqa: F401  (fixtures)
from ..conftest import corrupt_crc, float_rows, make_zip

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def _seed(tmp_path: Path, s3: S3, n: int = 3, rows: int = 30_000) -> dict[str, np.ndarray]:
    """n archives uploaded under s3://bucket/in/; returns array data by archive stem."""
    data = {}
    for i in range(n):
        arr = float_rows(rows + i, seed=i)
        local = make_zip(tmp_path / "in" / f"sub/a{i}.zip", {f"blob{i}.bin": arr})
        s3.upload(local, f"in/sub/a{i}.zip")
        data[f"a{i}"] = arr
    return data


def _open_zarr_url(url: str, s3: S3) -> zarr.Group:
    store = zarr.storage.FsspecStore.from_url(
        url, storage_options=s3.storage_options, read_only=True
    )
    return zarr.open_group(store, mode="r")


def test_is_url_and_join():
    assert is_url("s3://bucket/x") and is_url("memory://a")
    assert not is_url("/tmp/x") and not is_url("C:\\data") and not is_url("rel/path")
    assert join("s3://b/out/", "a/b.zarr") == "s3://b/out/a/b.zarr"


def test_discover_prefix_glob_and_single_object(tmp_path, s3):
    _seed(tmp_path, s3, n=2)
    s3.upload(make_zip(tmp_path / "x.zip", {"m.bin": float_rows(4)}), "in/other/x.zip")
    opts = s3.storage_options
    assert [rel for _, rel in discover(s3.url("in/"), opts)] == [
        "other/x.zip",
        "sub/a0.zip",
        "sub/a1.zip",
    ]
    assert [rel for _, rel in discover(s3.url("in/sub/*.zip"), opts)] == ["a0.zip", "a1.zip"]
    [(url, rel)] = discover(s3.url("in/sub/a1.zip"), opts)
    assert (url, rel) == (s3.url("in/sub/a1.zip"), "a1.zip")
    with pytest.raises(zconvert.ConfigError, match="does not exist"):
        discover(s3.url("nothing/here.zip"), opts)


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_s3_in_zarr_s3_out_reads_back_with_zarr_and_xarray(tmp_path, s3, zarr_format):
    xr = pytest.importorskip("xarray")
    data = _seed(tmp_path, s3)
    out = s3.url("out")
    report = zconvert.convert(
        s3.url("in/"),
        out,
        storage_options=s3.storage_options,
        zarr_format=zarr_format,
        chunk_rows=8192,
        executor="local",
        workers=2,
    )
    assert report.ok, report.failed
    assert report.output == out
    for stem, arr in data.items():
        group = _open_zarr_url(f"{out}/sub/{stem}.zarr", s3)
        np.testing.assert_array_equal(group[f"blob{stem[1:]}"][...], arr)
        ds = xr.open_zarr(
            f"{out}/sub/{stem}.zarr", storage_options=s3.storage_options, consolidated=False
        )
        np.testing.assert_array_equal(ds[f"blob{stem[1:]}"].values, arr)
    manifest = read_manifest(out, s3.storage_options)
    assert [e["relpath"] for e in manifest["stores"]] == [f"sub/a{i}.zarr" for i in range(3)]
    assert all(e["status"] == "converted" for e in manifest["stores"])
    # stored_bytes is counted from what was written, without listing the bucket
    assert all(a["stored_bytes"] > 0 for e in manifest["stores"] for a in e["arrays"])
    assert "testing" not in json.dumps(manifest)  # credentials never reach the manifest


def test_s3_glob_in_local_out(tmp_path, s3):
    data = _seed(tmp_path, s3)
    report = zconvert.convert(
        s3.url("in/sub/*.zip"), tmp_path / "out", storage_options=s3.storage_options
    )
    assert report.ok, report.failed
    for stem, arr in data.items():
        np.testing.assert_array_equal(zconvert.open(tmp_path / "out" / f"{stem}.zarr")[...], arr)
    attrs = dict(zarr.open_group(tmp_path / "out" / "a0.zarr", mode="r").attrs)
    assert attrs["source_archive"] == s3.url("in/sub/a0.zip")
    assert attrs["source_size"] > 0 and attrs["source_mtime_ns"] > 0


def test_local_in_hdf5_s3_out_uploaded_whole(tmp_path, s3):
    data = _seed(tmp_path, s3)
    report = zconvert.convert(
        tmp_path / "in",
        s3.url("h5out"),
        format="hdf5",
        storage_options=s3.storage_options,
        workers=2,
    )
    assert report.ok, report.failed
    assert s3.keys("h5out") == [
        f"{s3.bucket}/h5out/manifest.json",
        *(f"{s3.bucket}/h5out/sub/a{i}.h5" for i in range(3)),
    ]
    for stem, arr in data.items():
        with s3.fs().open(f"{s3.bucket}/h5out/sub/{stem}.h5", "rb") as f:
            with h5py.File(f, "r") as h5:
                np.testing.assert_array_equal(h5[f"blob{stem[1:]}"][...], arr)


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_failed_archive_leaves_nothing_on_s3(tmp_path, s3, fmt):
    data = _seed(tmp_path, s3, n=2)
    bad = make_zip(tmp_path / "bad.zip", {"blob.bin": float_rows(40_000, seed=9)})
    corrupt_crc(bad, "blob.bin")  # noticed only at the end, after every chunk was written
    s3.upload(bad, "in/sub/bad.zip")
    report = zconvert.convert(
        s3.url("in/sub/"),
        s3.url("out"),
        format=fmt,
        chunk_rows=4096,
        storage_options=s3.storage_options,
        workers=2,
    )
    assert [r.relpath.split(".")[0] for r in report.failed] == ["bad"]
    assert "CRC32" in report.failed[0].error
    assert len(report.converted) == len(data)
    assert not [k for k in s3.keys("out") if "/bad." in k]
    stores = read_manifest(s3.url("out"), s3.storage_options)["stores"]
    assert {e["relpath"].split(".")[0]: e["status"] for e in stores} == {
        "a0": "converted",
        "a1": "converted",
        "bad": "failed",
    }


def test_zarr_store_invisible_until_commit_writes_root_metadata_last(s3):
    from zconvert.sinks import ArraySpec, open_sink

    url = s3.url("pending/x.zarr")
    sink = open_sink(url, ConvertOptions(codec="none"), {"k": 1}, s3.storage_options)
    spec = ArraySpec("sub/a", (100, 4), "<f4", (50, 4), ("row", "column"), {})
    handle = sink.add_array(spec)
    sink.write_slab(handle, 0, np.ones((100, 4), dtype="<f4"))
    sink.finish_array(handle)
    keys = s3.keys("pending")  # chunks, or none yet (PUTs are sent a batch at a time)
    assert not [k for k in keys if k.endswith("zarr.json")]
    with pytest.raises(zarr.errors.GroupNotFoundError):
        _open_zarr_url(url, s3)
    sink.commit()
    group = _open_zarr_url(url, s3)
    assert dict(group.attrs) == {"k": 1}
    np.testing.assert_array_equal(group["sub/a"][...], 1)
    written = [k for k in s3.keys("pending") if k.endswith("zarr.json")]
    assert len(written) == 3  # root group, intermediate group, array


def test_rewriting_a_store_removes_the_old_one_first(tmp_path, s3):
    _seed(tmp_path, s3, n=1)
    out = s3.url("out")
    zconvert.convert(s3.url("in/"), out, storage_options=s3.storage_options, chunk_rows=1000)
    before = s3.keys("out/sub/a0.zarr")
    zconvert.convert(s3.url("in/"), out, storage_options=s3.storage_options, chunk_rows=10_000)
    after = s3.keys("out/sub/a0.zarr")
    assert len(before) > len(after)  # no stale chunks of the old chunking left behind
    assert _open_zarr_url(f"{out}/sub/a0.zarr", s3)["blob0"].chunks == (10_000, 4)


def test_sharded_zarr_on_s3_reads_back_with_zarr_python(tmp_path, s3):
    data = _seed(tmp_path, s3, n=1, rows=2500)
    out = s3.url("out")
    report = zconvert.convert(
        s3.url("in/"), out, storage_options=s3.storage_options, chunk_rows=100, shard_rows=1000
    )
    assert report.ok, report.failed
    array = _open_zarr_url(f"{out}/sub/a0.zarr", s3)["blob0"]
    assert (array.chunks, array.shards) == ((100, 4), (1000, 4))
    np.testing.assert_array_equal(array[...], data["a0"])
    shards = sorted(k.split("blob0/")[1] for k in s3.keys("out/sub/a0.zarr") if "/c/" in k)
    assert shards == ["c/0/0", "c/1/0", "c/2/0"]  # one object per shard


_CHILD = textwrap.dedent(
    """
    import json, sys
    import zconvert, zarr, s3fs
    from zconvert.run.worker import init_process
    from zconvert.core.storage import source_stat

    def status(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) * 1024

    url, out, opts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    init_process()
    source_stat(url, opts)  # connection and event loop set up before the baseline
    base = status("VmRSS")
    report = zconvert.convert(
        url, out, storage_options=opts, executor="serial", codec="none",
        slab_bytes=2 << 20, chunk_rows=65536,
    )
    assert report.ok, report.failed
    print(json.dumps({"peak": status("VmHWM"), "base": base}))
    """
)


@pytest.mark.slow
def test_s3_archive_is_streamed_in_bounded_memory(tmp_path, s3):
    rows = 6_000_000  # 96 MB of float32 that does not compress
    local = make_zip(tmp_path / "big.zip", {"big.bin": float_rows(rows)})
    url = s3.upload(local, "big/big.zip")
    local.unlink()
    archive_bytes = s3.fs().size(f"{s3.bucket}/big/big.zip")
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, url, str(tmp_path / "out"), json.dumps(s3.storage_options)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    measured = json.loads(proc.stdout.strip().splitlines()[-1])
    grown = measured["peak"] - measured["base"]
    # a slab, a few range-request blocks and chunks (about 31 MB here): not the 86 MB archive
    assert grown < archive_bytes * 0.5, (grown, archive_bytes)
    arr = zconvert.open(tmp_path / "out" / "big.zarr")
    assert arr.shape == (rows, 4)


def test_orphans_and_failures_on_s3_leave_every_view(tmp_path, s3):
    _seed(tmp_path, s3, n=3, rows=1000)
    out, opts = s3.url("out"), s3.storage_options
    zconvert.convert(s3.url("in/"), out, storage_options=opts)
    s3.fs().rm(s3.url("in/sub/a1.zip"))  # deleted
    s3.fs().pipe(s3.url("in/sub/a2.zip"), b"no longer a zip")  # replaced by a broken one
    report = zconvert.convert(s3.url("in/"), out, storage_options=opts)
    assert report.orphans == [f"{out}/sub/a1.zarr"]
    assert "earlier store sub/a2.zarr was removed" in report.failed[0].error
    assert not s3.keys("out/sub/a2.zarr")
    stores = read_manifest(out, opts)["stores"]
    assert {e["relpath"]: e["status"] for e in stores} == {
        "sub/a0.zarr": "skipped",  # resumed: current on S3
        "sub/a1.zarr": "orphan",
        "sub/a2.zarr": "failed",
    }
    report = zconvert.convert(s3.url("in/"), out, storage_options=opts, prune=True)
    assert report.pruned == [f"{out}/sub/a1.zarr"] and not s3.keys("out/sub/a1.zarr")
    stores = read_manifest(out, opts)["stores"]
    assert [e["relpath"] for e in stores] == ["sub/a0.zarr", "sub/a2.zarr"]


def test_archive_metadata_on_s3_is_skipped_as_on_disk(tmp_path, s3):
    _seed(tmp_path, s3, n=1, rows=100)
    apple = tmp_path / "._a0.zip"
    apple.write_bytes(b"\x00\x05\x16\x07" + bytes(4092))  # an AppleDouble twin, not a ZIP
    s3.upload(apple, "in/sub/._a0.zip")
    s3.upload(apple, "in/__MACOSX/sub/._a0.zip")
    report = zconvert.convert(s3.url("in/"), s3.url("out"), storage_options=s3.storage_options)
    assert report.ok and [r.relpath for r in report.results] == ["sub/a0.zarr"]
    assert [rel for _, rel in discover(s3.url("in/"), s3.storage_options)] == ["sub/a0.zip"]


@pytest.mark.parametrize("command", ["convert", "plan"])
def test_output_to_a_missing_bucket_is_refused_before_any_work(tmp_path, s3, command):
    _seed(tmp_path, s3, n=1, rows=100)
    options = json.dumps(s3.storage_options)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "zconvert",
            command,
            s3.url("in/"),
            "-o",
            "s3://no-such-bucket/out",
            "--storage-options",
            options,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "bucket no-such-bucket does not exist" in lines[0]
    assert "Traceback" not in proc.stderr and "failed:" not in proc.stderr


@pytest.mark.parametrize(("fmt", "zarr_format"), [("zarr", 3), ("zarr", 2), ("hdf5", 3)])
def test_rerun_on_s3_skips_current_stores_and_redoes_the_rest(tmp_path, s3, fmt, zarr_format):
    data = _seed(tmp_path, s3, n=3, rows=1000)
    out, opts = s3.url("out"), s3.storage_options
    run = dict(format=fmt, zarr_format=zarr_format, storage_options=opts)
    assert len(zconvert.convert(s3.url("in/"), out, **run).converted) == 3
    again = zconvert.convert(s3.url("in/"), out, **run)
    assert len(again.skipped) == 3 and not again.converted  # resumed from the manifest alone
    # a replaced archive (a new ETag) is redone; so is a store whose root document is gone
    # (as after a run killed before its commit): its chunks alone are not a store
    replaced = make_zip(tmp_path / "new.zip", {"blob1.bin": float_rows(7, seed=9)})
    s3.upload(replaced, "in/sub/a1.zip")
    suffix = ".h5" if fmt == "hdf5" else ".zarr"
    if fmt == "zarr":
        root = "zarr.json" if zarr_format == 3 else ".zgroup"
        s3.fs().rm(f"{s3.bucket}/out/sub/a2{suffix}/{root}")
    third = zconvert.convert(s3.url("in/"), out, **run)
    redone = sorted(r.relpath for r in third.converted)
    assert redone == (
        [f"sub/a1{suffix}", f"sub/a2{suffix}"] if fmt == "zarr" else [f"sub/a1{suffix}"]
    )
    assert len(third.skipped) == 3 - len(redone)
    assert data  # the seed's arrays were uploaded


def test_local_archives_to_s3_rerun_skips(tmp_path, s3):
    folder = tmp_path / "local"
    for i in range(2):
        make_zip(folder / f"b{i}.zip", {f"m{i}.bin": float_rows(100, seed=i)})
    out = s3.url("out-local")
    zconvert.convert(folder, out, storage_options=s3.storage_options)
    again = zconvert.convert(folder, out, storage_options=s3.storage_options)
    assert len(again.skipped) == 2 and not again.converted


def test_plan_on_s3_says_what_convert_does(tmp_path, s3):
    from zconvert.run.config import build_config
    from zconvert.run.dryrun import plan_run

    _seed(tmp_path, s3, n=2, rows=100)
    out, opts = s3.url("out"), s3.storage_options
    config = build_config(inputs=[s3.url("in/")], output=out, storage_options=opts)
    assert [p.action for p in plan_run(config)] == ["convert", "convert"]
    zconvert.convert(s3.url("in/"), out, storage_options=opts)
    assert [p.action for p in plan_run(config)] == ["skip", "skip"]
    assert len(zconvert.convert(s3.url("in/"), out, storage_options=opts).skipped) == 2
