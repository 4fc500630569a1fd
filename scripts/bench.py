#!/usr/bin/env python3
"""zconvert against the floor, side by side in one run; prints ratios and writes BENCHMARKS.md.

The floor is the work any converter must do with the same number of worker processes: read
each member, inflate it with the fastest raw inflate available, CRC32 it and, for a
compressed store, compress every chunk with the same codec; then discard the bytes. Every
scenario runs in a fresh child process (so peak memory is its own), alternating scenarios
over --repeat rounds; the best wall time of each is kept. Outputs are deleted only at the
end (see _discard): start a run a few minutes after deleting many files in the same file
system, or inode allocation on ext4 without a journal slows the Zarr runs.

Suites: seed (15 archives), seed60, throughput (60 archives against the floor), big (one 1 GiB
member), small (2,000 tiny archives), startup, shards, codecs; npz (60 .npz files written by
np.savez_compressed, against the same floor as the ZIPs); memmap (zconvert.open_memmap of a
stored .npz member against np.load(mmap_mode="r") of the same .npy on disk: open time and a
full scan, page cache warm); scale (1,000, 10,000 and 100,000 archives of 250 x 4: convert, an
up-to-date rerun, verify, inspect, with the cost per archive and the parent's peak memory);
cloud (scripts/bench_cloud.py: the seed set to s3:// against to a folder, an up-to-date rerun of
1,000 archives on S3, verify and inspect by URL, against moto_server on 127.0.0.1).

    python scripts/bench.py                        # the seed set: 15 x 2,000,000 x 4 float32
    python scripts/bench.py --count 60 --suite throughput
    python scripts/bench.py --suite npz,memmap     # .npz inputs, and maps straight from archives
    python scripts/bench.py --suite scale          # per-archive costs at 1k, 10k, 100k archives
    python scripts/bench.py --suite cloud          # s3:// against a folder (moto_server)
    python scripts/bench.py --suite references     # index stored archives, size, reads in place
    python scripts/bench.py --suite all --md BENCHMARKS.md --compare BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

CHUNK_ROWS = 262_144  # zconvert's default for 4 x float32 rows: 4 MiB chunks
# The floor reads and inflates in the pieces that inflate fastest here: 256 KiB in and out
# (76 ms per 32 MB member, against 104-135 ms in 1 MiB pieces, whose outputs malloc maps
# afresh each time).
FLOOR_PIECE = 256 << 10


# ---------------------------------------------------------------- measurements in a child
def _vmhwm() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _floor_task(args: tuple[str, str | None]) -> int:
    """Inflate every member of one archive (raw deflate from its data offset, 256 KiB pieces),
    CRC32 it, optionally compress each chunk with `codec`; discard. Returns peak RSS."""
    import struct
    import zipfile

    import numpy as np

    from zconvert.zipread.inflate import crc32, raw_decompressobj

    path, codec = args
    encoder = None
    if codec:
        from zconvert.sinks.codecs import get_preset

        encoder = get_preset(codec).numcodecs_codec()
    chunk_bytes = CHUNK_ROWS * 16
    with open(path, "rb") as f, zipfile.ZipFile(f) as zf:
        for info in zf.infolist():
            f.seek(info.header_offset)
            n, m = struct.unpack("<26x2H", f.read(30))
            f.seek(info.header_offset + 30 + n + m)
            d = raw_decompressobj()
            left = info.compress_size
            crc = 0
            pending: bytes | memoryview = b""
            piece = memoryview(bytearray(FLOOR_PIECE))
            chunk = bytearray(chunk_bytes)  # a compressor needs whole chunks: assemble them
            filled = 0
            while left or pending:
                if not pending:  # into a reused buffer: a new bytes per read page-faults
                    k = f.readinto(piece[: min(FLOOR_PIECE, left)])
                    left -= k
                    pending = piece[:k]
                out = d.decompress(pending, min(FLOOR_PIECE, chunk_bytes - filled))
                pending = d.unconsumed_tail
                crc = crc32(out, crc)
                if encoder is not None and out:
                    chunk[filled : filled + len(out)] = out
                    filled += len(out)
                    if filled == chunk_bytes:
                        encoder.encode(np.frombuffer(chunk, dtype="<f4"))
                        filled = 0
            if encoder is not None and filled:
                encoder.encode(np.frombuffer(chunk, dtype="<f4"))  # the padded edge chunk
            assert crc == info.CRC
    return _vmhwm()


def _seed_task(path: str):  # type: ignore[no-untyped-def]
    """The seed's approach: extract the member to a file, return an np.memmap of it."""
    import tempfile
    import zipfile

    import numpy as np

    with zipfile.ZipFile(path) as zf:
        info = zf.infolist()[0]
        fd, raw = tempfile.mkstemp(suffix=".raw", dir=os.environ.get("BENCH_TMP"))
        with zf.open(info) as src, os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst, 8 << 20)
    return np.memmap(raw, dtype="<f4", mode="r").reshape(-1, 4)


