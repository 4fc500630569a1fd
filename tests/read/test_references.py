"""--format references: a kerchunk reference file per archive over its stored members, read in
place by zarr, xarray and zconvert, with the life of every other format (manifest, resume,
plan, inspect, verify, prune, refs, open_all), locally and on S3 (moto on 127.0.0.1)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import zconvert
from zconvert.read.inspect import inspect_store
from zconvert.run.array_sizes import reference_chunk_rows

from .._s3 import S3, s3_fixture, s3_server  # noqa: F401  (fixtures)
from ..conftest import float_rows, make_zip

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _members() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "values.bin": rng.random((1000, 4), dtype=np.float32),
        "fortran.npy": np.asfortranarray(rng.random((30, 7))),
        "big_endian.npy": np.arange(12, dtype=">i4").reshape(3, 4),  # zeros too
        "scalar.npy": np.float64(3.5),
        "nested/flags.npy": np.array([True, False, True]),
        "empty.npy": np.zeros((0, 3), dtype="<f4"),
    }


def _archive(path: Path, members: dict[str, np.ndarray]) -> Path:
    """A `zip -0` archive: every member stored."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, array in members.items():
            zf.writestr(name, _npy(array) if name.endswith(".npy") else array.tobytes())
    return path


def _references(tmp_path: Path, **options) -> tuple[Path, dict[str, np.ndarray]]:
    members = _members()
    _archive(tmp_path / "in" / "a.zip", members)
    np.savez(tmp_path / "in" / "b.npz", x=np.arange(100.0), y=np.ones((5, 5), dtype="<c8"))
    report = zconvert.convert(
        tmp_path / "in", tmp_path / "out", format="references", chunk_rows=64, **options
    )
    assert report.ok and len(report.converted) == 2, report.failed
    return tmp_path / "out", members


def _expected(members: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name.rsplit(".", 1)[0]: array for name, array in members.items()}


# Reads a reference file with zarr and xarray alone: importing zconvert fails in this process.
_WITHOUT_ZCONVERT = """
import json, sys, warnings
sys.modules["zconvert"] = None
import numpy as np, xarray as xr, zarr
from zarr.storage import FsspecStore
warnings.simplefilter("ignore")
path = sys.argv[1]
store = FsspecStore.from_url("reference://", storage_options={"fo": path}, read_only=True)
group = zarr.open_consolidated(store, zarr_format=2, mode="r")
out = {name: array[...].tolist() for name, array in group.members(max_depth=None)
       if isinstance(array, zarr.Array)}
out["__dtypes__"] = {name: array.dtype.str for name, array in group.members(max_depth=None)
                     if isinstance(array, zarr.Array)}
ds = xr.open_zarr("reference://", storage_options={"fo": path}, zarr_format=2)
out["__xarray__"] = {name: ds[name].values.tolist() for name in ds.data_vars}
out["__xarray_dtypes__"] = {name: ds[name].dtype.str for name in ds.data_vars}
print(json.dumps(out))
"""


