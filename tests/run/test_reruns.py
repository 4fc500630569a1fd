"""An output folder over its whole life: archives deleted, replaced, failing, stores damaged.
After every run, each view of OUT (store paths, manifest, refs, open_all, all.h5, inspect,
verify) describes exactly the current inputs under the current options."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import zconvert
from zconvert.core.convert_options import ConvertOptions
from zconvert.read.inspect import inspect_path
from zconvert.run.fingerprint import options_digest

from ..conftest import float_rows, make_zip

FORMATS = [("zarr", ".zarr"), ("hdf5", ".h5")]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zconvert", *args], capture_output=True, text=True, timeout=120
    )


def _inputs(folder: Path, n: int = 4, rows: int = 50) -> dict[str, np.ndarray]:
    data = {}
    for i in range(n):
        data[f"a{i}"] = float_rows(rows, seed=i)
        make_zip(folder / f"a{i}.zip", {f"blob{i}.bin": data[f"a{i}"]})
    return data


def _statuses(out: Path) -> dict[str, str]:
    stores = json.loads((out / "manifest.json").read_text())["stores"]
    return {s["relpath"]: s["status"] for s in stores}


def _damage(store: Path, name: str) -> None:
    """Overwrite 64 bytes of an array's first stored chunk: its metadata stays intact."""
    if store.is_dir():
        path, offset = store / name / "c" / "0" / "0", 0
    else:
        with h5py.File(store, "r") as f:
            dset = f[name]
            offset = dset.id.get_offset() if dset.chunks is None else None
            if offset is None:
                offset = dset.id.get_chunk_info(0).byte_offset
        path = store
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(bytes(range(64)))


def _all_rows(out: Path) -> np.ndarray:
    with h5py.File(out / "all.h5", "r", locking=False) as f:
        return f["all"][...]


@pytest.mark.parametrize(("fmt", "suffix"), FORMATS)
def test_deleted_archives_leave_every_view(tmp_path, fmt, suffix):
    src, out = tmp_path / "in", tmp_path / "out"
    data = _inputs(src)
    assert zconvert.convert(src, out, format=fmt, executor="serial").ok
    (src / "a1.zip").unlink()
    (src / "a3.zip").unlink()

    report = zconvert.convert(src, out, format=fmt, executor="serial")
    assert report.ok and len(report.skipped) == 2
    orphans = [str(out / f"a1{suffix}"), str(out / f"a3{suffix}")]
    assert report.orphans == orphans  # named, and left on disk without --prune
    assert all(Path(p).exists() for p in orphans)
    assert sorted(r.store for r in zconvert.refs(out)) == [
        str(out / f"a0{suffix}"),
        str(out / f"a2{suffix}"),
    ]
    assert _statuses(out) == {
        f"a0{suffix}": "skipped",
        f"a1{suffix}": "orphan",
        f"a2{suffix}": "skipped",
        f"a3{suffix}": "orphan",
    }
    assert zconvert.verify(out) == []
    combined = zconvert.open_all(out)
    expected = np.concatenate([data["a0"], data["a2"]])
    np.testing.assert_array_equal(np.asarray(combined), expected)
    if fmt == "hdf5":
        np.testing.assert_array_equal(_all_rows(out), expected)
    info = inspect_path(str(out))
    assert info["counts"]["orphan"] == 2 and info["counts"]["converted"] == 0

    # --overwrite redoes the inputs' stores and keeps the orphans out of every view too
    report = zconvert.convert(src, out, format=fmt, executor="serial", overwrite=True)
    assert len(report.converted) == 2 and report.orphans == orphans
    assert len(zconvert.refs(out)) == 2
    assert _statuses(out)[f"a1{suffix}"] == "orphan"


