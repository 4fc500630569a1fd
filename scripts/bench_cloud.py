"""bench.py's cloud suite: whole `python -m zconvert` commands against a real S3 API server.

moto_server runs as a child on 127.0.0.1 (a free port) for the suite's length, one fresh
bucket in memory; zconvert finds it and its credentials in the environment, as a user's would
(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...). Three measurements, each against the same work on
a local folder, side by side in the same run:

1. the seed set converted to s3:// against to a folder (Zarr with the default codec, HDF5
   uncompressed), a fresh output every time;
2. an up-to-date rerun of --cloud-rerun-count tiny archives, S3 in and out (target < 2 s),
   local in and S3 out, against local in and out; every timed rerun's --json must say all
   were skipped, or the suite fails;
3. `zconvert verify` and `zconvert inspect --json` of the Zarr seed output, by URL.

The server is on the same 2 cores as zconvert, so a ratio here is zconvert plus moto's
request handling, not zconvert against a cloud's latency.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

from bench import _discard, _row, ensure_data, ensure_tiny_data

BUCKET = "zconvert-bench"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
RERUN_TARGET_S = 2.0
SERVER_START_S = 30.0
# Seed runs, HDF5 first: the Zarr output left in s3://BUCKET/seed-out is what step 3 reads.
SEED_FORMATS = (("hdf5:none", ["--format", "hdf5", "--codec", "none"]), ("zarr", []))


# ---------------------------------------------------------------- the server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_answers(endpoint: str, server: subprocess.Popen[bytes], log_path: str) -> None:
    """Return once the endpoint answers any HTTP request; fail with moto's log if it exits or
    stays silent for SERVER_START_S."""
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            break
        try:
            urllib.request.urlopen(endpoint, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # an S3 error document is an answer
        except OSError:
            time.sleep(0.1)
    with open(log_path, errors="replace") as f:
        log = f.read()[-2000:]
    raise SystemExit(f"moto_server at {endpoint} did not answer (exit {server.poll()}):\n{log}")


@contextlib.contextmanager
def moto_server(work: str) -> Iterator[str]:
    """moto_server on 127.0.0.1 for the block's length; yields its endpoint URL."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    exe = os.path.join(os.path.dirname(sys.executable), "moto_server")
    log_path = os.path.join(work, "moto_server.log")  # a line per request: not on a pipe
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        _wait_until_answers(endpoint, server, log_path)
        yield endpoint
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _filesystem(endpoint: str) -> Any:
    import s3fs

    return s3fs.S3FileSystem(
        key=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        secret=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        client_kwargs={"endpoint_url": endpoint},
        skip_instance_cache=True,
    )


