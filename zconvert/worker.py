"""Convert one Task into one store: the only function executors run.

Inflate each member a slab of whole chunks at a time into two reused buffers, the sink
writing one while the next is inflated (slabs.py); check CRC32 and size; then commit.
Whatever goes wrong becomes a failed Result naming the archive and member; nothing is left
at the store's final path.
"""

from __future__ import annotations

import math
import os
import sys
import time
import traceback
from typing import Any

import numpy as np

from ._version import __version__
from .archive import MemberReader
from .directio import slab_buffers
from .errors import ArchiveError
from .members import Member, check_member, list_members, open_archive
from .parallel_inflate import threads_for
from .records import ArrayRecord, ConvertOptions, Result, Task, default_chunk_rows
from .resume import OPTIONS_ATTR, options_fingerprint
from .sinks import ArraySpec, open_sink
from .slabs import SlabPipeline
from .storage import is_url


def init_process() -> None:
    """Run once in each worker process: one thread per process for the libraries inside, so
    that N workers use N cores instead of oversubscribing them."""
    from . import worker_env  # noqa: F401 - applied on import

    # numcodecs (Zarr's codecs; 15-25 ms to import, its registry scans entry points) and zarr
    # itself (object storage only, 0.4 s) are loaded only by the runs that use them: worker_env
    # configures both through the environment, which they read (c-blosc reads BLOSC_NTHREADS
    # at each call, donfig ZARR_* at import). Here only what a fork already brought along.
    if "numcodecs.blosc" in sys.modules:
        blosc = sys.modules["numcodecs.blosc"]
        blosc.set_nthreads(1)
        blosc.use_threads = False
    if "zarr" in sys.modules:
        sys.modules["zarr"].config.set({"threading.max_workers": 1})


def record_layout(options: ConvertOptions) -> tuple[np.dtype, tuple[int, ...], int]:
    """dtype, the shape of one row (all dims after the first) and the bytes of one row."""
    dtype = np.dtype(options.dtype)
    row_shape = tuple(options.shape[1:])
    return dtype, row_shape, dtype.itemsize * math.prod(row_shape)


def array_shape(archive: str, member: Member, options: ConvertOptions) -> tuple[int, ...]:
    """The member's array shape; a size that does not fit dtype and shape is refused."""
    dtype, row_shape, row_bytes = record_layout(options)
    declared = f"--shape {','.join(map(str, options.shape))} --dtype {dtype.str}"
    if member.file_size % row_bytes:
        raise ArchiveError(
            archive,
            member.name,
            f"size {member.file_size} bytes is not a multiple of the record size {row_bytes} "
            f"({declared}); check --dtype and --shape",
        )
    rows = member.file_size // row_bytes
    if options.shape[0] != -1 and rows != options.shape[0]:
        raise ArchiveError(
            archive,
            member.name,
            f"size {member.file_size} bytes holds {rows} rows, not the {options.shape[0]} of {declared}",
        )
    return (rows, *row_shape)


def dimension_names(members: list[Member], shapes: list[tuple[int, ...]]) -> list[tuple[str, ...]]:
    """xarray-friendly names: a shared 'row' when all arrays have the same length, otherwise
    one row dimension per array (xarray rejects one name with two lengths)."""
    shared = len({s[0] for s in shapes}) == 1
    names = []
    for member, shape in zip(members, shapes, strict=True):
        row = "row" if shared else f"{member.array_name.replace('/', '_')}_row"
        rest = ("column",) if len(shape) == 2 else tuple(f"dim_{i}" for i in range(1, len(shape)))
        names.append((row, *rest))
    return names


