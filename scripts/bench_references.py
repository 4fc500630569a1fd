#!/usr/bin/env python3
"""What --format references costs (issue 25), side by side in one run on the seed set written
stored (`zip -0`): 60 archives of one 2,000,000 x 4 float32 member (32 MB) each.

- Indexing: `zconvert convert --format references` against converting the same archives to
  the default Zarr store (target: under 5%). Each is timed in turn, `--overwrite`, best of
  --repeat.
- Size: the reference files against the archives (target: under 0.1%).
- Reading every array in full, page cache warm, in a fresh process each, best of --repeat:
  through fsspec's reference filesystem and zarr (no zconvert), against np.load(mmap_mode="r")
  of the same data as .npy files, and against a converted `--codec none` Zarr store.

    python scripts/bench_references.py                    # 60 archives
    python scripts/bench_references.py --count 8 --repeat 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

READ_REFERENCES = """
import glob, sys, time, warnings
import zarr
from zarr.storage import FsspecStore
warnings.simplefilter("ignore")
start = time.perf_counter()
total = 0.0
for path in sorted(glob.glob(sys.argv[1] + "/*.json")):
    if path.endswith("manifest.json"):
        continue
    store = FsspecStore.from_url("reference://", storage_options={"fo": path}, read_only=True)
    group = zarr.open_consolidated(store, zarr_format=2, mode="r")
    for _, array in group.arrays():
        total += float(array[...].sum(dtype="f8"))
print(time.perf_counter() - start, total)
"""

READ_NPY = """
import glob, sys, time
import numpy as np
start = time.perf_counter()
total = 0.0
for path in sorted(glob.glob(sys.argv[1] + "/*.npy")):
    total += float(np.load(path, mmap_mode="r").sum(dtype="f8"))
print(time.perf_counter() - start, total)
"""

READ_ZARR = """
import glob, sys, time
import zarr
start = time.perf_counter()
total = 0.0
for path in sorted(glob.glob(sys.argv[1] + "/*.zarr")):
    for _, array in zarr.open_group(path, mode="r").arrays():
        total += float(array[...].sum(dtype="f8"))
print(time.perf_counter() - start, total)
"""


def ensure_stored(folder: str, count: int, rows: int) -> str:
    stamp = os.path.join(folder, f".complete-{count}-{rows}-stored")
    if not os.path.exists(stamp):
        shutil.rmtree(folder, ignore_errors=True)
        script = os.path.join(HERE, "make_testdata.py")
        cmd = [sys.executable, script, folder, "-n", str(count), "--rows", str(rows), "--stored"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        open(stamp, "w").close()
    return folder


def ensure_npy(data: str, folder: str) -> str:
    """Each archive's member extracted as a .npy file: what np.load maps."""
    import zipfile

    import numpy as np

    os.makedirs(folder, exist_ok=True)
    for name in sorted(os.listdir(data)):
        if not name.endswith(".zip"):
            continue
        target = os.path.join(folder, name[:-4] + ".npy")
        if os.path.exists(target):
            continue
        with zipfile.ZipFile(os.path.join(data, name)) as zf:
            member = zf.namelist()[0]
            raw = np.frombuffer(zf.read(member), "<f4").reshape(-1, 4)
        np.save(target, raw)
    return folder


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def read_seconds(code: str, folder: str) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, "-c", code, folder], capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]), float(out[1])


def tree_bytes(path: str, suffix: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files if f.endswith(suffix))
    return total


def measure(work: str, count: int, rows: int, repeat: int) -> list[dict[str, object]]:
    """The suite's rows (for bench.py's table), printed as they are measured too."""
    data = ensure_stored(os.path.join(work, f"stored-{count}"), count, rows)
    refs, zarr_default, zarr_none = (
        os.path.join(work, f"refs-{count}-{k}") for k in ("r", "z", "n")
    )
    convert = ["zconvert", "convert", data, "--overwrite", "-q", "-o"]
    index = copy = float("inf")
    for _ in range(repeat):  # alternating, so that both see the same machine
        index = min(index, timed([*convert, refs, "--format", "references"]))
        copy = min(copy, timed([*convert, zarr_default]))
    timed([*convert, zarr_none, "--codec", "none"])
    archives = tree_bytes(data, ".zip")
    references = tree_bytes(refs, ".json") - os.path.getsize(os.path.join(refs, "manifest.json"))
    npy = ensure_npy(data, os.path.join(work, f"npy-{count}"))
    reads: dict[str, float] = {}
    sums = set()
    for _ in range(repeat):
        for label, code, folder in (
            ("references", READ_REFERENCES, refs),
            ("npy-mmap", READ_NPY, npy),
            ("zarr-none", READ_ZARR, zarr_none),
        ):
            seconds, total = read_seconds(code, folder)
            reads[label] = min(reads.get(label, float("inf")), seconds)
            sums.add(round(total, 3))
    assert len(sums) == 1, f"the three reads disagree: {sums}"
    suite = f"references x{count}"
    mb = archives / 1e6
    rows_out = [
        _row(suite, "index (--format references)", index, "zarr:blosc-lz4", index / copy, "< 0.05"),
        _row(suite, "copy (zarr:blosc-lz4)", copy, "", None, ""),
        _row(suite, "reference files / archives", None, "bytes", references / archives, "< 0.001",
             note=f"{references / 1e3:.1f} kB for {mb:.0f} MB"),
        _row(suite, "read via fsspec+zarr", reads["references"], "npy-mmap",
             reads["references"] / reads["npy-mmap"], "",
             note=f"{reads['references'] / reads['zarr-none']:.2f}x a --codec none Zarr read"),
        _row(suite, "read np.load(mmap_mode=r)", reads["npy-mmap"], "", None, ""),
        _row(suite, "read zarr --codec none", reads["zarr-none"], "", None, ""),
    ]  # fmt: skip
    for r in rows_out:
        ratio = f"{r['ratio']:.4f}" if r["ratio"] is not None else ""
        wall = f"{r['wall_s']:.3f} s" if r["wall_s"] else ""
        print(
            f"{r['scenario']:<30} {wall:>9} {ratio:>7} vs {r['vs'] or '-':<14} {r['met']:<3} {r['note']}"
        )
    return rows_out


def _row(suite, scenario, wall, vs, ratio, target, note=""):  # type: ignore[no-untyped-def]
    """A row of bench.py's results table (BENCHMARKS.md)."""
    met = "" if ratio is None or not target else ("yes" if ratio < float(target[2:]) else "NO")
    return {
        "suite": suite,
        "scenario": scenario,
        "wall_s": round(wall or 0.0, 6),
        "vs": vs,
        "ratio": None if ratio is None else round(ratio, 4),
        "target": target,
        "met": met,
        "parent_peak_mb": 0.0,
        "worker_peak_mb": 0.0,
        "note": note,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=60)
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--work", default="bench-out")
    args = p.parse_args()
    measure(args.work, args.count, args.rows, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