def _worker_settings() -> None:
    import zconvert.run.worker_env  # noqa: F401 - the same thread and malloc settings as zconvert's


def _pool(workers: int) -> ProcessPoolExecutor:
    ctx = get_context("forkserver")
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_settings)


def run_scenario(name: str, data: str, out: str, workers: int) -> dict[str, float]:
    """Runs in a fresh child process; returns wall seconds and peak memory (bytes)."""
    archives = sorted(
        os.path.join(root, f)
        for root, _, files in os.walk(data)
        for f in files
        if f.endswith((".zip", ".npz"))
    )
    worker_peak = 0
    start = time.perf_counter()
    if name.startswith("floor"):
        codec = {"floor": None, "floor+blosc-lz4": "blosc-lz4", "floor+blosc-zstd": "blosc-zstd"}[
            name
        ]
        with _pool(workers) as pool:
            worker_peak = max(pool.map(_floor_task, [(a, codec) for a in archives]))
    elif name == "seed-memmap":
        os.makedirs(out, exist_ok=True)
        os.environ["BENCH_TMP"] = out
        with _pool(workers) as pool:
            results = list(pool.map(_seed_task, archives))
        assert all(r._mmap is None for r in results)  # what pickling did to them
    elif name == "stdlib-inflate-1thread":
        import zipfile
        import zlib

        for path in archives:
            with open(path, "rb") as f, zipfile.ZipFile(f) as zf:
                for info in zf.infolist():
                    with zf.open(info) as member:  # stdlib zlib, one thread
                        while member.read(8 << 20):
                            pass
        del zlib
    else:
        import zconvert
        from zconvert.cli.commands import configure_process

        configure_process()  # this child is the command's process, as `zconvert convert` runs
        fmt, codec, *flags = name.split(":")
        options = {"format": fmt, "codec": codec, "workers": workers}
        for flag in flags:  # parallel-inflate, no-parallel-inflate, chunk-rows=1000
            name, _, value = flag.partition("=")
            key = name.removeprefix("no-").replace("-", "_")
            options[key] = int(value) if value else not name.startswith("no-")
        report = zconvert.convert(data, out, **options)
        assert report.ok, report.failed[:1]
        worker_peak = max(r.peak_rss for r in report.results)
    wall = time.perf_counter() - start
    files = sum(len(names) for _, _, names in os.walk(out)) if os.path.isdir(out) else 0
    return {"wall": wall, "parent_peak": _vmhwm(), "worker_peak": worker_peak, "files": files}


# Outputs are moved aside while the benchmark runs and deleted at its end. On ext4 without a
# journal (this machine's), creating an inode skips every inode of its group freed in the last
# 60-360 s, each skip reading the inode table: deleting one scenario's 1,200 Zarr files just
# before the next made its mkdir/open calls 7% of all CPU (perf: find_inode_bit,
# recently_deleted), a cost of the harness, not of converting.
_TRASH = "trash"


def _discard(path: str) -> None:
    """Move `path` into the trash folder beside it (deleted at the end of the run)."""
    if os.path.lexists(path):
        trash = os.path.join(os.path.dirname(os.path.abspath(path)), _TRASH)
        os.makedirs(trash, exist_ok=True)
        os.rename(path, os.path.join(trash, f"{os.path.basename(path)}-{time.time_ns()}"))


