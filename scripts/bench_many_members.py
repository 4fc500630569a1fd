#!/usr/bin/env python3
"""What an archive of many tiny members costs in each format: files, bytes on disk, and the
time xarray takes to open the store (issue 24, item 14: HDF5 within 5x of Zarr).

One archive of N members of 1 x 4 float32 is converted with default options to Zarr and to
HDF5; each store is then opened with `xr.open_datatree` (engine zarr, h5netcdf), alternating
the two formats, each open in a fresh process so that nothing is cached in Python; the best
of --repeat is reported, and the ratio HDF5 / Zarr.

    python scripts/bench_many_members.py                  # 5,000 members, best of 3
    python scripts/bench_many_members.py --members 1000 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np

OPEN = """
import sys, time, warnings
import xarray as xr
warnings.simplefilter("ignore")
start = time.perf_counter()
tree = xr.open_datatree(sys.argv[1], engine=sys.argv[2])
assert len(tree.data_vars) == int(sys.argv[3]), len(tree.data_vars)
print(time.perf_counter() - start)
"""


def make_archive(path: str, members: int) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(members):
            zf.writestr(f"m{i:05d}.bin", np.full((1, 4), i, dtype="<f4").tobytes())


def disk_usage(path: str) -> tuple[int, int]:
    """(files, bytes on disk, folders' blocks included) of a file or folder."""
    if os.path.isfile(path):
        return 1, os.stat(path).st_blocks * 512
    files, used = 0, os.stat(path).st_blocks * 512
    for root, dirs, names in os.walk(path):
        for name in dirs + names:
            used += os.lstat(os.path.join(root, name)).st_blocks * 512
        files += len(names)
    return files, used


def open_seconds(store: str, engine: str, members: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", OPEN, store, engine, str(members)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=5000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workdir", default=None, help="default: a temporary folder")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as work:
        archive = os.path.join(work, "in", "many.zip")
        os.makedirs(os.path.dirname(archive))
        make_archive(archive, args.members)
        stores = {}
        for fmt, engine, suffix in (("zarr", "zarr", "zarr"), ("hdf5", "h5netcdf", "h5")):
            out = os.path.join(work, fmt)
            start = time.perf_counter()
            cmd = ["zconvert", "convert", archive, "-o", out, "--format", fmt, "-q"]
            subprocess.run(cmd, check=True)
            wall = time.perf_counter() - start
            stores[fmt] = (os.path.join(out, f"many.{suffix}"), engine, wall)
        best = {fmt: float("inf") for fmt in stores}
        for _ in range(args.repeat):
            for fmt, (store, engine, _) in stores.items():
                best[fmt] = min(best[fmt], open_seconds(store, engine, args.members))
        print(f"one archive of {args.members} members of 1 x 4 float32, default options")
        print(f"{'format':<6} {'convert s':>9} {'files':>7} {'on disk MB':>10} {'open s':>7}")
        for fmt, (store, _, wall) in stores.items():
            files, used = disk_usage(store)
            print(f"{fmt:<6} {wall:9.2f} {files:7d} {used / 1e6:10.1f} {best[fmt]:7.2f}")
        ratio = best["hdf5"] / best["zarr"]
        print(f"open, HDF5 (h5netcdf) / Zarr: {ratio:.2f}x (target: within 5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
