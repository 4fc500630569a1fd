"""Many small objects to an S3 API server: fsspec/s3fs (what zconvert uses) against obstore.

moto_server runs as a child on 127.0.0.1 (a free port), one bucket in memory. For each size
(1 KB, a metadata document; 32 KB, a small chunk) and N keys (--n, default 1000):

  (a) PUT each key one at a time, sequentially (a zconvert worker: fs.pipe_file per key)
      s3fs  fs.pipe_file(path, data)      obstore  obstore.put(store, key, data)
  (b) the same PUTs, 16 in flight
      s3fs  fs.pipe({path: data}, batch_size=16)   (sliding window on fsspec's loop)
      obstore  obstore.put_async + asyncio.gather under a semaphore of 16
  (c) HEAD of each key, 16 in flight
      s3fs  fs.info in 16 threads          obstore  obstore.head_async, semaphore of 16
  (d) GET of each key, 16 in flight (reading chunks; zconvert reads with fs.cat_file)
      s3fs  fs._cat_file on fsspec's loop, 16 at a time (zarr's FsspecStore.get reads this
            way; fs.cat_file is the same call). s3fs's default max_concurrency=10 makes a
            whole-object read HEAD for the size, then GET: 2 requests per key.
      obstore  obstore.get_async(...).bytes_async()
  (d') the same, s3fs with max_concurrency=1 (GET only: 1 request per key, like obstore)
  (e) one listing of all N keys
      s3fs  fs.find(prefix)                obstore  obstore.list(store, prefix).collect()

Each operation runs s3fs, obstore, s3fs, obstore, ... (--rounds pairs, default 3) so the
load of a shared machine falls on both; the table has the median of each side. Both sides
write the same keys (created once before timing), so every timed PUT is an overwrite.
s3fs's listings cache is dropped before every s3fs operation.

moto_server handles the requests on the same 2 cores, in Python, one at a time per
connection-thread; what differs between the columns is the client's own overhead per
request, not the network. Import time of each library is measured in fresh processes
(python -X importtime, cumulative microseconds of the top-level module).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench_cloud import moto_server  # the cloud suite's server: moto on 127.0.0.1

BUCKET = "bench-obstore"
KEY = SECRET = "testing"
REGION = "us-east-1"
CONCURRENCY = 16
SIZES = (("1 KB", 1024), ("32 KB", 32 * 1024))


# ---------------------------------------------------------------- clients
def s3fs_filesystem(endpoint: str, **kwargs: Any) -> Any:
    import s3fs

    return s3fs.S3FileSystem(
        key=KEY,
        secret=SECRET,
        client_kwargs={"endpoint_url": endpoint},
        skip_instance_cache=True,
        **kwargs,
    )


def obstore_store(endpoint: str) -> Any:
    from obstore.store import S3Store

    return S3Store(
        BUCKET,
        endpoint=endpoint,
        access_key_id=KEY,
        secret_access_key=SECRET,
        region=REGION,
        client_options={"allow_http": True},
    )


def _bounded(fn: Callable[[str], Any], keys: list[str], limit: int = CONCURRENCY) -> list[Any]:
    """asyncio.run of fn(key) for every key, at most `limit` awaiting at once (fn is called
    inside the loop: obstore's *_async functions need a running loop when called)."""

    async def run() -> list[Any]:
        sem = asyncio.Semaphore(limit)

        async def one(k: str) -> Any:
            async with sem:
                return await fn(k)

        return await asyncio.gather(*(one(k) for k in keys))

    return asyncio.run(run())


# ---------------------------------------------------------------- operations
def operations(
    fs: Any, fs1: Any, store: Any, prefix: str, n: int, data: bytes
) -> list[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    import obstore
    from fsspec.asyn import _run_coros_in_chunks, sync

    keys = [f"{prefix}/c/{i // 100}/{i % 100}" for i in range(n)]
    paths = [f"{BUCKET}/{k}" for k in keys]

    def s3_put_seq() -> None:
        for p in paths:
            fs.pipe_file(p, data)

    def ob_put_seq() -> None:
        for k in keys:
            obstore.put(store, k, data)

    def s3_put_conc() -> None:
        fs.pipe(dict.fromkeys(paths, data), batch_size=CONCURRENCY)

    def ob_put_conc() -> None:
        _bounded(lambda k: obstore.put_async(store, k, data), keys)

    def s3_head() -> None:
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            sizes = [i["size"] for i in pool.map(fs.info, paths)]
        assert sizes == [len(data)] * n

    def ob_head() -> None:
        metas = _bounded(lambda k: obstore.head_async(store, k), keys)
        assert [m["size"] for m in metas] == [len(data)] * n

    def s3_get() -> None:
        _s3_get(fs)

    def s3_get_1() -> None:
        _s3_get(fs1)

    def _s3_get(f: Any) -> None:
        # f._cat_file on fsspec's loop, as zarr's FsspecStore.get does. With s3fs's default
        # max_concurrency=10 a whole-object _cat_file (and so fs.cat_file) sends a HEAD for
        # the size before its GET; with max_concurrency=1 (fs1) it sends the GET alone.
        got = sync(
            f.loop, _run_coros_in_chunks, [f._cat_file(p) for p in paths], batch_size=CONCURRENCY
        )
        assert len(got) == n and all(len(v) == len(data) for v in got)

    def ob_get() -> None:
        async def one(k: str) -> bytes:
            return await (await obstore.get_async(store, k)).bytes_async()

        got = _bounded(one, keys)
        assert len(got) == n and all(len(v) == len(data) for v in got)

    def s3_list() -> None:
        assert len(fs.find(f"{BUCKET}/{prefix}")) == n

    def ob_list() -> None:
        assert len(obstore.list(store, prefix).collect()) == n

    return [
        ("(a) PUT sequential", s3_put_seq, ob_put_seq),
        (f"(b) PUT {CONCURRENCY} in flight", s3_put_conc, ob_put_conc),
        (f"(c) HEAD {CONCURRENCY} in flight", s3_head, ob_head),
        (f"(d) GET {CONCURRENCY} in flight", s3_get, ob_get),
        ("(d') GET, s3fs max_conc.=1", s3_get_1, ob_get),
        ("(e) LIST all keys", s3_list, ob_list),
    ]


def _timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# ---------------------------------------------------------------- import time
def import_us(module: str) -> int:
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
    )
    for line in reversed(r.stderr.splitlines()):
        m = re.match(r"import time:\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\S+)\s*$", line)
        if m and m.group(3) == module:
            return int(m.group(2))
    raise RuntimeError(f"no importtime line for {module}")


# ---------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="objects per size (default 1000)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating pairs (default 3)")
    args = ap.parse_args()

    import fsspec
    import s3fs
    import zarr

    try:
        import obstore
    except ImportError:
        raise SystemExit("this benchmark compares with obstore: pip install obstore") from None

    print(
        f"s3fs {s3fs.__version__}  fsspec {fsspec.__version__}  obstore {obstore.__version__}"
        f"  zarr {zarr.__version__}  python {sys.version.split()[0]}  N={args.n}"
        f"  rounds={args.rounds}  cpus={os.cpu_count()}"
    )

    rows: list[tuple[str, str, float, float]] = []
    with tempfile.TemporaryDirectory() as work, moto_server(work) as endpoint:
        fs = s3fs_filesystem(endpoint)
        fs1 = s3fs_filesystem(endpoint, max_concurrency=1)
        fs.mkdir(BUCKET)
        store = obstore_store(endpoint)
        for label, size in SIZES:
            data = os.urandom(size)
            prefix = f"b{size}"
            ops = operations(fs, fs1, store, prefix, args.n, data)
            ops[1][2]()  # create every key once, untimed: all timed PUTs are overwrites
            fs.invalidate_cache()
            for name, s3_fn, ob_fn in ops:
                s3_t: list[float] = []
                ob_t: list[float] = []
                for _ in range(args.rounds):  # A B A B A B
                    fs.invalidate_cache()
                    fs1.invalidate_cache()
                    s3_t.append(_timed(s3_fn))
                    ob_t.append(_timed(ob_fn))
                s, o = statistics.median(s3_t), statistics.median(ob_t)
                rows.append((name, label, s, o))
                print(
                    f"  {name:<22} {label:>5}  s3fs {' '.join(f'{t:.3f}' for t in s3_t)}"
                    f"  obstore {' '.join(f'{t:.3f}' for t in ob_t)}",
                    flush=True,
                )
            fs.rm(f"{BUCKET}/{prefix}", recursive=True)
            fs.invalidate_cache()

    imp_s3: list[int] = []
    imp_ob: list[int] = []
    for _ in range(args.rounds):  # A B A B A B, fresh processes
        imp_s3.append(import_us("s3fs"))
        imp_ob.append(import_us("obstore"))

    print()
    print(f"| operation (N={args.n}) | size | s3fs s | obstore s | obstore/s3fs |")
    print("|---|---|---:|---:|---:|")
    for name, label, s, o in rows:
        print(f"| {name} | {label} | {s:.3f} | {o:.3f} | {o / s:.2f} |")
    s, o = statistics.median(imp_s3) / 1e6, statistics.median(imp_ob) / 1e6
    print(f"| import (fresh process, -X importtime) | - | {s:.3f} | {o:.3f} | {o / s:.2f} |")
    print(
        f"\nmedian of {args.rounds} alternating rounds; moto_server on the same cores, so the"
        " difference is client overhead per request, not network latency."
    )


if __name__ == "__main__":
    main()
