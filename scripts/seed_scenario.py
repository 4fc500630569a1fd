#!/usr/bin/env python3
"""The seed's program two ways: worker processes compute column sums over every archive.

seed:  each worker unzips its archive to a .bin file and returns an np.memmap of it. Pickling
       an np.memmap copies its data (its _mmap is None on arrival): the parent ends up holding
       every array in anonymous memory.
right: zconvert converts the archives once (memory-mappable layout), then the workers get
       StoreRefs (a path and a name), map the store themselves and return a few numbers.

Each way runs in a fresh process that prints its own anonymous memory (RssAnon) before and
after, so one way's memory never counts against the other.

    python scripts/seed_scenario.py                      # 15 archives of 2,000,000 x 4 float32
    python scripts/seed_scenario.py --count 4 --rows 500000 --format zarr
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def rss_anon_mb() -> float:
    """This process's anonymous resident memory (heap, copies), not the file-backed pages."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# -- the seed's way ------------------------------------------------------------------------


def seed_unzip_to_memmap(job: tuple[str, str]) -> np.memmap:
    """What the seed's workers did: extract the member to a file, return a memmap of it."""
    archive, scratch = job
    with zipfile.ZipFile(archive) as zf:
        info = zf.infolist()[0]
        target = os.path.join(scratch, os.path.basename(archive) + ".bin")
        with zf.open(info) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 8 << 20)
    return np.memmap(target, dtype="<f4", mode="r").reshape(-1, 4)


def seed_way(archives: list[str], out: str, workers: int) -> dict[str, object]:
    scratch = os.path.join(out, "seed-scratch")
    os.makedirs(scratch, exist_ok=True)
    before = rss_anon_mb()
    start = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        arrays = list(pool.map(seed_unzip_to_memmap, [(a, scratch) for a in archives]))
    seconds = time.perf_counter() - start
    sums = [a.sum(axis=0, dtype=np.float64) for a in arrays]
    copies = sum(getattr(a, "_mmap", None) is None for a in arrays)
    return {
        "way": "seed",
        "rss_anon_before_mb": round(before, 1),
        "rss_anon_after_mb": round(rss_anon_mb(), 1),
        "seconds": round(seconds, 2),
        "arrays_copied_into_parent": copies,
        "checksum": float(np.sum(sums)),
    }


# -- the right way -------------------------------------------------------------------------


def column_sums(ref: object) -> list[float]:
    """Runs in a worker: map the store by path, return four numbers."""
    return ref.memmap().sum(axis=0, dtype=np.float64).tolist()  # type: ignore[attr-defined]


def right_way(archives: list[str], out: str, workers: int, fmt: str) -> dict[str, object]:
    import zconvert

    before = rss_anon_mb()
    start = time.perf_counter()
    report = zconvert.convert(
        archives, os.path.join(out, "stores"), format=fmt, codec="none",
        contiguous=fmt == "zarr", workers=workers,
    )  # fmt: skip
    if not report.ok:
        raise SystemExit(f"conversion failed: {report.failed[0].archive}: {report.failed[0].error}")
    converted = time.perf_counter() - start
    after_convert = rss_anon_mb()
    refs = zconvert.refs(report.output)
    with ProcessPoolExecutor(workers) as pool:
        sums = list(pool.map(column_sums, refs))
    return {
        "way": "right",
        "format": fmt,
        "rss_anon_before_mb": round(before, 1),
        "rss_anon_after_convert_mb": round(after_convert, 1),
        "rss_anon_after_mb": round(rss_anon_mb(), 1),
        "convert_seconds": round(converted, 2),
        "seconds": round(time.perf_counter() - start, 2),
        "largest_pickled_ref_bytes": max(len(__import__("pickle").dumps(r)) for r in refs),
        "checksum": float(np.sum(sums)),
    }


# -- driver --------------------------------------------------------------------------------


def ensure_archives(data: str, count: int, rows: int) -> list[str]:
    names = sorted(n for n in os.listdir(data) if n.endswith(".zip")) if os.path.isdir(data) else []
    if len(names) < count:
        subprocess.run(
            [sys.executable, os.path.join(HERE, "make_testdata.py"), data,
             "-n", str(count), "--rows", str(rows)],
            check=True,
        )  # fmt: skip
        names = sorted(n for n in os.listdir(data) if n.endswith(".zip"))
    return [os.path.abspath(os.path.join(data, n)) for n in names[:count]]


def run_in_child(way: str, args: argparse.Namespace, out: str) -> dict[str, object]:
    """One way in a fresh interpreter, so its memory is its own."""
    cmd = [sys.executable, os.path.abspath(__file__), "--data", args.data, "--count",
           str(args.count), "--rows", str(args.rows), "--workers", str(args.workers),
           "--format", args.format, "--out", out, "--way", way, "--json"]  # fmt: skip
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", default="data/seed", help="folder of archives (generated if missing)")
    p.add_argument("--count", type=int, default=15)
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--format", choices=["hdf5", "zarr"], default="hdf5")
    p.add_argument("--out", default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--way", choices=["both", "seed", "right"], default="both")
    p.add_argument("--json", action="store_true", help="print one JSON line per way")
    args = p.parse_args()

    archives = ensure_archives(args.data, args.count, args.rows)
    out = args.out or tempfile.mkdtemp(prefix="seed-scenario-")
    try:
        if args.way == "both":
            results = [run_in_child(w, args, os.path.join(out, w)) for w in ("seed", "right")]
        elif args.way == "seed":
            results = [seed_way(archives, out, args.workers)]
        else:
            results = [right_way(archives, out, args.workers, args.format)]
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)
    for r in results:
        if args.json:
            print(json.dumps(r))
        else:
            print(f"{r['way']:>5}: parent RssAnon {r['rss_anon_before_mb']} MB before, "
                  f"{r['rss_anon_after_mb']} MB after, {r['seconds']} s  {r}")  # fmt: skip
    if len(results) == 2 and not np.isclose(results[0]["checksum"], results[1]["checksum"]):
        print("the two ways disagree on the sums", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
