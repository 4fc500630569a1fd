"""Every command and reader by URL, against a real S3 API server on 127.0.0.1 (moto): a run's
output on S3 is inspected, verified, opened, handed around as refs and stacked with dask as a
folder is, for Zarr 3, Zarr 2 and HDF5; bad places are refused in one line, exit 2."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import zconvert
from zconvert.core.errors import ConfigError, StoreError
from zconvert.stores.manifest import read_manifest

from .._s3 import S3, s3_fixture, s3_server  # noqa: F401  (fixtures)
from ..conftest import float_rows, make_zip

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

LAYOUTS = {
    "zarr3": {"format": "zarr", "zarr_format": 3},
    "zarr2": {"format": "zarr", "zarr_format": 2},
    "hdf5": {"format": "hdf5"},
}


def _env(s3: S3) -> dict[str, str]:
    """The environment a user on S3 sets: endpoint and credentials, no storage_options."""
    return {
        **os.environ,
        "AWS_ENDPOINT_URL": s3.endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def _cli(s3: S3, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zconvert", *args],
        capture_output=True,
        text=True,
        env=_env(s3),
        timeout=240,
    )


def _run_on_s3(
    tmp_path: Path, s3: S3, layout: str, n: int = 3
) -> tuple[str, dict[str, np.ndarray]]:
    data = {}
    for i in range(n):
        arr = float_rows(20_000 + i, seed=i)
        local = make_zip(tmp_path / "in" / f"sub/a{i}.zip", {f"blob{i}.bin": arr})
        s3.upload(local, f"in/sub/a{i}.zip")
        data[f"sub/a{i}"] = arr
    out = s3.url("out")
    report = zconvert.convert(
        s3.url("in/"), out, storage_options=s3.storage_options, chunk_rows=5000, **LAYOUTS[layout]
    )
    assert report.ok and len(report.converted) == n
    return out, data


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_readers_open_a_run_on_s3_as_they_open_a_folder(tmp_path, s3, layout):
    out, data = _run_on_s3(tmp_path, s3, layout)
    opts = s3.storage_options
    suffix = ".h5" if layout == "hdf5" else ".zarr"
    store = f"{out}/sub/a1{suffix}"
    assert zconvert.array_names(store, storage_options=opts) == ["blob1"]
    array = zconvert.open(store, storage_options=opts)
    np.testing.assert_array_equal(array[:], data["sub/a1"])
    if layout == "hdf5":
        array.file.close()

    refs = zconvert.refs(out, storage_options=opts)
    assert [r.store for r in refs] == [f"{out}/sub/a{i}{suffix}" for i in range(3)]
    # A ref carries no credentials: its pickle holds the URL and the name only.
    blob = pickle.dumps(refs[2])
    assert b"testing" not in blob and pickle.loads(blob) == refs[2]
    np.testing.assert_array_equal(refs[2].read(storage_options=opts), data["sub/a2"])

    stacked = zconvert.open_all(out, storage_options=opts)
    expected = np.concatenate([data[f"sub/a{i}"] for i in range(3)])
    np.testing.assert_array_equal(stacked.compute(), expected)

    with pytest.raises(StoreError, match=r"cannot be memory-mapped.*local files"):
        zconvert.open_memmap(store)


def test_a_ref_reopens_by_url_in_another_process_with_the_environments_credentials(tmp_path, s3):
    out, data = _run_on_s3(tmp_path, s3, "zarr3", n=1)
    ref = zconvert.refs(out, storage_options=s3.storage_options)[0]
    child = (
        "import pickle, sys, numpy as np\n"
        "ref = pickle.loads(sys.stdin.buffer.read())\n"
        "print(float(np.asarray(ref.read()).sum()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", child],
        input=pickle.dumps(ref),
        capture_output=True,
        env=_env(s3),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert float(done.stdout) == pytest.approx(
        float(data["sub/a0"].sum(dtype=np.float64)), rel=1e-5
    )


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_inspect_and_verify_by_url_on_the_command_line(tmp_path, s3, layout):
    out, _ = _run_on_s3(tmp_path, s3, layout)
    done = _cli(s3, "inspect", out, "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["kind"] == "output" and info["counts"]["converted"] == 3
    assert info["output"] == out and info["stores"][0]["store"].startswith(out + "/sub/")

    store = info["stores"][0]["store"]
    done = _cli(s3, "inspect", store, "--json")
    assert done.returncode == 0, done.stderr
    single = json.loads(done.stdout)
    assert single["kind"] == "store" and single["arrays"][0]["name"] == "blob0"
    expected_format = {"zarr3": "zarr 3", "zarr2": "zarr 2", "hdf5": "hdf5"}[layout]
    assert single["format"] == expected_format

    for args in ([out], [out, "--sources"], [store]):
        done = _cli(s3, "verify", *args)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "0 problems" in done.stderr


@pytest.mark.parametrize("layout", ["zarr3", "hdf5"])
def test_damage_on_s3_is_found_marked_and_redone_by_a_plain_rerun(tmp_path, s3, layout):
    out, data = _run_on_s3(tmp_path, s3, layout)
    fs, opts = s3.fs(), s3.storage_options
    if layout == "hdf5":
        key = f"{s3.bucket}/out/sub/a1.h5"
        raw = bytearray(fs.cat_file(key))
        raw[-5000:-4000] = bytes(1000)  # inside the last rows' bytes
        fs.pipe_file(key, bytes(raw))
    else:
        key = f"{s3.bucket}/out/sub/a1.zarr/blob1/c/1/0"
        fs.pipe_file(key, b"not a chunk")
    problems = zconvert.verify(out, storage_options=opts)
    assert problems and all("sub/a1" in p for p in problems), problems
    entries = {e["relpath"]: e for e in read_manifest(out, opts)["stores"]}
    assert entries[f"sub/a1{'.h5' if layout == 'hdf5' else '.zarr'}"]["status"] == "damaged"

    report = zconvert.convert(
        s3.url("in/"), out, storage_options=opts, chunk_rows=5000, **LAYOUTS[layout]
    )
    assert [Path(r.relpath).stem for r in report.converted] == ["a1"]
    assert zconvert.verify(out, storage_options=opts) == []
    np.testing.assert_array_equal(
        zconvert.refs(out, storage_options=opts)[1].read(storage_options=opts), data["sub/a1"]
    )


def test_a_run_killed_before_its_manifest_is_inspected_resumed_and_verified(tmp_path, s3):
    out, _ = _run_on_s3(tmp_path, s3, "zarr3")
    fs = s3.fs()
    # What a run killed after two stores leaves: no manifest, one store never committed.
    fs.rm(f"{s3.bucket}/out/manifest.json")
    fs.rm(f"{s3.bucket}/out/sub/a2.zarr", recursive=True)
    done = _cli(s3, "inspect", out, "--json")
    assert done.returncode == 1, done.stderr  # shown, and not finished
    info = json.loads(done.stdout)
    assert not info["complete"] and info["counts"]["found"] == 2
    done = _cli(s3, "verify", out)
    assert done.returncode == 1 and "did not finish" in done.stdout, done.stdout + done.stderr
    assert sorted(s["relpath"] for s in info["stores"]) == ["sub/a0.zarr", "sub/a1.zarr"]

    done = _cli(s3, "convert", s3.url("in/"), "-o", out, "--chunk-rows", "5000", "--json")
    assert done.returncode == 0, done.stderr
    # The workers check each store itself, as in a folder: the two complete ones are kept.
    report = json.loads(done.stdout)
    assert report["ok"] and (report["converted"], report["skipped"]) == (1, 2)
    assert [r["relpath"] for r in report["results"] if r["status"] == "converted"] == [
        "sub/a2.zarr"
    ]
    done = _cli(s3, "verify", out)
    assert done.returncode == 0 and "0 problems" in done.stderr, done.stderr
    assert len(zconvert.refs(out, storage_options=s3.storage_options)) == 3


@pytest.mark.parametrize("command", ["inspect", "verify"])
def test_a_missing_bucket_is_one_line_and_exit_2(s3, command):
    done = _cli(s3, command, "s3://no-such-bucket-zconvert/out")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no-such-bucket-zconvert" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_an_unreachable_endpoint_is_one_line_and_exit_2(s3):
    env = {**_env(s3), "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}  # nothing listens there
    env["AWS_MAX_ATTEMPTS"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "zconvert", "inspect", s3.url("out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "cannot reach" in done.stderr


def test_the_api_refuses_bad_places_and_missing_stores_in_one_line(s3):
    opts = s3.storage_options
    with pytest.raises(ConfigError, match="does not exist"):
        zconvert.refs("s3://no-such-bucket-zconvert/out", storage_options=opts)
    with pytest.raises(StoreError, match=r"no manifest\.json"):
        zconvert.refs(s3.url("nothing-here"), storage_options=opts)
    with pytest.raises(StoreError, match="no such store"):
        zconvert.open(s3.url("nothing-here/a.zarr"), "x", storage_options=opts)


def test_a_protocol_without_its_package_is_one_line_and_exit_2(s3):
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("gcsfs is installed here")
    for command in ("inspect", "verify"):
        done = _cli(s3, command, "gs://bucket/out")
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "needs a package" in done.stderr


def test_a_missing_store_in_a_bucket_is_one_line_and_exit_1(s3):
    done = _cli(s3, "inspect", s3.url("nothing/here.zarr"))
    assert done.returncode == 1, done.stderr
    assert (
        done.stderr.strip()
        == f"zconvert: error: {s3.url('nothing/here.zarr')}: no such store or run folder"
    )


def test_a_replaced_object_of_the_same_size_is_redone_whichever_way_it_is_named(tmp_path, s3):
    """The rerun compares an object's size and ETag, from this run's listing when it made
    one: a listing of an earlier run in the same process never stands in for it."""
    _run_on_s3(tmp_path, s3, "zarr3", n=2)
    opts, out = s3.storage_options, s3.url("out2")
    report = zconvert.convert(s3.url("in/sub/"), out, storage_options=opts, chunk_rows=5000)
    assert len(report.converted) == 2  # and this process has listed in/sub/
    other = float_rows(20_001, seed=99)  # a1's row count: the same size, other bytes
    s3.upload(make_zip(tmp_path / "new" / "a1.zip", {"blob1.bin": other}), "in/sub/a1.zip")
    report = zconvert.convert(s3.url("in/sub/a1.zip"), out, storage_options=opts, chunk_rows=5000)
    assert [r.relpath for r in report.converted] == ["a1.zarr"]
    np.testing.assert_array_equal(zconvert.open(f"{out}/a1.zarr", storage_options=opts)[:], other)
    report = zconvert.convert(s3.url("in/sub/a1.zip"), out, storage_options=opts, chunk_rows=5000)
    assert [r.relpath for r in report.skipped] == ["a1.zarr"] and not report.converted