def _convert(task: Task) -> tuple[list[ArrayRecord], int, int]:
    options = task.options
    dtype, row_shape, row_bytes = record_layout(options)
    chunk_rows = options.chunk_rows or default_chunk_rows(row_bytes)
    fileobj, zf = open_archive(task.archive, _open_remote(task))
    with fileobj, zf:
        members = list_members(task.archive, zf)
        for member in members:
            check_member(task.archive, member, options.max_ratio, options.max_member_bytes)
        shapes = [array_shape(task.archive, m, options) for m in members]
        dims = dimension_names(members, shapes)
        source_size, source_mtime_ns = _source_stat(task)
        sink = open_sink(
            task.store,
            options,
            {
                "zconvert_version": __version__,
                "source_archive": task.archive,
                "source_size": source_size,
                "source_mtime_ns": source_mtime_ns,
                OPTIONS_ATTR: options_fingerprint(options),  # what resume compares
            },
            storage_options=task.storage_options,
        )
        try:
            # Slabs are whole shards where there are shards: the sink writes one at a time.
            grid_rows = options.shard_rows or chunk_rows
            slab_units = max(1, options.slab_bytes // (grid_rows * row_bytes))
            slab_rows_max = grid_rows * slab_units
            longest = max(s[0] for s in shapes)
            buffer_rows = min(slab_rows_max, max(longest, 1))
            # Page-aligned, so the sinks can hand slabs to O_DIRECT writes without a copy.
            buffers = slab_buffers(buffer_rows, row_shape, dtype)
            records = []
            for member, shape, dim_names in zip(members, shapes, dims, strict=True):
                records.append(
                    _copy_member(
                        task, fileobj, zf, member, shape, dim_names, chunk_rows, buffers, sink
                    )
                )
            sink.commit()
        except BaseException:
            sink.abort()
            raise
    bytes_in = sum(m.compress_size for m in members)
    bytes_out = sum(m.file_size for m in members)
    return records, bytes_in, bytes_out


def _open_remote(task: Task) -> Any:
    """An fsspec file object for a URL archive (range requests); None for a local path."""
    if not is_url(task.archive):
        return None
    from .storage import open_input

    try:
        return open_input(task.archive, task.storage_options)
    except FileNotFoundError:
        raise ArchiveError(task.archive, None, "cannot open: no such object") from None


def _source_stat(task: Task) -> tuple[int, int]:
    if is_url(task.archive):
        from .storage import source_stat

        return source_stat(task.archive, task.storage_options)
    stat = os.stat(task.archive)
    return stat.st_size, stat.st_mtime_ns


def _copy_member(
    task: Task,
    fileobj: Any,
    zf: Any,
    member: Member,
    shape: tuple[int, ...],
    dim_names: tuple[str, ...],
    chunk_rows: int,
    buffers: list[np.ndarray],
    sink: Any,
) -> ArrayRecord:
    options = task.options
    rows = shape[0]
    chunks = (max(1, min(chunk_rows, rows)), *shape[1:])
    if options.contiguous:  # one chunk for the whole array; slabs still stream in pieces
        chunks = (max(1, rows), *shape[1:])
    inner_chunks = None
    if options.shard_rows:  # the store's grid is shards; chunks live inside them
        inner_chunks = chunks
        chunks = (shard_rows(options.shard_rows, chunks[0], rows), *shape[1:])
    handle = sink.add_array(
        ArraySpec(
            name=member.array_name,
            shape=shape,
            dtype=np.dtype(options.dtype).str,
            chunks=chunks,
            dimension_names=dim_names,
            attributes={
                "source_archive": task.archive,
                "member": member.name,
                "crc32": member.crc32,
                "nbytes": member.file_size,
                "dtype": np.dtype(options.dtype).str,
                "zconvert_version": __version__,
            },
            inner_chunks=inner_chunks,
        )
    )
    # A slab is a whole number of chunks (shards), so no chunk is ever written twice.
    longest = len(buffers[0])
    slab_rows = (longest // chunks[0]) * chunks[0] if longest >= chunks[0] else longest
    row_bytes = buffers[0].itemsize * math.prod(shape[1:])
    step = piece_rows(chunks[0], slab_rows, row_bytes, sink.partial_writes(handle))
    threads = threads_for(member.compress_size, options.inflate_threads, options.parallel_inflate)
    reader = MemberReader(task.archive, fileobj, zf, member, threads)
    try:
        with SlabPipeline(lambda row, piece: sink.write_slab(handle, row, piece), buffers) as pipe:
            row = 0
            ended = False
            while not ended:
                buffer = pipe.buffer()
                filled = 0
                while filled < slab_rows:
                    want = min(step, slab_rows - filled)
                    piece = buffer[filled : filled + want]
                    nbytes = reader.readinto(memoryview(piece).cast("B"))
                    n_rows, rest = divmod(nbytes, row_bytes)
                    if rest or row + n_rows > rows:
                        raise ArchiveError(
                            task.archive,
                            member.name,
                            f"inflates to more or other than the {member.file_size} bytes the archive declares",
                        )
                    if n_rows:
                        pipe.submit(row, piece[:n_rows])
                    row += n_rows
                    filled += n_rows
                    if n_rows < want:
                        ended = True
                        break
                pipe.release(buffer)
        reader.verify_end()
    finally:
        reader.close()
    stored = sink.finish_array(handle)
    return ArrayRecord(
        name=member.array_name,
        member=member.name,
        shape=shape,
        dtype=np.dtype(options.dtype).str,
        chunks=inner_chunks or chunks,  # as zarr reports them: the chunks inside shards
        codec=options.codec,
        crc32=member.crc32,
        nbytes=member.file_size,
        stored_bytes=stored,
        shards=chunks if inner_chunks else None,
    )


def shard_rows(configured: int, chunk_rows: int, rows: int) -> int:
    """Rows per shard of an array: as configured, but no more than the whole chunks that
    cover a shorter array (its single shard then indexes no chunk past its end)."""
    covering = -(-max(rows, 1) // chunk_rows) * chunk_rows
    return min(configured, covering)


# Uncompressed pieces handed to the writer: small enough that little is left to write after
# the last byte is inflated, large enough for full-speed direct writes (1 MiB: 0.94 GB/s
# here, as fast as 8 MiB).
PIECE_BYTES = 1 << 20


def piece_rows(chunk_rows: int, slab_rows: int, row_bytes: int, partial: bool) -> int:
    """Rows handed to the writer at a time: about PIECE_BYTES of page-aligned rows where the
    sink takes any rows, else whole chunks (as few as make PIECE_BYTES, at least one)."""
    if partial:
        unit = 4096 // math.gcd(row_bytes, 4096)  # rows that are a whole number of pages
        rows = max(unit, PIECE_BYTES // row_bytes // unit * unit)
    else:
        rows = max(1, PIECE_BYTES // (chunk_rows * row_bytes)) * chunk_rows
    return max(1, min(rows, slab_rows))


def peak_rss_bytes() -> int:
    """This process's own peak resident memory (VmHWM; ru_maxrss would include the parent's)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return 0


def convert_task(task: Task) -> Result:
    """Convert one archive; never raises for a bad archive, returns a failed Result instead."""
    start = time.perf_counter()
    base = {
        "archive": task.archive,
        "store": task.store,
        "relpath": task.relpath,
        "format": task.options.format,
        "pid": os.getpid(),
    }
    try:
        records, bytes_in, bytes_out = _convert(task)
    except ArchiveError as exc:
        return Result(
            **base,
            status="failed",
            error=exc.reason,
            member=exc.member,
            seconds=time.perf_counter() - start,
            traceback=traceback.format_exc() if task.options.debug else None,
        )
    except Exception as exc:
        return Result(
            **base,
            status="failed",
            error=_describe(exc),
            seconds=time.perf_counter() - start,
            traceback=traceback.format_exc() if task.options.debug else None,
        )
    return Result(
        **base,
        status="converted",
        arrays=tuple(records),
        bytes_in=bytes_in,
        bytes_out=bytes_out,
        seconds=time.perf_counter() - start,
        peak_rss=peak_rss_bytes(),
    )


def _describe(exc: BaseException) -> str:
    import errno

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        # os.strerror, not exc.strerror: HDF5's is a multi-line dump of its write call.
        return f"disk full or file too large while writing the store ({os.strerror(exc.errno)}); free space or raise the limit"
    if isinstance(exc, OSError) and exc.strerror:
        return _one_line(f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else ""))
    return _one_line(f"{type(exc).__name__}: {exc}")


def _one_line(text: str) -> str:
    """Errors are printed one per line; library messages sometimes span several."""
    return " ".join(text.split())
