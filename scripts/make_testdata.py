#!/usr/bin/env python3
"""Write N ZIP archives of raw float32 blobs, deterministic for a seed.

Each archive holds one member of ROWS x COLS float32 (default 2,000,000 x 4 = 32 MB),
deflated. `--kind uniform` is the seed workload (uniform random, nearly incompressible);
`--kind smooth` is sensor-like random-walk data that compresses well.

    python scripts/make_testdata.py data/seed -n 15
    python scripts/make_testdata.py data/small -n 2000 --rows 1000
    python scripts/make_testdata.py data/stored -n 60 --stored     # zip -0: for --format references
"""

from __future__ import annotations

import argparse
import os
import zipfile

import numpy as np


def member_data(rng: np.random.Generator, rows: int, cols: int, kind: str) -> np.ndarray:
    if kind == "uniform":
        return rng.random((rows, cols), dtype=np.float32)
    steps = rng.normal(0.0, 0.01, size=(rows, cols)).astype(np.float32)
    return (np.cumsum(steps, axis=0, dtype=np.float32) + np.float32(20.0)).astype("<f4")


def write_archive(
    path: str, arrays: dict[str, np.ndarray], level: int = 6, stored: bool = False
) -> None:
    """One deflated (or stored: `zip -0`) member per array, written a piece at a time (no
    second full copy)."""
    method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w", compression=method, compresslevel=level) as zf:
        for name, data in arrays.items():
            with zf.open(name, "w", force_zip64=data.nbytes >= (1 << 31)) as member:
                flat = memoryview(np.ascontiguousarray(data)).cast("B")
                for start in range(0, len(flat), 8 << 20):
                    member.write(flat[start : start + (8 << 20)])


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("folder")
    p.add_argument("-n", "--count", type=int, default=15)
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--cols", type=int, default=4)
    p.add_argument("--kind", choices=["uniform", "smooth"], default="uniform")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--level", type=int, default=6, help="deflate level")
    p.add_argument("--stored", action="store_true", help="members stored, not deflated (zip -0)")
    args = p.parse_args()
    os.makedirs(args.folder, exist_ok=True)
    width = len(str(args.count - 1))
    for i in range(args.count):
        rng = np.random.default_rng([args.seed, i])
        data = member_data(rng, args.rows, args.cols, args.kind)
        path = os.path.join(args.folder, f"archive_{i:0{width}d}.zip")
        write_archive(path, {f"blob_{i:0{width}d}.bin": data}, args.level, args.stored)
    print(
        f"wrote {args.count} archives of {args.rows} x {args.cols} float32 ({args.kind}) to {args.folder}"
    )


if __name__ == "__main__":
    main()
