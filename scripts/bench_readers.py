#!/usr/bin/env python3
"""Reader benchmark: the seed scenario both ways, open-by-path latency, mapped full scans.

Targets (issue 3): parent anonymous memory after the pool returns under 60 MB (the seed's
way: about 540 MB at 15 archives); opening a store by path under 5 ms; a full scan through
open_memmap within 1.2x of np.fromfile on the same bytes.

    python scripts/bench_readers.py                       # 15 archives x 2,000,000 x 4, 2 workers
    python scripts/bench_readers.py --count 6             # quicker
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def best_s(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def open_latency(refs: dict[str, object]) -> None:
    import zconvert

    print("\nopen by path (median of 100, warm):")
    for label, ref in refs.items():
        store = ref.store  # type: ignore[attr-defined]

        def open_lazy(ref=ref):
            array = ref.open()
            if hasattr(array, "file"):
                array.file.close()

        print(f"  {label:<22} StoreRef.open {median_ms(open_lazy, 100):6.2f} ms   "
              f"StoreRef.memmap {median_ms(ref.memmap, 100):6.2f} ms   "
              f"zconvert.open(path) {median_ms(lambda s=store: _close(zconvert.open(s)), 100):6.2f} ms")  # fmt: skip


def _close(array: object) -> None:
    if hasattr(array, "file"):
        array.file.close()  # type: ignore[attr-defined]


def scan_ratio(refs_by_label: dict[str, list]) -> None:
    print("\nfull scan, sum over every array of the run (best of 5, page cache warm):")
    for label, refs in refs_by_label.items():
        maps = [ref.memmap() for ref in refs]
        places = [(m.filename, m.offset, m.dtype, m.shape) for m in maps]
        del maps

        def scan_memmap(refs=refs):
            for ref in refs:
                ref.memmap().sum(axis=0)

        def scan_fromfile(places=places):
            for filename, offset, dtype, shape in places:
                count = int(np.prod(shape))
                np.fromfile(filename, dtype=dtype, count=count, offset=offset).reshape(shape).sum(
                    axis=0
                )

        scan_fromfile()  # warm the page cache
        t_mm, t_ff = best_s(scan_memmap, 5), best_s(scan_fromfile, 5)
        nbytes = sum(int(np.prod(s)) * np.dtype(d).itemsize for _, _, d, s in places)
        print(f"  {label:<22} open_memmap {t_mm:6.3f} s ({nbytes / t_mm / 1e9:4.2f} GB/s)   "
              f"np.fromfile {t_ff:6.3f} s   ratio {t_mm / t_ff:4.2f}x (target <= 1.2)")  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", default="data/seed")
    p.add_argument("--count", type=int, default=15)
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()

    import zconvert

    scenario = [sys.executable, os.path.join(HERE, "seed_scenario.py"), "--data", args.data,
                "--count", str(args.count), "--rows", str(args.rows),
                "--workers", str(args.workers)]  # fmt: skip
    print(f"seed scenario, {args.count} archives x {args.rows} x 4 float32, {args.workers} workers")
    sys.stdout.flush()
    subprocess.run(scenario, check=True)  # generates the archives if needed

    archives = sorted(
        os.path.join(args.data, n) for n in os.listdir(args.data) if n.endswith(".zip")
    )[: args.count]
    out = tempfile.mkdtemp(prefix="bench-readers-")
    try:
        runs = {}
        for label, options in {
            "hdf5 --codec none": {"format": "hdf5"},
            "zarr3 --contiguous": {"format": "zarr", "contiguous": True},
            "zarr2 --contiguous": {"format": "zarr", "zarr_format": 2, "contiguous": True},
        }.items():
            target = os.path.join(out, label.split()[0])
            report = zconvert.convert(
                archives, target, codec="none", workers=args.workers, **options
            )
            assert report.ok, report.failed
            runs[label] = target
        refs_by_label = {label: zconvert.refs(target) for label, target in runs.items()}
        open_latency({label: refs[0] for label, refs in refs_by_label.items()})
        scan_ratio(refs_by_label)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
