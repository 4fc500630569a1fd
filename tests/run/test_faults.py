"""Faults during a run: killed workers, a killed run, a full disk, and readers during a run.

Everything here runs the real CLI in a subprocess and does real damage to it (kill -9,
RLIMIT_FSIZE); nothing is mocked and there are no test-only hooks in zconvert.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

import zconvert

from ..conftest import float_rows, make_zip

pytestmark = pytest.mark.timeout(300)


def start_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "zconvert", "convert", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def holders_of(proc: subprocess.Popen[str], path: Path) -> list[psutil.Process]:
    """Descendant processes (workers) that have `path` open right now."""
    found = []
    for child in psutil.Process(proc.pid).children(recursive=True):
        try:
            if any(f.path == str(path) for f in child.open_files()):
                found.append(child)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.rglob(".*") if p.name != ".zconvert.lock")


def big_and_small(folder: Path, big_rows: int = 3_000_000, small: int = 3) -> dict[str, np.ndarray]:
    data = {"big": float_rows(big_rows, seed=99)}
    for i in range(small):
        data[f"small_{i}"] = float_rows(20_000, seed=i)
    for name, arr in data.items():
        make_zip(folder / f"{name}.zip", {"blob.bin": arr})
    return data


def check_outputs(out: Path, data: dict[str, np.ndarray], missing: tuple[str, ...] = ()) -> None:
    for name, arr in data.items():
        store = out / f"{name}.zarr"
        if name in missing:
            assert not store.exists()
        else:
            np.testing.assert_array_equal(zconvert.open(store)[...], arr)
    assert zconvert.verify(out) == []
    assert leftovers(out) == []


@pytest.mark.slow
def test_worker_killed_mid_write_is_retried_and_the_run_completes(tmp_path):
    data = big_and_small(tmp_path / "in")
    out = tmp_path / "out"
    # gzip is slow to write: the big archive keeps its worker busy for a second or more.
    proc = start_cli(str(tmp_path / "in"), "-o", str(out), "--workers", "2", "--codec", "gzip")
    big = tmp_path / "in" / "big.zip"
    victims: list[psutil.Process] = []
    while proc.poll() is None and not victims:
        victims = holders_of(proc, big)
        time.sleep(0.01)
    assert victims, "the run ended before its worker could be killed"
    victims[0].send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr
    assert "4 converted, 0 skipped, 0 failed" in stderr
    check_outputs(out, data)


@pytest.mark.slow
def test_worker_killed_twice_fails_only_its_archive(tmp_path):
    data = big_and_small(tmp_path / "in")
    out = tmp_path / "out"
    proc = start_cli(str(tmp_path / "in"), "-o", str(out), "--workers", "2", "--codec", "gzip")
    big = tmp_path / "in" / "big.zip"
    kills = 0
    while proc.poll() is None:  # kill every worker that ever opens the big archive
        for victim in holders_of(proc, big):
            try:
                victim.send_signal(signal.SIGKILL)
                kills += 1
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.005)
    _, stderr = proc.communicate()
    assert kills >= 2
    assert proc.returncode == 1, stderr
    failed = [line for line in stderr.splitlines() if line.startswith("zconvert: failed:")]
    assert len(failed) == 1 and str(big) in failed[0] and "again when retried alone" in failed[0]
    assert "Traceback" not in stderr
    assert "3 converted, 0 skipped, 1 failed" in stderr
    check_outputs(out, data, missing=("big",))


@pytest.mark.slow
def test_killed_run_then_rerun_completes_and_verifies(tmp_path):
    data = {f"a{i}": float_rows(400_000, seed=i) for i in range(6)}
    for name, arr in data.items():
        make_zip(tmp_path / "in" / f"{name}.zip", {"blob.bin": arr})
    out = tmp_path / "out"
    args = (str(tmp_path / "in"), "-o", str(out), "--workers", "2", "--codec", "gzip")
    proc = start_cli(*args)
    while proc.poll() is None and not any(out.glob("*.zarr")):
        time.sleep(0.01)
    family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    for p in family:  # kill -9 of the whole run, workers included
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.communicate()
    finished = sorted(p.stem for p in out.glob("*.zarr"))
    assert finished and len(finished) < len(data)
    for stem in finished:  # whatever is at a final path is complete
        np.testing.assert_array_equal(zconvert.open(out / f"{stem}.zarr")[...], data[stem])

    rerun = subprocess.run(
        [sys.executable, "-m", "zconvert", "convert", *args], capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(finished)} skipped" in rerun.stderr
    check_outputs(out, data)
    assert subprocess.run([sys.executable, "-m", "zconvert", "verify", str(out)]).returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_reader_polling_during_a_run_never_sees_an_incomplete_store(tmp_path, fmt):
    data = {f"a{i}": float_rows(300_000, seed=i) for i in range(6)}
    for name, arr in data.items():
        make_zip(tmp_path / "in" / f"{name}.zip", {"blob.bin": arr})
    out = tmp_path / "out"
    proc = start_cli(str(tmp_path / "in"), "-o", str(out), "--workers", "2", "--format", fmt)
    seen: set[str] = set()
    polls = 0
    while proc.poll() is None:
        polls += 1
        entries = [p for p in out.iterdir()] if out.exists() else []
        for entry in entries:
            if entry.name.startswith(".") or entry.name in ("manifest.json", "all.h5"):
                continue
            arr = zconvert.open(entry)  # raises if the store is incomplete
            np.testing.assert_array_equal(arr[...], data[entry.stem])
            seen.add(entry.stem)
    assert proc.returncode == 0
    assert polls > 1
    assert seen, "no store appeared while the run was going"


FSIZE_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    if __name__ == "__main__":
        # Python ignores SIGXFSZ, so a write past the limit raises OSError(EFBIG) instead.
        resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, resource.RLIM_INFINITY))
        import zconvert
        inp, out, fmt, codec, executor = sys.argv[1:]
        report = zconvert.convert(inp, out, format=fmt, codec=codec, executor=executor)
        print(json.dumps([[r.relpath, r.status, r.error] for r in report.results]))
    """
)