def test_all_h5_follows_stores_deleted_by_hand(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    data = _inputs(src)
    zconvert.convert(src, out, format="hdf5", executor="serial")
    (src / "a1.zip").unlink()
    zconvert.convert(src, out, format="hdf5", executor="serial")
    (out / "a1.h5").unlink()  # the user tidies up the orphan by hand
    report = zconvert.convert(src, out, format="hdf5", executor="serial")
    assert report.orphans == []
    assert "a1.h5" not in _statuses(out)
    expected = np.concatenate([data["a0"], data["a2"], data["a3"]])
    rows = _all_rows(out)
    assert not np.isnan(rows).any()  # a missing source reads as NaN: none is left
    np.testing.assert_array_equal(rows, expected)


def test_prune_deletes_orphans_and_plan_shows_them_first(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    _inputs(src)
    zconvert.convert(src, out, executor="serial")
    (src / "a2.zip").unlink()

    plan = _cli("plan", str(src), "-o", str(out))
    assert plan.returncode == 0, plan.stderr
    assert f"orphan   {out / 'a2.zarr'}" in plan.stdout
    assert "2 orphan" not in plan.stdout and "1 orphan" in plan.stdout
    plan = _cli("plan", str(src), "-o", str(out), "--prune")
    assert f"prune    {out / 'a2.zarr'}" in plan.stdout and "1 to prune" in plan.stdout
    assert (out / "a2.zarr").exists()  # a plan writes nothing

    proc = _cli("convert", str(src), "-o", str(out), "--prune", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["pruned"] == [str(out / "a2.zarr")] and report["orphans"] == []
    assert not (out / "a2.zarr").exists()
    assert "a2.zarr" not in _statuses(out)
    again = _cli("convert", str(src), "-o", str(out))
    assert "  orphans " not in again.stderr and "  pruned " not in again.stderr


def test_orphan_comes_back_when_its_archive_does(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    _inputs(src)
    zconvert.convert(src, out, executor="serial")
    (src / "a1.zip").rename(tmp_path / "a1.zip")
    zconvert.convert(src, out, executor="serial")
    (tmp_path / "a1.zip").rename(src / "a1.zip")
    report = zconvert.convert(src, out, executor="serial")
    assert report.orphans == [] and len(report.skipped) == 4  # the store was still current
    assert len(zconvert.refs(out)) == 4


@pytest.mark.parametrize(("fmt", "suffix"), FORMATS)
def test_replaced_archive_that_fails_leaves_no_store(tmp_path, fmt, suffix):
    src, out = tmp_path / "in", tmp_path / "out"
    _inputs(src, n=2)
    zconvert.convert(src, out, format=fmt, executor="serial")
    (src / "a1.zip").write_bytes(b"not a zip any more")

    proc = _cli("convert", str(src), "-o", str(out), "--format", fmt)
    assert proc.returncode == 1
    failure = [line for line in proc.stderr.splitlines() if "failed:" in line]
    assert len(failure) == 1 and "not a readable ZIP" in failure[0]
    assert f"earlier store a1{suffix} was removed" in failure[0]
    assert not (out / f"a1{suffix}").exists()  # nobody opening it by path reads old data
    assert [r.store for r in zconvert.refs(out)] == [str(out / f"a0{suffix}")]
    assert _statuses(out)[f"a1{suffix}"] == "failed"


@pytest.mark.parametrize(("fmt", "suffix"), FORMATS)
def test_verify_marks_damage_and_plain_convert_redoes_it(tmp_path, fmt, suffix):
    src, out = tmp_path / "in", tmp_path / "out"
    data = _inputs(src, n=2, rows=5000)
    zconvert.convert(src, out, format=fmt, executor="serial", codec="none")
    store = out / f"a1{suffix}"
    _damage(store, "blob1")

    proc = _cli("verify", str(out))
    assert proc.returncode == 1
    assert "damaged store is marked" in proc.stderr and "zconvert convert" in proc.stderr
    assert _statuses(out)[f"a1{suffix}"] == "damaged"
    assert [r.store for r in zconvert.refs(out)] == [str(out / f"a0{suffix}")]

    plan = _cli("plan", str(src), "-o", str(out), "--format", fmt, "--codec", "none")
    assert f"a1{suffix}  (damaged" in plan.stdout, plan.stdout
    report = zconvert.convert(src, out, format=fmt, executor="serial", codec="none")
    assert [r.relpath for r in report.converted] == [f"a1{suffix}"]
    assert zconvert.verify(out) == []
    np.testing.assert_array_equal(zconvert.open(store, "blob1")[...], data["a1"])


def test_output_that_is_a_file_is_refused_by_convert_and_plan(tmp_path):
    src = tmp_path / "in"
    _inputs(src, n=1)
    taken = tmp_path / "taken"
    taken.write_text("a file")
    for command in ("convert", "plan"):
        proc = _cli(command, str(src), "-o", str(taken))
        assert proc.returncode == 2, (command, proc.stderr)
        assert "exists and is not a folder" in proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert taken.read_text() == "a file"


def test_plan_refuses_another_layout_as_convert_does(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    _inputs(src, n=2)
    zconvert.convert(src, out, format="hdf5", executor="serial")
    results = [_cli(command, str(src), "-o", str(out)) for command in ("plan", "convert")]
    assert [p.returncode for p in results] == [2, 2]
    assert all("holds 2 hdf5 store(s)" in p.stderr for p in results)


def test_plan_refuses_an_output_in_use_as_convert_does(tmp_path):
    from zconvert.run.config import build_config
    from zconvert.run.dryrun import plan_run
    from zconvert.run.outdir import OutputLockedError, lock_output

    src, out = tmp_path / "in", tmp_path / "out"
    _inputs(src, n=1)
    out.mkdir()
    config = build_config(inputs=[str(src)], output=str(out))
    with lock_output(str(out)):
        with pytest.raises(OutputLockedError, match="in use by another zconvert run"):
            plan_run(config)
        with pytest.raises(OutputLockedError):
            zconvert.convert(src, out)
    assert [p.action for p in plan_run(config)] == ["convert"]  # released: no lock file left
    assert not (out / ".zconvert.lock").exists()


def _assert_views_agree(src: Path, out: Path, fmt: str, suffix: str, bad: set[str]) -> None:
    """Every view of OUT describes exactly the archives in `src`: those in `bad` fail and have
    no store; every other one is served, with its data, by every view."""
    archives = sorted(p.stem for p in src.glob("*.zip"))
    good = [name for name in archives if name not in bad]
    refs = zconvert.refs(out)
    assert sorted(Path(r.store).name for r in refs) == [f"{n}{suffix}" for n in good]
    expected = []
    for ref in refs:
        name = Path(ref.store).stem
        with zipfile.ZipFile(src / f"{name}.zip") as zf:
            (member,) = zf.namelist()
            raw = np.frombuffer(zf.read(member), dtype="<f4").reshape(-1, 4)
        np.testing.assert_array_equal(ref.read(), raw)
        expected.append(raw)
    for name in bad:
        assert not (out / f"{name}{suffix}").exists()
    statuses = _statuses(out)
    assert {k for k, v in statuses.items() if v in ("converted", "skipped")} == {
        f"{n}{suffix}" for n in good
    }
    assert {k for k, v in statuses.items() if v == "failed"} == {f"{n}{suffix}" for n in bad}
    assert all(
        v != "orphan" or not (src / f"{Path(k).stem}.zip").exists() for k, v in statuses.items()
    )
    np.testing.assert_array_equal(np.asarray(zconvert.open_all(out)), np.concatenate(expected))
    if fmt == "hdf5":
        np.testing.assert_array_equal(_all_rows(out), np.concatenate(expected))
    assert zconvert.verify(out) == []
    info = inspect_path(str(out))
    assert info["counts"]["converted"] + info["counts"]["skipped"] == len(good)


@pytest.mark.parametrize(("fmt", "suffix"), FORMATS)
def test_rerun_after_a_mix_of_changes_keeps_every_view_true(tmp_path, fmt, suffix):
    src, out = tmp_path / "in", tmp_path / "out"
    _inputs(src, n=6)
    run = dict(format=fmt, executor="serial")
    zconvert.convert(src, out, **run)
    _assert_views_agree(src, out, fmt, suffix, set())

    make_zip(src / "a6.zip", {"blob6.bin": float_rows(30, seed=60)})  # added
    (src / "a1.zip").unlink()  # deleted
    make_zip(src / "a2.zip", {"blob2.bin": float_rows(70, seed=20)})  # replaced
    (src / "a3.zip").write_bytes(b"PK\x03\x04 truncated")  # replaced by a broken one
    _damage(out / f"a4{suffix}", "blob4")  # damaged, and verify says so
    assert zconvert.verify(out)  # found, and marked in the manifest

    report = zconvert.convert(src, out, **run)
    assert sorted(r.relpath for r in report.converted) == [
        f"a2{suffix}",
        f"a4{suffix}",
        f"a6{suffix}",
    ]
    assert [r.relpath for r in report.failed] == [f"a3{suffix}"]
    assert report.orphans == [str(out / f"a1{suffix}")]
    _assert_views_agree(src, out, fmt, suffix, {"a3"})

    # and once more with nothing changed: the same answers, nothing redone
    report = zconvert.convert(src, out, **run)
    assert not report.converted and len(report.failed) == 1
    _assert_views_agree(src, out, fmt, suffix, {"a3"})


def test_verify_of_one_store_in_a_run_folder_marks_it_too(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    _inputs(src, n=2, rows=2000)
    zconvert.convert(src, out, executor="serial", codec="none")
    _damage(out / "a0.zarr", "blob0")
    problems = zconvert.verify(out / "a0.zarr")
    assert problems and all(p.startswith(str(out / "a0.zarr")) for p in problems)
    assert _statuses(out) == {"a0.zarr": "damaged", "a1.zarr": "converted"}
    report = zconvert.convert(src, out, executor="serial", codec="none")
    assert [r.relpath for r in report.converted] == ["a0.zarr"]
    assert zconvert.verify(out / "a0.zarr") == []


def test_a_zarr2_store_with_a_fill_value_is_redone_and_xarray_reads_its_zeros(tmp_path):
    """Zarr 2 stores written before recorded fill_value 0, which xarray reads as missing:
    int 0 and False came back as NaN. A rerun redoes such a store and says why."""
    xr = pytest.importorskip("xarray")
    ints = np.arange(12, dtype="<i4").reshape(3, 4)  # holds a 0
    make_zip(tmp_path / "in" / "a.zip", {"ints.bin": ints})
    out = tmp_path / "out"
    options = {"zarr_format": 2, "dtype": "<i4"}
    assert zconvert.convert(tmp_path / "in", out, **options).ok
    store = out / "a.zarr"
    with xr.open_zarr(store) as ds:
        assert ds["ints"].dtype == np.int32 and int(ds["ints"][0, 0]) == 0
    # What an earlier zconvert wrote: a fill value, and a fingerprint without the new key.
    zarray = json.loads((store / "ints" / ".zarray").read_text())
    (store / "ints" / ".zarray").write_text(json.dumps({**zarray, "fill_value": 0}))
    zattrs = json.loads((store / ".zattrs").read_text())
    fingerprint = json.loads(zattrs["zconvert_options"])
    del fingerprint["zarr2_fill_value"]
    zattrs["zconvert_options"] = json.dumps(fingerprint, sort_keys=True)
    (store / ".zattrs").write_text(json.dumps(zattrs))
    (store / ".zmetadata").unlink()  # no stale consolidated copy for the test's own read
    # ... and whose manifest records the digest of that fingerprint
    digest = options_digest(ConvertOptions(format="zarr", **options))
    old = hashlib.sha1(zattrs["zconvert_options"].encode()).hexdigest()[:16]
    text = (out / "manifest.json").read_text()
    assert digest in text
    (out / "manifest.json").write_text(text.replace(digest, old))
    manifest = json.loads((out / "manifest.json").read_text())
    plan = _cli(
        "plan", str(tmp_path / "in"), "-o", str(out), "--zarr-format", "2", "--dtype", "<i4"
    )
    assert "fill value" in plan.stdout, plan.stdout
    rerun = zconvert.convert(tmp_path / "in", out, **options)
    assert [Path(r.store).name for r in rerun.converted] == ["a.zarr"], manifest
    assert json.loads((store / "ints" / ".zarray").read_text())["fill_value"] is None