def _remove(fs: Any, url: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        fs.rm(url, recursive=True)
    fs.invalidate_cache()


# ---------------------------------------------------------------- commands
def _zconvert(*argv: str) -> list[str]:
    return [sys.executable, "-m", "zconvert", *argv]


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    """(wall seconds, stdout) of one command; a failing command stops the suite with its
    stderr. Output goes to files: a 1,000-archive --json report fills a pipe, and reading one
    would put the harness in the timing. No memory: the peak wait4 reports for a command is
    the largest of it and every worker it reaped, not the command's own."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.run(argv, stdout=out, stderr=err, env=env)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        if proc.returncode:
            stderr = err.read().decode(errors="replace")
            raise SystemExit(f"{' '.join(argv)}: exit {proc.returncode}:\n{stderr[-2000:]}")
        return wall, out.read().decode()


def _report_of(argv: list[str], stdout: str) -> dict[str, Any]:
    try:
        return json.loads(stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"{' '.join(argv)}: no JSON report on stdout:\n{stdout[-2000:]}") from None


def _expect(argv: list[str], report: dict[str, Any], **counts: int) -> None:
    """Fail loudly unless the report's counts are these: a rerun that converts anything, or
    a first run that skips, times the wrong work."""
    got = {key: report.get(key) for key in counts}
    if got != counts:
        raise SystemExit(f"{' '.join(argv)}: expected {counts}, the report says {got}")


# Checks what one run's stdout says, given its name and command; raises SystemExit if wrong.
Check = Callable[[str, list[str], str], None]


def _best_of(
    title: str,
    commands: dict[str, list[str]],
    args: argparse.Namespace,
    env: dict[str, str],
    before: Callable[[str], None] | None = None,
    check: Check | None = None,
) -> dict[str, float]:
    """Each command's best wall time over --repeat rounds, alternating; `before` runs untimed
    ahead of each, `check` on every timed run's stdout."""
    best: dict[str, float] = {}
    for round_ in range(args.repeat):
        for name, argv in commands.items():
            if before:
                before(name)
            wall, stdout = _run(argv, env)
            if check:
                check(name, argv, stdout)
            print(f"  [{title} round {round_ + 1}] {name:<22} {wall:7.2f} s", flush=True)
            best[name] = min(wall, best.get(name, wall))
    return best


def _against_folder(
    title: str, best: dict[str, float], folder: str, s3: str
) -> list[dict[str, object]]:
    return [
        _row(title, folder, best[folder]),
        _row(title, s3, best[s3], folder, best[s3] / best[folder]),
    ]


# ---------------------------------------------------------------- the three measurements
def _seed_rows(
    args: argparse.Namespace, env: dict[str, str], fs: Any, data: str, local_out: str
) -> list[dict[str, object]]:
    """The seed set to s3:// against to a folder, alternating, best of --repeat; a fresh
    output each time (removed before the run, untimed), both commands with --overwrite."""
    s3_out = f"s3://{BUCKET}/seed-out"
    title = f"cloud seed x{args.count}"
    workers = ["--workers", str(args.workers)]

    def fresh_output(name: str) -> None:
        if name.endswith("-> s3"):
            _remove(fs, s3_out)
        else:
            _discard(local_out)

    rows: list[dict[str, object]] = []
    for fmt, flags in SEED_FORMATS:
        folder, s3 = f"{fmt} -> folder", f"{fmt} -> s3"
        outs = {s3: s3_out, folder: local_out}
        commands = {
            name: _zconvert("convert", data, "-o", out, "--overwrite", "-q", *workers, *flags)
            for name, out in outs.items()
        }
        best = _best_of(title, commands, args, env, before=fresh_output)
        rows += _against_folder(title, best, folder, s3)
    return rows


def _read_back_rows(
    args: argparse.Namespace, env: dict[str, str], local_out: str
) -> list[dict[str, object]]:
    """verify and inspect --json of the Zarr seed output by URL, against the same commands on
    the folder copy (for the ratio, which --compare follows); best of --repeat."""
    places = (("folder", local_out), ("s3", f"s3://{BUCKET}/seed-out"))
    commands = {
        f"verify {where}": _zconvert("verify", out, "--workers", str(args.workers))
        for where, out in places
    } | {f"inspect --json {where}": _zconvert("inspect", out, "--json") for where, out in places}

    def all_stores(name: str, argv: list[str], stdout: str) -> None:
        if name.startswith("inspect"):
            stores = _report_of(argv, stdout).get("stores", [])
            if len(stores) != args.count:
                raise SystemExit(f"{' '.join(argv)}: {len(stores)} stores, not {args.count}")

    title = f"cloud read back x{args.count}"
    best = _best_of(title, commands, args, env, check=all_stores)
    rows = []
    for op in ("verify", "inspect --json"):
        rows += _against_folder(title, best, f"{op} folder", f"{op} s3")
    return rows


def _rerun_rows(args: argparse.Namespace, env: dict[str, str], fs: Any) -> list[dict[str, object]]:
    """Up-to-date reruns of N tiny archives: S3 -> S3 and local -> S3 against local -> folder
    (target < 2 s on S3), best of --repeat; every run's --json report is checked."""
    n = args.cloud_rerun_count
    local_in = ensure_tiny_data(os.path.join(args.work, f"tiny-{n}"), n)
    names = sorted(f for f in os.listdir(local_in) if f.endswith(".zip"))
    start = time.perf_counter()
    # One call for all: s3fs sends the uploads concurrently, in batches.
    fs.put([os.path.join(local_in, f) for f in names], [f"{BUCKET}/tiny-in/{f}" for f in names])
    title = f"cloud rerun x{n:,}"
    print(f"  [{title}] uploaded in {time.perf_counter() - start:.2f} s", flush=True)
    local_out = os.path.join(args.work, "out-cloud-tiny")
    _discard(local_out)
    base = "rerun local -> folder"
    places = {
        base: (local_in, local_out),
        "rerun s3 -> s3": (f"s3://{BUCKET}/tiny-in/", f"s3://{BUCKET}/tiny-out"),
        "rerun local -> s3": (local_in, f"s3://{BUCKET}/tiny-out-local"),
    }
    # --json on the timed runs themselves: what is checked is what was timed.
    workers = ["--workers", str(args.workers)]
    commands = {
        name: _zconvert("convert", src, "-o", out, "-q", "--json", *workers)
        for name, (src, out) in places.items()
    }
    first: dict[str, float] = {}
    for name, argv in commands.items():
        first[name], stdout = _run(argv, env)
        _expect(argv, _report_of(argv, stdout), converted=n, skipped=0, failed=0)
        what = name.removeprefix("rerun ")
        print(f"  [{title}] first conversion {what:<16} {first[name]:7.2f} s", flush=True)

    def all_skipped(name: str, argv: list[str], stdout: str) -> None:
        _expect(argv, _report_of(argv, stdout), converted=0, skipped=n, failed=0)

    best = _best_of(title, commands, args, env, check=all_skipped)
    _discard(local_out)
    rows = []
    for name, wall in best.items():
        note = f"first conversion {first[name]:.2f} s; {wall / n * 1e6:,.0f} us per archive"
        if name == base:
            rows.append(_row(title, name, wall, note=note))
        else:
            target, met = f"< {RERUN_TARGET_S:g} s", wall < RERUN_TARGET_S
            rows.append(_row(title, name, wall, base, wall / best[base], target, met, note=note))
    return rows


def suite_cloud(args: argparse.Namespace) -> list[dict[str, object]]:
    """The seed set to S3 against to a folder, an up-to-date rerun of many archives on S3,
    and reading the output back by URL; whole commands against moto_server."""
    data = ensure_data(os.path.join(args.work, f"seed-{args.count}"), args.count, args.rows)
    local_out = os.path.join(args.work, "out-cloud-seed")
    with moto_server(args.work) as endpoint:
        env = {**os.environ, **CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}
        fs = _filesystem(endpoint)
        fs.mkdir(BUCKET)
        seed = _seed_rows(args, env, fs, data, local_out)
        read_back = _read_back_rows(args, env, local_out)  # while the Zarr outputs are there
        _discard(local_out)
        rerun = _rerun_rows(args, env, fs)
    return seed + rerun + read_back