def _child(name: str, data: str, out: str, workers: int) -> dict[str, float]:
    _discard(out)
    proc = subprocess.run(
        [sys.executable, __file__, "--_child", name, data, out, str(workers)],
        capture_output=True,
        text=True,
    )
    _discard(out)
    if proc.returncode:
        raise SystemExit(f"scenario {name} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- data
def ensure_data(folder: str, count: int, rows: int, kind: str = "uniform") -> str:
    stamp = os.path.join(folder, f".complete-{count}-{rows}-{kind}")
    if not os.path.exists(stamp):
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run(
            [
                sys.executable,
                os.path.join(HERE, "make_testdata.py"),
                folder,
                "-n",
                str(count),
                "--rows",
                str(rows),
                "--kind",
                kind,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        open(stamp, "w").close()
    return folder


def ensure_npz_data(folder: str, count: int, rows: int, stored: bool = False) -> str:
    """`count` .npz files of one rows x 4 float32 array each, written by numpy itself
    (savez_compressed, or savez when `stored`): the same values as ensure_data's ZIPs, so the
    two inflate alike."""
    stamp = os.path.join(folder, f".complete-{count}-{rows}-{'stored' if stored else 'deflated'}")
    if not os.path.exists(stamp):
        import numpy as np
        from make_testdata import member_data

        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        save = np.savez if stored else np.savez_compressed
        width = len(str(count - 1))
        for i in range(count):
            data = member_data(np.random.default_rng([0, i]), rows, 4, "uniform")
            save(os.path.join(folder, f"archive_{i:0{width}d}.npz"), values=data)
        open(stamp, "w").close()
    return folder


def ensure_memmap_data(folder: str, rows: int) -> tuple[str, str]:
    """One stored .npz of a single member, values.npy, and that member extracted beside it."""
    ensure_npz_data(folder, 1, rows, stored=True)
    archive = os.path.join(folder, "archive_0.npz")
    npy = os.path.join(folder, "values.npy")
    if not os.path.exists(npy):
        import zipfile

        with zipfile.ZipFile(archive) as zf, zf.open("values.npy") as src, open(npy, "wb") as dst:
            shutil.copyfileobj(src, dst, 8 << 20)
    return archive, npy


# ---------------------------------------------------------------- suites
def _row(suite, scenario, wall, vs="", ratio=None, target="", met=None, m=None, note=""):  # type: ignore[no-untyped-def]
    m = m or {}
    return {
        "suite": suite,
        "scenario": scenario,
        "wall_s": round(wall, 6),
        "vs": vs,
        "ratio": None if ratio is None else round(ratio, 3),
        "target": target,
        "met": "" if met is None else ("yes" if met else "NO"),
        "parent_peak_mb": round(m.get("parent_peak", 0) / 1e6, 1),
        "worker_peak_mb": round(m.get("worker_peak", 0) / 1e6, 1),
        "note": note,
    }


def best_of(
    title: str, scenarios: list[str], data: str, args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    """Every scenario in a fresh child, alternating, --repeat rounds; the fastest of each."""
    best: dict[str, dict[str, float]] = {}
    for round_ in range(args.repeat):
        for name in scenarios:
            m = _child(name, data, os.path.join(args.work, "out"), args.workers)
            print(f"  [{title} round {round_ + 1}] {name:<24} {m['wall']:7.2f} s", flush=True)
            if name not in best or m["wall"] < best[name]["wall"]:
                best[name] = m
    return best


def compare_rows(
    title: str,
    scenarios: list[str],
    floor_of: dict[str, tuple[str, float]],
    data: str,
    args: argparse.Namespace,
) -> list[dict[str, object]]:
    """Rows with each scenario's ratio to its floor and whether it meets the target ratio
    (a target of 0: the ratio is shown, with no target)."""
    best = best_of(title, scenarios, data, args)
    rows = []
    for name in scenarios:
        m = best[name]
        floor, target = floor_of.get(name, ("", 0.0))
        ratio = m["wall"] / best[floor]["wall"] if floor else None
        met = None if ratio is None or not target else ratio <= target
        target_text = f"<= {target:.2f}x" if floor and target else ""
        rows.append(_row(title, name, m["wall"], floor, ratio, target_text, met, m))
    return rows


def _note_peak(
    rows: list[dict[str, object]], compared: dict[str, object], process: str, limit_mb: float
) -> list[dict[str, object]]:
    """Note on each compared scenario's row whether the parent's or worker's peak stayed
    under `limit_mb`."""
    for r in rows:
        if r["scenario"] in compared:
            ok = float(r[f"{process}_peak_mb"]) < limit_mb  # type: ignore[arg-type]
            r["note"] = f"{process} peak < {limit_mb:g} MB: {'yes' if ok else 'NO'}"
    return rows


def suite_seed(args: argparse.Namespace, count: int) -> list[dict[str, object]]:
    data = ensure_data(os.path.join(args.work, f"seed-{count}"), count, args.rows)
    # Each store against the floor that does its work (a compressed store's floor compresses
    # too). The speed targets are the throughput suite's (60 archives); this suite's target
    # is the parent's memory, against the seed's approach (seed-memmap).
    scenarios = ["floor", "hdf5:none", "floor+blosc-lz4", "zarr:blosc-lz4", "seed-memmap"]
    floors = {"zarr:blosc-lz4": ("floor+blosc-lz4", 0.0), "hdf5:none": ("floor", 0.0)}
    rows = compare_rows(f"seed x{count}", scenarios, floors, data, args)
    return _note_peak(rows, floors, "parent", 80)


def suite_throughput(args: argparse.Namespace) -> list[dict[str, object]]:
    count = args.throughput_count
    data = ensure_data(os.path.join(args.work, f"seed-{count}"), count, args.rows)
    scenarios = [
        "floor",
        "hdf5:none",
        "floor+blosc-lz4",
        "zarr:blosc-lz4",
        "floor+blosc-zstd",
        "zarr:blosc-zstd",
    ]
    floors = {
        "hdf5:none": ("floor", 1.1),
        "zarr:blosc-lz4": ("floor+blosc-lz4", 1.1),
        "zarr:blosc-zstd": ("floor+blosc-zstd", 1.2),
    }
    return compare_rows(f"throughput x{count}", scenarios, floors, data, args)


def suite_npz(args: argparse.Namespace) -> list[dict[str, object]]:
    """The throughput suite's scenarios on .npz inputs (savez_compressed; .npy members read
    through their header) of the same values, against the same floor."""
    count = args.npz_count
    data = ensure_npz_data(os.path.join(args.work, f"npz-{count}"), count, args.rows)
    scenarios = ["floor", "hdf5:none", "floor+blosc-lz4", "zarr:blosc-lz4"]
    floors = {"hdf5:none": ("floor", 1.1), "zarr:blosc-lz4": ("floor+blosc-lz4", 1.1)}
    rows = compare_rows(f"npz x{count}", scenarios, floors, data, args)
    walls = {r["scenario"]: float(r["wall_s"]) for r in rows}  # type: ignore[arg-type]
    for r in rows:  # the default store against the plain floor too: what its codec costs
        if r["scenario"] == "zarr:blosc-lz4":
            r["note"] = f"the default; {walls['zarr:blosc-lz4'] / walls['floor']:.2f}x floor"
    return rows


def _recache(path: str) -> None:
    """Drop `path` from the page cache and read it back in 8 MiB pieces. How a file's pages
    came into the cache (numpy's writes, zipfile's, a copy's) changes how a fresh map faults
    them in: 386 faults against 311 for the same 32 MB here, and 1.7x the time to touch every
    page. Read back alike, both files fault alike (411 each)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # dirty pages would stay cached
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        while os.read(fd, 8 << 20):
            pass
    finally:
        os.close(fd)


def measure_memmap(archive: str, npy: str, opens: int, scans: int) -> dict[str, list[float]]:
    """In a fresh child: seconds per open, and per full scan of a fresh map, for
    zconvert.open_memmap of the archive's member and np.load(npy, mmap_mode="r"), alternating
    which goes first. Both files are cached alike before timing (see _recache)."""
    import numpy as np

    import zconvert

    for path in (archive, npy):
        _recache(path)

    def open_zconvert() -> np.ndarray:
        return zconvert.open_memmap(archive, "values")

    def open_numpy() -> np.ndarray:
        return np.load(npy, mmap_mode="r")

    mapped, loaded = open_zconvert(), open_numpy()
    assert isinstance(mapped, np.memmap) and mapped.filename == os.path.abspath(archive)
    assert np.array_equal(mapped, loaded)
    del mapped, loaded
    times: dict[str, list[float]] = {k: [] for k in ("open-z", "open-np", "scan-z", "scan-np")}
    pairs = [("z", open_zconvert), ("np", open_numpy)]
    for i in range(opens):
        for key, open_ in pairs[:: 1 if i % 2 else -1]:
            start = time.perf_counter()
            m = open_()
            times[f"open-{key}"].append(time.perf_counter() - start)
            del m  # unmapped outside the timing
    for i in range(scans):
        for key, open_ in pairs[:: 1 if i % 2 else -1]:
            m = open_()  # a fresh map: the scan faults in every page, as a first read does
            start = time.perf_counter()
            float(m.sum(dtype=np.float64))
            times[f"scan-{key}"].append(time.perf_counter() - start)
            del m
    return times


def suite_memmap(args: argparse.Namespace) -> list[dict[str, object]]:
    """zconvert.open_memmap of a stored .npz member against np.load(mmap_mode="r") of the same
    .npy on disk: median open time (target < 2 ms) and median full scan (target <= 1.1x)."""
    import statistics

    archive, npy = ensure_memmap_data(os.path.join(args.work, f"memmap-{args.rows}"), args.rows)
    proc = subprocess.run(
        [sys.executable, __file__, "--_memmap", archive, npy, str(args.opens), str(args.scans)],
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        raise SystemExit(f"memmap suite failed:\n{proc.stderr}")
    times = json.loads(proc.stdout.strip().splitlines()[-1])
    median = {k: statistics.median(v) for k, v in times.items()}
    for key, v in times.items():
        print(
            f"  [memmap] {key:<8} median {median[key] * 1e3:8.3f} ms  best {min(v) * 1e3:8.3f} ms"
        )
    title = "memmap stored .npz"
    base_open = 'np.load(npy, mmap_mode="r") open'
    base_scan = "np.load memmap: full scan"
    opens, scans = f"median of {args.opens}", f"median of {args.scans}; sum as float64"
    open_z, open_np = median["open-z"], median["open-np"]
    scan_ratio = median["scan-z"] / median["scan-np"]
    return [
        _row(title, base_open, open_np, note=f"{opens}: {open_np * 1e3:.3f} ms"),
        _row(
            title,
            "zconvert.open_memmap(npz, name) open",
            open_z,
            base_open,
            open_z / open_np,
            "< 2 ms",
            open_z < 0.002,
            note=f"{opens}: {open_z * 1e3:.3f} ms",
        ),
        _row(title, base_scan, median["scan-np"], note=scans),
        _row(
            title,
            "zconvert memmap: full scan",
            median["scan-z"],
            base_scan,
            scan_ratio,
            "<= 1.10x",
            scan_ratio <= 1.1,
            note=scans,
        ),
    ]


def suite_big(args: argparse.Namespace) -> list[dict[str, object]]:
    """One archive with a single 1 GiB member against single-threaded stdlib inflate of it."""
    data = ensure_data(os.path.join(args.work, "big-1g"), 1, (1 << 30) // 16)
    base = "stdlib-inflate-1thread"
    one_thread = "hdf5:none:no-parallel-inflate"  # ISA-L on one thread, as before auto mode
    scenarios = [base, "hdf5:none", one_thread, "zarr:blosc-lz4"]
    floors = {"hdf5:none": (base, 0.6), one_thread: (base, 0.6), "zarr:blosc-lz4": (base, 0.6)}
    rows = compare_rows("one 1 GiB member", scenarios, floors, data, args)
    return _note_peak(rows, floors, "worker", 200)


def suite_small(args: argparse.Namespace) -> list[dict[str, object]]:
    """2,000 archives of 1,000 x 4: per-archive overhead, in archives per second."""
    data = ensure_data(os.path.join(args.work, "small-2000"), 2000, 1000)
    best = best_of("2000 small", ["zarr:blosc-lz4", "hdf5:none"], data, args)
    rows = []
    for name, m in best.items():
        rate = 2000 / m["wall"]
        target = ">= 400 archives/s"
        note = f"{rate:.0f} archives/s"
        rows.append(
            _row("2000 x (1000 x 4)", name, m["wall"], "", None, target, rate >= 400, m, note)
        )
    return rows


def suite_shards(args: argparse.Namespace) -> list[dict[str, object]]:
    """Small chunks (1,000 rows) alone, one file each, against the same packed into shards."""
    kind = "smooth"
    data = ensure_data(os.path.join(args.work, f"codecs-{kind}"), args.codec_count, args.rows, kind)
    plain = "zarr:blosc-lz4:chunk-rows=1000"
    sharded = f"{plain}:shard-rows=262000"
    best = best_of("small chunks", [plain, sharded], data, args)
    return [
        _row(
            "small chunks",
            name,
            best[name]["wall"],
            plain if name == sharded else "",
            best[name]["wall"] / best[plain]["wall"] if name == sharded else None,
            m=best[name],
            note=f"{int(best[name]['files'])} files",
        )
        for name in (plain, sharded)
    ]


def _time_command(argv: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def suite_startup(args: argparse.Namespace) -> list[dict[str, object]]:
    """Wall time of whole commands, as a user runs them (best of 5)."""
    data = ensure_data(os.path.join(args.work, "tiny"), 1, 1000)
    exe = os.path.join(os.path.dirname(sys.executable), "zconvert")
    out = os.path.join(args.work, "out-tiny")
    _discard(out)
    tiny = _time_command([exe, "convert", data, "-o", out, "--overwrite", "-q"], 5)
    version = _time_command([exe, "--version"], 5)
    python = _time_command([sys.executable, "-c", "pass"], 5)
    _discard(out)
    note = f"bare `python -c pass`: {python:.3f} s"
    return [
        _row(
            "start-up",
            "convert one 1000 x 4 archive",
            tiny,
            "",
            None,
            "<= 0.25 s",
            tiny <= 0.25,
            None,
            note,
        ),
        _row(
            "start-up",
            "zconvert --version",
            version,
            "",
            None,
            "<= 0.10 s",
            version <= 0.1,
            None,
            note,
        ),
    ]


CODEC_COMBOS = [
    (fmt, codec)
    for fmt in ("zarr", "hdf5")
    for codec in ("none", "blosc-lz4", "blosc-zstd", "zstd", "gzip")
]

READ_BACK = """
import sys, time, zconvert
refs = zconvert.refs(sys.argv[1])
start = time.perf_counter()
for ref in refs:
    ref.read()
print(time.perf_counter() - start)
"""


def suite_codecs(args: argparse.Namespace) -> list[dict[str, object]]:
    """Ratio, write and read speed of every preset on uniform random and smooth data."""
    import zconvert

    rows: list[dict[str, object]] = []
    for kind in ("uniform", "smooth"):
        folder = os.path.join(args.work, f"codecs-{kind}")
        data = ensure_data(folder, args.codec_count, args.rows, kind)
        for fmt, codec in CODEC_COMBOS:
            out = os.path.join(args.work, "out-codecs")
            _discard(out)
            start = time.perf_counter()
            report = zconvert.convert(
                data, out, format=fmt, codec=codec, workers=args.workers, executor="local"
            )
            wall = time.perf_counter() - start
            assert report.ok, report.failed[:1]
            stored = sum(a.stored_bytes or 0 for r in report.results for a in r.arrays)
            proc = subprocess.run(
                [sys.executable, "-c", READ_BACK, out], check=True, capture_output=True, text=True
            )
            read_s = float(proc.stdout.split()[-1])
            _discard(out)
            row = {
                "kind": kind,
                "format": fmt,
                "codec": codec,
                "ratio": round(report.bytes_out / stored, 3),
                "write_mb_s": round(report.bytes_out / wall / 1e6),
                "read_mb_s": round(report.bytes_out / read_s / 1e6),
            }
            rows.append(row)
            print(
                f"  [codecs] {kind:<8} {fmt:<5} {codec:<11} ratio {row['ratio']:.2f} "
                f"write {row['write_mb_s']} MB/s read {row['read_mb_s']} MB/s",
                flush=True,
            )
    return rows


# ---------------------------------------------------------------- output
COLUMNS = "| suite | scenario | wall s | ratio | vs | target | met | parent peak MB | worker peak MB | note |"


def _seconds(wall: object) -> str:
    """Three decimals, as ever; six under 10 ms (memory-map opens and scans)."""
    return f"{wall:.3f}" if float(wall) >= 0.01 else f"{wall:.6f}"  # type: ignore[arg-type]


def table_lines(rows: list[dict[str, object]]) -> list[str]:
    lines = [COLUMNS, "|---|---|---:|---:|---|---|---|---:|---:|---|"]
    for r in rows:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        lines.append(
            f"| {r['suite']} | {r['scenario']} | {_seconds(r['wall_s'])} | {ratio} | {r['vs']} | "
            f"{r['target']} | {r['met']} | {r['parent_peak_mb']:.1f} | {r['worker_peak_mb']:.1f} | "
            f"{r['note']} |"
        )
    return lines


def codec_lines(rows: list[dict[str, object]]) -> list[str]:
    lines = [
        "| data | format | codec | ratio | write MB/s | read MB/s |",
        "|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['kind']} | {r['format']} | {r['codec']} | {r['ratio']:.2f} | "
            f"{r['write_mb_s']} | {r['read_mb_s']} |"
        )
    return lines


def machine_line() -> str:
    import h5py
    import numcodecs
    import numpy
    import zarr

    from zconvert import __version__
    from zconvert.zipread.inflate import backend_summary

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, zconvert {__version__}, "
        f"zarr {zarr.__version__}, h5py {h5py.__version__} (HDF5 {h5py.version.hdf5_version}), "
        f"numcodecs {numcodecs.__version__}, numpy {numpy.__version__}, {backend_summary()}"
    )


def write_markdown(
    path: str, rows: list[dict[str, object]], codecs: list[dict[str, object]], command: str
) -> None:
    lines = [
        "# Benchmarks",
        "",
        f"Machine: {machine_line()}.",
        "",
        f"Command: `{command}` ({time.strftime('%Y-%m-%d')}). Every scenario runs in a fresh",
        "process, alternating with the others; the best of the rounds is kept. Ratios are",
        "measured side by side in the same run: the machine is shared and noisy, so compare",
        "ratios, not seconds.",
        "",
        *table_lines(rows),
    ]
    if codecs:
        lines += [
            "",
            "## Codec presets",
            "",
            CODEC_NOTE,
            "",
            *codec_lines(codecs),
        ]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


CODEC_NOTE = (
    "Ratio = raw bytes / stored bytes; write = raw MB/s of a whole 2-worker run, pool start"
    " included; read = raw MB/s reading every array back in one fresh process, from disk (stores"
    " are written around the page cache, so nothing of them is cached)."
)


def read_previous(path: str) -> dict[tuple[str, str], float]:
    previous = {}
    try:
        with open(path) as f:
            for line in f:
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                if len(cells) == 10 and re.fullmatch(r"[\d.]+x", cells[3]):
                    previous[(cells[0], cells[1])] = float(cells[3][:-1])
    except FileNotFoundError:
        pass
    return previous


SCALE_ROWS = 250  # 250 x 4 float32 per archive: 4 kB, so per-archive costs dominate


def ensure_tiny_data(folder: str, count: int) -> str:
    """`count` archives of one 250 x 4 float32 member each (deflated), written directly."""
    stamp = os.path.join(folder, f".complete-{count}")
    if not os.path.exists(stamp):
        import zipfile

        import numpy as np

        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        width = len(str(count - 1))
        for i in range(count):
            blob = np.random.default_rng([1, i]).random((SCALE_ROWS, 4), dtype=np.float32)
            path = os.path.join(folder, f"a{i:0{width}d}.zip")
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
                zf.writestr("blob.bin", blob.tobytes())
        open(stamp, "w").close()
    return folder


def _measured(argv: list[str]) -> tuple[float, int]:
    """(wall seconds, peak resident memory of that process alone, bytes) of one command: its
    own rusage from wait4, so worker processes (its children) are not counted."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {proc.returncode}: {stderr[-2000:]}")
    return wall, usage.ru_maxrss * 1024


def suite_scale(args: argparse.Namespace) -> list[dict[str, object]]:
    """1,000, 10,000 and 100,000 tiny archives: convert, an up-to-date rerun, verify and
    inspect, each a whole command; cost per archive at each size, so that growth shows."""
    exe = os.path.join(os.path.dirname(sys.executable), "zconvert")
    rows: list[dict[str, object]] = []
    for count in sorted(int(c) for c in args.scale_sizes.split(",")):
        data = ensure_tiny_data(os.path.join(args.work, f"tiny-{count}"), count)
        out = os.path.join(args.work, f"out-scale-{count}")
        _discard(out)
        workers = ["--workers", str(args.workers)]
        times: dict[str, tuple[float, int]] = {}
        times["convert"] = _measured([exe, "convert", data, "-o", out, "-q", *workers])
        times["rerun"] = min(
            (_measured([exe, "convert", data, "-o", out, "-q", *workers]) for _ in range(3)),
            key=lambda m: m[0],
        )
        times["verify"] = _measured([exe, "verify", out, *workers])
        times["inspect"] = _measured([exe, "inspect", out])
        _discard(out)
        for op, (wall, peak) in times.items():
            per = wall / count * 1e6
            row = _row(f"scale {count:,}", op, wall, m={"parent_peak": peak})
            row["note"] = f"{per:,.0f} us per archive"
            if op == "rerun" and count >= 100_000:
                ok = wall < 3.0 and peak < 150e6
                row.update(target="< 3 s, parent < 150 MB", met="yes" if ok else "NO")
            if op == "verify":
                ratio = wall / times["convert"][0]
                row.update(vs="convert", ratio=round(ratio, 3), target="<= 1.00x")
                row["met"] = "yes" if ratio <= 1.0 else "NO"
            rows.append(row)
            print(
                f"  [scale {count:>7,}] {op:<8} {wall:8.2f} s  {per:8,.0f} us/archive  "
                f"parent peak {peak / 1e6:6.1f} MB",
                flush=True,
            )
    return rows


SUITES = (
    "seed",
    "seed60",
    "throughput",
    "npz",
    "memmap",
    "big",
    "small",
    "startup",
    "shards",
    "codecs",
    "scale",
    "cloud",
    "references",
)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_child":
        name, data, out, workers = sys.argv[2:6]
        print(json.dumps(run_scenario(name, data, out, int(workers))))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--_memmap":
        archive, npy, opens, scans = sys.argv[2:6]
        print(json.dumps(measure_memmap(archive, npy, int(opens), int(scans))))
        return
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--suite", default="seed", help=f"{' | '.join(SUITES)} | all (comma-separated)")
    p.add_argument("--count", type=int, default=15, help="archives in the seed suite")
    p.add_argument("--throughput-count", type=int, default=60, help="archives, throughput suite")
    p.add_argument("--npz-count", type=int, default=60, help=".npz files in the npz suite")
    p.add_argument("--opens", type=int, default=2000, help="memmap suite: opens of each kind")
    p.add_argument("--scans", type=int, default=100, help="memmap suite: full scans of each kind")
    p.add_argument("--codec-count", type=int, default=4, help="archives per data kind, codecs")
    p.add_argument("--scale-sizes", default="1000,10000,100000", help="archive counts, scale suite")
    p.add_argument("--cloud-rerun-count", type=int, default=1000, help="archives, cloud rerun")
    p.add_argument("--rows", type=int, default=2_000_000, help="rows of 4 float32 per array")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--work", default="bench-out", help="where generated data and outputs go")
    p.add_argument("--md", default=None, help="write the results table here (e.g. BENCHMARKS.md)")
    p.add_argument("--compare", default=None, help="a previous BENCHMARKS.md: print ratio changes")
    args = p.parse_args()
    os.makedirs(args.work, exist_ok=True)
    try:
        run_suites(p, args)
    finally:  # the outputs moved aside during the run (see _discard)
        shutil.rmtree(os.path.join(args.work, _TRASH), ignore_errors=True)


def run_suites(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    previous = read_previous(args.compare) if args.compare else {}
    suites = {s.strip() for s in args.suite.split(",")}
    if "all" in suites:
        suites = set(SUITES)
    unknown = suites - set(SUITES)
    if unknown:
        p.error(f"unknown suite {', '.join(sorted(unknown))}")
    rows: list[dict[str, object]] = []
    if "seed" in suites:
        rows += suite_seed(args, args.count)
    if "seed60" in suites:
        rows += suite_seed(args, 60)
    if "throughput" in suites:
        rows += suite_throughput(args)
    if "npz" in suites:
        rows += suite_npz(args)
    if "memmap" in suites:
        rows += suite_memmap(args)
    if "big" in suites:
        rows += suite_big(args)
    if "small" in suites:
        rows += suite_small(args)
    if "startup" in suites:
        rows += suite_startup(args)
    if "shards" in suites:
        rows += suite_shards(args)
    if "scale" in suites:
        rows += suite_scale(args)
    if "cloud" in suites:
        from bench_cloud import suite_cloud  # s3fs and moto only when asked for

        rows += suite_cloud(args)
    if "references" in suites:
        from bench_references import measure

        rows += measure(args.work, args.throughput_count, args.rows, args.repeat)
    codecs = suite_codecs(args) if "codecs" in suites else []
    print()
    print("\n".join(table_lines(rows)))
    if codecs:
        print("\n".join(["", *codec_lines(codecs)]))
    if previous:
        print("\nratio changes against", args.compare)
        for r in rows:
            key = (str(r["suite"]), str(r["scenario"]))
            if r["ratio"] is not None and key in previous:
                print(f"  {key[0]:<18} {key[1]:<24} {previous[key]:.2f}x -> {r['ratio']:.2f}x")
    if args.md:
        write_markdown(args.md, rows, codecs, "python scripts/bench.py " + " ".join(sys.argv[1:]))
        print(f"\nwrote {args.md}")


if __name__ == "__main__":
    main()