@pytest.mark.parametrize("executor", ["serial", "local"])
@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
@pytest.mark.parametrize("codec", ["none", "blosc-lz4", "zstd"])  # direct, encoded by us, filters
def test_file_size_limit_fails_that_archive_and_leaves_no_partial_store(
    tmp_path, fmt, codec, executor
):
    make_zip(tmp_path / "in" / "big.zip", {"blob.bin": float_rows(500_000)})  # 8 MB
    make_zip(tmp_path / "in" / "small.zip", {"blob.bin": float_rows(10_000)})  # 160 kB
    script = tmp_path / "fsize.py"
    script.write_text(FSIZE_SCRIPT)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "in"), str(out), fmt, codec, executor],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.returncode == 0, proc.stderr
    results = {rel.split(".")[0]: (status, error) for rel, status, error in json.loads(proc.stdout)}
    assert results["small"] == ("converted", None)
    status, error = results["big"]
    assert status == "failed"
    assert error == (
        "disk full or file too large while writing the store (File too large); "
        "free space or raise the limit"
    )
    suffix = ".zarr" if fmt == "zarr" else ".h5"
    extra = ["all.h5"] if fmt == "hdf5" else []  # the run's virtual dataset, over small only
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["manifest.json", f"small{suffix}", *extra]
    )


def _tasks(folder: Path, names: list[str], size: int) -> list:
    from zconvert.core.convert_options import ConvertOptions
    from zconvert.core.records import Task

    folder.mkdir(parents=True, exist_ok=True)
    tasks = []
    for name in names:
        path = folder / f"{name}.zip"
        path.write_bytes(b"\0" * size)
        tasks.append(
            Task(str(path), str(folder / f"{name}.zarr"), f"{name}.zarr", ConvertOptions())
        )
    return tasks


def test_small_archives_travel_in_batches_in_order_and_large_ones_alone(tmp_path):
    from zconvert.run.executors.local import BATCH_BYTES, BATCH_MAX, plan_batches

    small = _tasks(tmp_path / "s", [f"s{i:03d}" for i in range(200)], 1000)
    large = _tasks(tmp_path / "l", ["big0", "big1"], BATCH_BYTES)
    tasks = [*small[:100], large[0], *small[100:], large[1]]
    batches = plan_batches(tasks, workers=2)
    assert [i for b in batches for i in b] == list(range(len(tasks)))  # each once, in order
    assert [100] in batches and [len(tasks) - 1] in batches
    assert max(len(b) for b in batches) <= BATCH_MAX
    assert len(batches) >= 2 * 8 - 1  # enough batches to keep both workers busy to the end
    assert len(batches) < len(tasks) // 4  # and far fewer round trips than tasks
    # Few tasks: one per batch, so that every worker gets some.
    assert plan_batches(small[:6], workers=2) == [[i] for i in range(6)]


def test_a_worker_dying_inside_a_batch_fails_only_its_task(tmp_path):
    """Real pool, real SIGKILL: batch-mates that had finished lose only their Result and are
    rerun; the task that was running is retried alone and blamed only if it dies again."""
    from zconvert.run.executors.local import LocalExecutor

    from .._poison import die_on_poison

    names = [f"s{i:03d}" for i in range(120)]
    names[57] = "poison57"
    tasks = _tasks(tmp_path / "in", names, 1000)
    results = list(LocalExecutor(workers=2).map(die_on_poison, tasks))
    by_name = {os.path.basename(r.archive): r for r in results}
    assert len(results) == len(tasks) == len(by_name)  # every task reported exactly once
    poisoned = by_name.pop("poison57.zip")
    assert poisoned.status == "failed" and "again when retried alone" in poisoned.error
    assert all(r.status == "converted" for r in by_name.values())
