"""A run that stops before its end (SIGTERM, Ctrl-C, kill -9) leaves a folder that inspect and
verify understand and that a rerun completes; reruns decide from the manifest and a stat per
archive; verify runs on worker processes."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

import zconvert
import zconvert.run.convert

from ..cli.test_cli import zconvert as cli
from ..conftest import float_rows, make_zip
from .test_faults import start_cli

pytestmark = pytest.mark.timeout(300)


def _inputs(folder: Path, count: int, rows: int) -> dict[str, np.ndarray]:
    data = {f"a{i:02d}": float_rows(rows, seed=i) for i in range(count)}
    for name, array in data.items():
        make_zip(folder / f"{name}.zip", {"blob.bin": array})
    return data


def _run_stopped_at(tmp_path: Path, archives: int, stores: int):  # type: ignore[no-untyped-def]
    """Start converting `archives` archives on one worker, return once `stores` stores are at
    their final paths, the run still going: (data, out, the command's args, the process)."""
    data = _inputs(tmp_path / "in", archives, 300_000)
    out = tmp_path / "out"
    args = (str(tmp_path / "in"), "-o", str(out), "--workers", "1", "--codec", "gzip")
    proc = start_cli(*args)
    while proc.poll() is None and len(list(out.glob("*.zarr"))) < stores:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be stopped"
    return data, out, args, proc


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


@pytest.mark.slow
def test_sigterm_writes_an_incomplete_manifest_and_a_rerun_resumes(tmp_path):
    # two stores on one worker: the first store's result has reached the run
    data, out, args, proc = _run_stopped_at(tmp_path, 12, 2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "run the same command again to resume" in stderr and "Traceback" not in stderr
    document = _manifest(out)
    assert document["complete"] is False
    listed = {e["relpath"] for e in document["stores"]}
    on_disk = {p.name for p in out.glob("*.zarr")}
    # A store may finish between the last result the run received and the signal: it is
    # complete, just not listed; inspect shows it too.
    assert listed and listed <= on_disk and len(on_disk) < len(data)
    hidden = {p.name for p in out.iterdir() if p.name.startswith(".")}
    assert hidden <= {".zconvert.lock"}, hidden

    # A run that did not finish is shown, and exits 1: `verify OUT && publish` stops there.
    shown = cli("inspect", str(out))
    assert shown.returncode == 1, shown.stderr
    assert "did not finish" in shown.stdout and "run the same zconvert convert" in shown.stdout
    assert all(name in shown.stdout for name in on_disk)
    checked = cli("verify", str(out))
    assert checked.returncode == 1 and "1 problem" in checked.stderr, checked.stderr
    assert checked.stdout.strip() == f"{out}: " + (
        "the run that wrote this folder did not finish (manifest written "
        f"{document['written']}); run the same zconvert convert command again to resume"
    )

    rerun = cli("convert", *args)
    assert rerun.returncode == 0, rerun.stderr
    done = len(on_disk)
    assert f"{len(data) - done} converted, {done} skipped, 0 failed" in rerun.stderr
    document = _manifest(out)
    assert document["complete"] is True and len(document["stores"]) == len(data)
    for name, array in data.items():
        np.testing.assert_array_equal(zconvert.open(out / f"{name}.zarr")[...], array)


@pytest.mark.slow
def test_kill_9_before_any_manifest_leaves_a_folder_inspect_and_verify_read(tmp_path):
    data, out, args, proc = _run_stopped_at(tmp_path, 8, 1)
    family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    for p in family:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.communicate()
    assert not (out / "manifest.json").exists()
    finished = sorted(p.name for p in out.glob("*.zarr"))
    assert finished

    shown = cli("inspect", str(out))
    assert shown.returncode == 1, shown.stderr
    assert "(no manifest.json)" in shown.stdout and "did not finish" in shown.stdout
    assert f"{len(finished)} complete stores found" in shown.stdout
    assert all(name in shown.stdout for name in finished)
    as_json = json.loads(cli("inspect", str(out), "--json").stdout)
    assert as_json["complete"] is False and as_json["counts"]["found"] == len(finished)

    checked = cli("verify", str(out))
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "no manifest.json" in checked.stdout and "1 problem" in checked.stderr
    unfinished = zconvert.verify(out)
    assert len(unfinished) == 1 and "did not finish" in unfinished[0]
    # a store damaged after the kill is found, named by its path
    chunk = next(p for p in (out / finished[0]).rglob("*") if p.is_file() and "c" in p.parts)
    chunk.write_bytes(chunk.read_bytes()[:-7])
    problems = zconvert.verify(out)
    assert len(problems) == 2 and problems[1].startswith(str(out / finished[0])), problems
    import shutil

    shutil.rmtree(out / finished[0])  # what verify's "reconvert it" asks for

    rerun = cli("convert", *args)
    assert rerun.returncode == 0, rerun.stderr
    assert _manifest(out)["complete"] is True
    for name, array in data.items():
        np.testing.assert_array_equal(zconvert.open(out / f"{name}.zarr")[...], array)


def test_a_long_run_rewrites_its_manifest_as_it_goes(tmp_path, monkeypatch):
    _inputs(tmp_path / "in", 4, 1000)
    out = tmp_path / "out"
    monkeypatch.setattr(zconvert.run.convert, "MANIFEST_EVERY_S", 0.0)
    seen: list[tuple[bool, int]] = []

    def on_result(result: object) -> None:
        if (out / "manifest.json").exists():
            document = _manifest(out)
            seen.append((document["complete"], len(document["stores"])))

    zconvert.convert(tmp_path / "in", out, executor="serial", on_result=on_result)
    # written after each result but the last, which the final (complete) manifest records
    assert seen == [(False, 1), (False, 2), (False, 3)]
    assert _manifest(out)["complete"] is True


def test_rerun_trusts_a_stat_only_for_an_archive_nothing_touched(tmp_path):
    data = _inputs(tmp_path / "in", 3, 1000)
    out = tmp_path / "out"
    zconvert.convert(tmp_path / "in", out, executor="serial")
    # chmod changes the ctime only: the store is checked by a worker (its pid), found current,
    # and the manifest rewritten, so that the next rerun decides from a stat again (pid 0).
    os.chmod(tmp_path / "in" / "a01.zip", 0o640)
    second = zconvert.convert(tmp_path / "in", out, executor="serial")
    assert [(r.relpath, r.status, r.pid != 0) for r in second.results] == [
        ("a00.zarr", "skipped", False),
        ("a01.zarr", "skipped", True),
        ("a02.zarr", "skipped", False),
    ]
    third = zconvert.convert(tmp_path / "in", out, executor="serial")
    assert {r.pid for r in third.results} == {0}
    # a store removed by hand is noticed from one stat, and rebuilt
    import shutil

    shutil.rmtree(out / "a02.zarr")
    fourth = zconvert.convert(tmp_path / "in", out, executor="serial")
    assert [r.status for r in fourth.results] == ["skipped", "skipped", "converted"]
    np.testing.assert_array_equal(zconvert.open(out / "a02.zarr")[...], data["a02"])


def test_same_run_from_flags_and_from_yaml_is_one_run(tmp_path):
    _inputs(tmp_path / "in", 2, 1000)
    out = tmp_path / "out"
    assert cli("convert", str(tmp_path / "in"), "-o", str(out)).returncode == 0
    run = tmp_path / "run.yaml"
    run.write_text(
        f"inputs: [{tmp_path / 'in'}]\noutput: {out}\nchunk_rows: 262144\ncodec: blosc-lz4\n"
    )
    again = cli("convert", "--config", str(run))
    assert again.returncode == 0 and "0 converted, 2 skipped" in again.stderr, again.stderr
    options = _manifest(out)["options"]
    assert options["chunk_rows"] == 262144 and options["max_ratio"] == 1000.0
    run.write_text(run.read_text().replace("chunk_rows: 262144", "chunk_rows: 1000"))
    plan = cli("plan", "--config", str(run))
    assert "(options changed: chunk_rows; 1 member" in plan.stdout, plan.stdout
    (tmp_path / "in" / "a00.zip").touch()
    run.write_text(run.read_text().replace("chunk_rows: 1000", "chunk_rows: 262144"))
    plan = cli("plan", "--config", str(run))
    assert "a00.zip -> a00.zarr  (archive modified" in plan.stdout, plan.stdout
    assert "a01.zip -> a01.zarr" in plan.stdout and "complete and up to date" in plan.stdout
    import shutil

    shutil.rmtree(out / "a01.zarr")
    assert "a01.zip -> a01.zarr  (store missing;" in cli("plan", "--config", str(run)).stdout


def test_one_folder_holds_one_layout(tmp_path):
    _inputs(tmp_path / "in", 2, 1000)
    out = tmp_path / "out"
    zconvert.convert(tmp_path / "in", out)
    refused = cli("convert", str(tmp_path / "in"), "-o", str(out), "--format", "hdf5")
    assert refused.returncode == 2
    line = refused.stderr.strip()
    assert "2 zarr store(s)" in line and "--overwrite" in line and "\n" not in line, line
    assert not list(out.glob("*.h5"))
    with pytest.raises(zconvert.ConfigError, match="one folder holds one layout"):
        zconvert.convert(tmp_path / "in", out, format="hdf5")
    replaced = zconvert.convert(tmp_path / "in", out, format="hdf5", overwrite=True)
    assert replaced.ok
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "a00.h5",
        "a01.h5",
        "all.h5",
        "manifest.json",
    ]
    assert len(zconvert.refs(out)) == 2
    assert zconvert.open_all(out).shape == (2000, 4)
    assert "2 complete" in cli("inspect", str(out)).stdout


@pytest.mark.parametrize(
    "argv, words",
    [
        (["convert"], "no archives or folders given: zconvert convert DATA... -o OUT"),
        (["convert", "IN"], "no output folder given: add -o OUT"),
        (["convert", "IN", "-o", "OUT", "--chunk-rows", "-5"], "--chunk-rows: "),
        (["convert", "IN", "-o", "OUT", "--shape", "4,-1"], "--shape: "),
    ],
)
def test_errors_name_what_the_user_typed(tmp_path, argv, words):
    (tmp_path / "IN").mkdir()
    make_zip(tmp_path / "IN" / "a.zip", {"b.bin": float_rows(10)})
    proc = cli(*argv, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], proc.stderr
    assert not lines[0].startswith("zconvert: error: inputs:"), lines[0]
    assert "is required (as a flag" not in lines[0]


@pytest.mark.parametrize("shape", [["--shape", "-1,3"], ["--shape", "-1x3"], ["--shape=-1,3"]])
def test_shape_with_a_leading_minus_parses_as_a_value(tmp_path, shape):
    make_zip(tmp_path / "in" / "a.zip", {"b.bin": float_rows(100, cols=3)})
    proc = cli("convert", str(tmp_path / "in"), "-o", str(tmp_path / "out"), *shape)
    assert proc.returncode == 0, proc.stderr
    assert zconvert.open(tmp_path / "out" / "a.zarr").shape == (100, 3)


def test_verify_on_workers_finds_what_one_process_finds(tmp_path):
    _inputs(tmp_path / "in", 6, 5000)
    out = tmp_path / "out"
    zconvert.convert(tmp_path / "in", out, codec="none")
    chunk = next(p for p in (out / "a03.zarr").rglob("*") if p.is_file() and "c" in p.parts)
    raw = bytearray(chunk.read_bytes())
    raw[100] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    one = zconvert.verify(out, workers=1)
    pooled = zconvert.verify(out, workers=2)
    assert one == pooled and len(one) == 1 and one[0].startswith(f"{out / 'a03.zarr'}: blob: CRC32")
    proc = cli("verify", str(out), "--workers", "2")
    assert proc.returncode == 1 and proc.stdout.strip() == one[0]
    assert cli("verify", str(out), "--workers", "0").returncode == 2
