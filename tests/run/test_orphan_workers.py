"""kill -9 of a run's process ends every process it started: no worker is left idle on its
pipe, holding memory and the run's stdout (`zconvert convert --json | wc -c` must end)."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import psutil
import pytest

from ..conftest import float_rows, make_zip

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

GONE_WITHIN_S = 10.0
# A parent holding HDF5 makes the local executor start its workers from a forkserver (see
# executors/local.py: _context); the same command line otherwise forks them.
WITH_HDF5_LOADED = (
    "import h5py, runpy; runpy.run_module('zconvert', run_name='__main__', alter_sys=True)"
)


@pytest.fixture(scope="module")
def slow_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Archives that keep two workers busy for seconds with --codec gzip (stored members:
    quick to write)."""
    folder = tmp_path_factory.mktemp("in")
    for i in range(4):
        member = {"blob.bin": float_rows(2_000_000, seed=i)}
        make_zip(folder / f"a{i}.zip", member, compression=zipfile.ZIP_STORED)
    return folder


def _start(start: str, inputs: Path, out: Path) -> subprocess.Popen[bytes]:
    entry = ["-c", WITH_HDF5_LOADED] if start == "forkserver" else ["-m", "zconvert"]
    args = ["convert", str(inputs), "-o", str(out), "--workers", "2", "--json", "--codec", "gzip"]
    if start == "dask":
        args += ["--executor", "dask"]
    return subprocess.Popen(
        [sys.executable, *entry, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )


def _descendants_once_started(proc: subprocess.Popen[bytes], count: int) -> list[psutil.Process]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before its workers could be seen"
        family = psutil.Process(proc.pid).children(recursive=True)
        if len(family) >= count:
            return family
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} processes under the run after 60 s")


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _read_to_eof(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Whether the run's stdout reached end-of-file within timeout_s: only once every process
    holding the pipe has gone."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if selector.select(left) and os.read(fd, 1 << 16) == b"":
                return True
    return False


@pytest.mark.parametrize(
    "start, processes",
    [
        ("fork", 2),  # the two workers
        ("forkserver", 4),  # the forkserver, multiprocessing's resource tracker, two workers
        ("dask", 3),  # a LocalCluster: the resource tracker, two worker processes
    ],
)
def test_kill_9_of_a_run_ends_every_process_it_started(tmp_path, slow_inputs, start, processes):
    proc = _start(start, slow_inputs, tmp_path / "out")
    family: list[psutil.Process] = []
    try:
        family = _descendants_once_started(proc, processes)
        under_forkserver = any(p.ppid() != proc.pid for p in family)
        assert under_forkserver == (start == "forkserver"), [p.ppid() for p in family]

        proc.send_signal(signal.SIGKILL)
        _, alive = psutil.wait_procs(family, timeout=GONE_WITHIN_S)
        alive = [p for p in alive if _running(p)]  # a zombie is gone, only not reaped yet
        assert not alive, f"still running after the run was killed: {alive}"
        assert _read_to_eof(proc, timeout_s=1.0), "something still holds the run's stdout"
    finally:
        for p in family:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
