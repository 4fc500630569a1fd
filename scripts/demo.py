#!/usr/bin/env python3
"""The main job end to end on generated sample data: make archives, convert, read back.

make demo            # or: python scripts/demo.py [--count 15] [--rows 2000000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", default="data/demo")
    p.add_argument("--out", default="out/demo")
    p.add_argument("--count", type=int, default=6)
    p.add_argument("--rows", type=int, default=2_000_000)
    args = p.parse_args()

    if not os.path.isdir(args.data) or not os.listdir(args.data):
        subprocess.run(
            [
                sys.executable,
                os.path.join(HERE, "make_testdata.py"),
                args.data,
                "-n",
                str(args.count),
                "--rows",
                str(args.rows),
            ],
            check=True,
        )
    cmd = [sys.executable, "-m", "zconvert", "convert", args.data, "-o", args.out]
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    status = subprocess.run(cmd).returncode
    print(f"converted in {time.perf_counter() - start:.2f} s (exit {status})")
    if status:
        return status

    import numpy as np

    import zconvert
    from zconvert.stores.manifest import read_results

    results = read_results(args.out)
    first = results[0]
    arr = zconvert.open(first.store)  # lazy: nothing is read yet
    print(
        f"{first.store}: {type(arr).__name__} shape={arr.shape} dtype={arr.dtype} chunks={arr.chunks}"
    )
    print("first rows:\n", arr[:3])
    print("column means:", np.asarray(arr[:]).mean(axis=0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
