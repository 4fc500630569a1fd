"""Benchmark: the same archives through the `local` pool and the `dask` executor, side by side.

Two sets:
  seed   N archives of one deflated R x 4 float32 member (full size: 15 x 2,000,000 = 32 MB each)
  small  M archives of one 1,000 x 4 member (full size: 2,000): per-archive overhead

Executors: `local` (process pool), `dask` (a LocalCluster started and closed by the run, as
`--executor dask` does) and `dask@running` (`--scheduler` to a cluster started beforehand, the
way a shared cluster is used). Reports wall seconds, the dask/local wall ratio, the extra
milliseconds per archive over the local pool, and archives/s.

    python scripts/bench_dask.py                      # full size (several minutes)
    python scripts/bench_dask.py --reduced            # under a minute on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import zipfile
from pathlib import Path

import numpy as np


def make_set(folder: Path, count: int, rows: int, seed: int = 0) -> Path:
    """count archives of one rows x 4 float32 member; reused when already there."""
    stamp = folder / f".complete-{count}x{rows}"
    if stamp.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        data = rng.random((rows, 4), dtype=np.float32)
        with zipfile.ZipFile(folder / f"archive_{i:05d}.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(f"blob_{i:05d}.bin", data.tobytes())
    stamp.touch()
    return folder


def run_once(inputs: Path, out: Path, workers: int, **options: object) -> tuple[float, int]:
    import zconvert

    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    report = zconvert.convert(inputs, out, workers=workers, **options)
    wall = time.perf_counter() - start
    if not report.ok:
        raise SystemExit(f"bench: {len(report.failed)} archives failed: {report.failed[0].error}")
    return wall, len(report.results)


def bench_set(name: str, inputs: Path, out: Path, workers: int, scheduler: str) -> dict:
    runs = {
        "local": {"executor": "local"},
        "dask": {"executor": "dask"},
        "dask@running": {"executor": "dask", "scheduler": scheduler},
    }
    row: dict = {"set": name}
    for label, options in runs.items():
        wall, n = run_once(inputs, out / label, workers, **options)
        row[label] = {"wall_s": round(wall, 3), "archives_per_s": round(n / wall, 1)}
        row["archives"] = n
    local = row["local"]["wall_s"]
    for label in ("dask", "dask@running"):
        row[label]["ratio_to_local"] = round(row[label]["wall_s"] / local, 3)
        row[label]["extra_ms_per_archive"] = round(
            1000 * (row[label]["wall_s"] - local) / row["archives"], 2
        )
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--archives", type=int, default=15, help="seed archives (default 15)")
    p.add_argument("--rows", type=int, default=2_000_000, help="rows per seed member")
    p.add_argument("--small", type=int, default=2000, help="small archives of 1,000 x 4")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--reduced", action="store_true", help="6 x 500,000 and 300 small archives")
    p.add_argument("--data", default="bench-data/dask", help="where generated archives are kept")
    p.add_argument("--out", default="bench-out/dask", help="scratch output folder (removed)")
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    if args.reduced:
        args.archives, args.rows, args.small = 6, 500_000, 300

    from distributed import LocalCluster

    data, out = Path(args.data).absolute(), Path(args.out).absolute()
    seed = make_set(data / f"seed-{args.archives}x{args.rows}", args.archives, args.rows)
    small = make_set(data / f"small-{args.small}x1000", args.small, 1000, seed=1)
    with LocalCluster(
        processes=True,
        n_workers=args.workers,
        threads_per_worker=1,
        dashboard_address=None,
        host="127.0.0.1",
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
    ) as cluster:
        rows = [
            bench_set(
                f"seed {args.archives} x {args.rows:,} x 4",
                seed,
                out,
                args.workers,
                cluster.scheduler_address,
            ),
            bench_set(
                f"small {args.small} x 1,000 x 4",
                small,
                out,
                args.workers,
                cluster.scheduler_address,
            ),
        ]
    shutil.rmtree(out, ignore_errors=True)
    info = {"workers": args.workers, "cpus": os.cpu_count(), "python": sys.version.split()[0]}
    print(f"{'set':32} {'executor':13} {'wall s':>8} {'arch/s':>8} {'ratio':>6} {'+ms/arch':>9}")
    for row in rows:
        for label in ("local", "dask", "dask@running"):
            r = row[label]
            print(
                f"{row['set']:32} {label:13} {r['wall_s']:8.2f} {r['archives_per_s']:8.1f} "
                f"{r.get('ratio_to_local', 1.0):6.2f} {r.get('extra_ms_per_archive', 0.0):9.1f}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