def test_a_reference_file_opens_in_zarr_and_xarray_without_zconvert(tmp_path):
    out, members = _references(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", _WITHOUT_ZCONVERT, str(out / "a.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    for name, want in _expected(members).items():
        np.testing.assert_array_equal(
            np.array(got[name], dtype=want.dtype).reshape(want.shape), want
        )
        assert got["__dtypes__"][name] == want.dtype.str, name  # byte order kept
    # xarray: no value masked (a Zarr 2 fill value would turn int 0 and False into NaN)
    assert got["__xarray_dtypes__"]["big_endian"].endswith("i4")
    assert got["__xarray__"]["big_endian"][0][0] == 0
    assert got["__xarray__"]["values"] == members["values.bin"].tolist()
    assert got["__xarray__"]["fortran"] == members["fortran.npy"].tolist()


def test_zconvert_reads_a_reference_file_as_any_store(tmp_path):
    out, members = _references(tmp_path)
    for name, want in _expected(members).items():
        got = zconvert.open(out / "a.json", name)
        np.testing.assert_array_equal(got[...], want)
    assert zconvert.open(out / "a.json", "values").chunks == (50, 4)  # 64 wanted; 50 divides
    for name in ("values", "fortran", "big_endian", "scalar", "nested/flags"):
        mapped = zconvert.open_memmap(out / "a.json", name)  # the member, in its archive
        assert Path(mapped.filename) == (tmp_path / "in" / "a.zip").resolve()
        np.testing.assert_array_equal(mapped, _expected(members)[name])
        assert mapped.dtype == _expected(members)[name].dtype
    assert sorted(zconvert.array_names(out / "b.json")) == ["x", "y"]
    refs = zconvert.refs(out)
    assert {(Path(r.store).name, r.name) for r in refs} >= {("a.json", "values"), ("b.json", "x")}
    stacked = zconvert.open_all(out, name="values")
    np.testing.assert_array_equal(np.asarray(stacked), members["values.bin"])
    info = inspect_store(out / "a.json")
    assert info["format"] == "references" and info["source_archive"].endswith("a.zip")
    assert {a["codec"] for a in info["arrays"]} == {"reference"}


def test_references_point_at_the_archive_and_copy_nothing(tmp_path):
    out, _ = _references(tmp_path)
    doc = json.loads((out / "a.json").read_text())
    assert doc["version"] == 1
    refs = doc["refs"]
    archive = str((tmp_path / "in" / "a.zip").resolve())
    chunks = [v for k, v in refs.items() if k.startswith("values/") and isinstance(v, list)]
    assert len(chunks) == 20 and all(v[0] == archive and v[2] == 50 * 16 for v in chunks)
    with zipfile.ZipFile(archive) as zf:  # the local header read, not guessed
        info = zf.getinfo("values.bin")
    with open(archive, "rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = np.frombuffer(f.read(4), "<u2")
        assert refs["values/0.0"][1] == info.header_offset + 30 + name_len + extra_len
    assert json.loads(refs["fortran/.zarray"])["order"] == "F"
    assert (out / "a.json").stat().st_size < (tmp_path / "in" / "a.zip").stat().st_size


def test_chunk_rows_divide_the_rows():
    assert reference_chunk_rows(2_000_000, 65_536) == 62_500
    assert reference_chunk_rows(1000, 64) == 50
    assert reference_chunk_rows(1009, 64) == 1009  # a prime: one chunk
    assert reference_chunk_rows(10, 64) == 10
    assert reference_chunk_rows(0, 64) == 1


def test_a_compressed_member_fails_its_archive_in_one_line_and_the_others_are_done(tmp_path):
    _archive(tmp_path / "in" / "stored.zip", {"a.bin": float_rows(10)})
    make_zip(tmp_path / "in" / "deflated.zip", {"a.bin": float_rows(10)})  # deflate
    cmd = [sys.executable, "-m", "zconvert", "convert", str(tmp_path / "in"), "-o"]
    proc = subprocess.run(
        [*cmd, str(tmp_path / "out"), "--format", "references"], capture_output=True, text=True
    )
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "deflated.zip" in line]
    assert len(errors) == 1 and "--format zarr" in errors[0] and "compressed" in errors[0]
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "out" / "stored.json").exists()
    assert not (tmp_path / "out" / "deflated.json").exists()
    plan = subprocess.run(
        [sys.executable, "-m", "zconvert", "plan", str(tmp_path / "in"), "-o",
         str(tmp_path / "out2"), "--format", "references"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert "deflated.zip" in plan.stdout + plan.stderr and "compressed" in plan.stdout + plan.stderr


def test_a_rerun_skips_current_references_and_redoes_a_changed_archive(tmp_path):
    out, members = _references(tmp_path)
    again = zconvert.convert(tmp_path / "in", out, format="references", chunk_rows=64)
    assert len(again.skipped) == 2 and not again.converted
    # Rewritten in place: same size, same mtime, other values.
    archive = tmp_path / "in" / "a.zip"
    stat = archive.stat()
    changed = dict(members, **{"values.bin": members["values.bin"] + 1})
    _archive(archive, changed)
    os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert archive.stat().st_size == stat.st_size
    problems = zconvert.verify(out)
    assert len(problems) == 1 and "a.json" in problems[0] and "values" in problems[0]
    rerun = zconvert.convert(tmp_path / "in", out, format="references", chunk_rows=64)
    assert [Path(r.store).name for r in rerun.converted] == ["a.json"]
    np.testing.assert_array_equal(
        zconvert.open(out / "a.json", "values")[...], changed["values.bin"]
    )
    assert zconvert.verify(out, sources=True) == []


def test_verify_on_the_command_line_catches_a_changed_archive(tmp_path):
    out, _ = _references(tmp_path)
    archive = tmp_path / "in" / "a.zip"
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        start = zf.getinfo("values.bin").header_offset + 100
    data[start] ^= 0xFF  # one byte of the member's data
    archive.write_bytes(bytes(data))
    proc = subprocess.run(
        [sys.executable, "-m", "zconvert", "verify", str(out)], capture_output=True, text=True
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "a.json" in proc.stdout + proc.stderr and "Traceback" not in proc.stderr


def test_prune_removes_the_reference_file_of_a_deleted_archive(tmp_path):
    out, _ = _references(tmp_path)
    (tmp_path / "in" / "b.npz").unlink()
    report = zconvert.convert(tmp_path / "in", out, format="references", chunk_rows=64, prune=True)
    assert report.ok
    assert not (out / "b.json").exists() and (out / "a.json").exists()
    assert {Path(r.store).name for r in zconvert.refs(out)} == {"a.json"}


def test_an_archive_named_manifest_is_refused(tmp_path):
    _archive(tmp_path / "in" / "manifest.zip", {"a.bin": float_rows(4)})
    proc = subprocess.run(
        [sys.executable, "-m", "zconvert", "convert", str(tmp_path / "in"), "-o",
         str(tmp_path / "out"), "--format", "references"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2 and "manifest.json" in proc.stderr


def test_archives_on_s3_are_referenced_by_url(tmp_path, s3: S3):
    members = {"values.bin": float_rows(200), "x.npy": np.arange(10, dtype=">i2")}
    s3.upload(_archive(tmp_path / "a.zip", members), "in/a.zip")
    out = tmp_path / "out"
    report = zconvert.convert(
        s3.url("in"), out, format="references", storage_options=s3.storage_options
    )
    assert report.ok, report.failed
    refs = json.loads((out / "a.json").read_text())["refs"]
    assert refs["values/0.0"][0] == s3.url("in/a.zip")
    got = zconvert.open(out / "a.json", "x", storage_options=s3.storage_options)
    np.testing.assert_array_equal(got[...], members["x.npy"])
    # xarray alone, as the README says: remote_options asynchronous, with the credentials
    xr = pytest.importorskip("xarray")
    remote = {**s3.storage_options, "asynchronous": True}
    options = {"fo": str(out / "a.json"), "remote_options": remote}
    with xr.open_zarr("reference://", storage_options=options, zarr_format=2) as ds:
        np.testing.assert_array_equal(ds["values"].values, members["values.bin"])
    # the reference file itself on S3 too
    out_url = s3.url("refs")
    report = zconvert.convert(
        s3.url("in"), out_url, format="references", storage_options=s3.storage_options
    )
    assert report.ok, report.failed
    got = zconvert.open(out_url + "/a.json", "values", storage_options=s3.storage_options)
    np.testing.assert_array_equal(got[...], members["values.bin"])
    again = zconvert.convert(
        s3.url("in"), out_url, format="references", storage_options=s3.storage_options
    )
    assert len(again.skipped) == 1


def test_contiguous_is_one_chunk_a_member_whatever_the_codec(tmp_path):
    _archive(tmp_path / "in" / "a.zip", {"values.bin": float_rows(1000)})
    report = zconvert.convert(
        tmp_path / "in", tmp_path / "out", format="references", contiguous=True
    )
    assert report.ok, report.failed
    array = zconvert.open(tmp_path / "out" / "a.json", "values")
    assert array.chunks == (1000, 4)
    np.testing.assert_array_equal(array[...], float_rows(1000))


def test_members_moved_within_their_archive_are_referred_to_again(tmp_path):
    """The same members, CRC32s and sizes, written in another order: every offset moved. The
    store records each member's local header offset, so a rerun that has only the store to go
    by (no manifest) redoes it rather than read other bytes."""
    members = {"a.bin": float_rows(50, seed=1), "b.bin": float_rows(60, seed=2)}
    archive = _archive(tmp_path / "in" / "x.zip", members)
    out = tmp_path / "out"
    assert zconvert.convert(tmp_path / "in", out, format="references").ok
    stat = archive.stat()
    _archive(archive, dict(reversed(list(members.items()))))
    os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert archive.stat().st_size == stat.st_size
    (out / "manifest.json").unlink()  # only the store's own record to decide by
    rerun = zconvert.convert(tmp_path / "in", out, format="references")
    assert [Path(r.store).name for r in rerun.converted] == ["x.json"]
    for name, want in members.items():
        np.testing.assert_array_equal(zconvert.open(out / "x.json", name[:-4])[...], want)
