#!/usr/bin/env python3
"""Measure speed and ratio of every format and codec on random and smooth data (the README table).

Generates 4 archives of 1,000,000 x 4 float32 per kind with make_testdata.py (once), converts
them with the local executor and 2 workers into each format x codec, and prints a Markdown table.
Takes well under two minutes on a 2-core machine.

    python scripts/codec_table.py [--count 4] [--rows 1000000] [--workers 2] [--data data/codecs]

"worker MB/s" is inflated bytes per second of worker time (inflate + encode + write, per
process); "run s" is the wall time of the whole run, pool start included.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
COMBOS = [
    ("zarr", "none"),
    ("zarr", "blosc-lz4"),
    ("zarr", "blosc-zstd"),
    ("zarr", "zstd"),
    ("zarr", "gzip"),
    ("hdf5", "none"),
    ("hdf5", "blosc-lz4"),
    ("hdf5", "blosc-zstd"),
    ("hdf5", "zstd"),
    ("hdf5", "gzip"),
]


def make_data(folder: str, kind: str, count: int, rows: int) -> None:
    if os.path.isdir(folder) and len(os.listdir(folder)) == count:
        return
    shutil.rmtree(folder, ignore_errors=True)
    subprocess.run(
        [sys.executable, os.path.join(HERE, "make_testdata.py"), folder, "-n", str(count),
         "--rows", str(rows), "--kind", kind],
        check=True,
    )  # fmt: skip


def measure(data: str, fmt: str, codec: str, workers: int) -> tuple[float, float, float]:
    """(worker MB/s, ratio, run seconds) of one conversion into a scratch folder."""
    import zconvert

    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(data))) as out:
        report = zconvert.convert(
            data, out, format=fmt, codec=codec, workers=workers, executor="local"
        )
        if not report.ok:
            raise SystemExit(f"{fmt}/{codec}: {report.failed[0].error}")
        arrays = [a for r in report.results for a in r.arrays]
        ratio = sum(a.nbytes for a in arrays) / sum(a.stored_bytes for a in arrays)
        worker_seconds = sum(r.seconds for r in report.results)
        return report.bytes_out / worker_seconds / 1e6, ratio, report.seconds


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", default="data/codecs")
    p.add_argument("--count", type=int, default=4)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    folders = {}
    for kind in ("uniform", "smooth"):
        folders[kind] = os.path.join(args.data, kind)
        make_data(folders[kind], kind, args.count, args.rows)
    print(
        f"{args.count} archives of {args.rows:,} x 4 float32 per kind, local executor, "
        f"{args.workers} workers\n"
    )
    print("| format | codec | random: worker MB/s | random: ratio | smooth: worker MB/s "
          "| smooth: ratio | run s (random / smooth) |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|")
    for fmt, codec in COMBOS:
        speed_u, ratio_u, wall_u = measure(folders["uniform"], fmt, codec, args.workers)
        speed_s, ratio_s, wall_s = measure(folders["smooth"], fmt, codec, args.workers)
        print(
            f"| {fmt} | {codec} | {speed_u:.0f} | {ratio_u:.2f} | {speed_s:.0f} | {ratio_s:.2f} "
            f"| {wall_u:.2f} / {wall_s:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
