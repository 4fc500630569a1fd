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

from .._version import __version__
from ..core.errors import ArchiveError
from ..core.records import ArrayRecord, Result, SkippedMember, Task
from ..core.storage import archive_location, archive_stat
from ..sinks import ArraySpec, open_sink
from ..sinks.directio import slab_buffers
from ..sinks.layout import SKIPPED_ATTR, skipped_members_attr
from ..sinks.slabs import SlabPipeline
from ..zipread.archive import MemberReader, data_offset
from ..zipread.member_layout import MemberLayout, checked_members
from ..zipread.members import Member, open_archive
from ..zipread.parallel_inflate import threads_for
from .array_sizes import array_sizes, piece_rows, reference_chunk_rows
from .fingerprint import OPTIONS_ATTR, options_digest, options_fingerprint


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


def dimension_names(members: list[Member], shapes: list[tuple[int, ...]]) -> list[tuple[str, ...]]:
    """xarray-friendly names: 'row' for the first axis, 'column' for a 2-D array's second,
    'dim_N' beyond. A name is shared by every array while they agree on its length; where
    they differ, each array gets its own ('a_row'), as xarray rejects one name with two."""

    def base(shape: tuple[int, ...], axis: int) -> str:
        if axis == 0:
            return "row"
        return "column" if len(shape) == 2 else f"dim_{axis}"

    lengths: dict[str, set[int]] = {}
    for shape in shapes:
        for axis, n in enumerate(shape):
            lengths.setdefault(base(shape, axis), set()).add(n)
    names = []
    for member, shape in zip(members, shapes, strict=True):
        prefix = member.array_name.replace("/", "_")
        names.append(
            tuple(
                name if len(lengths[name]) == 1 else f"{prefix}_{name}"
                for name in (base(shape, axis) for axis in range(len(shape)))
            )
        )
    return names


def _convert(
    task: Task,
) -> tuple[
    list[ArrayRecord], list[SkippedMember], int, int, tuple[int, int, int | None, str | None]
]:
    options = task.options
    fileobj, zf = open_archive(task.archive, storage_options=task.storage_options)
    with fileobj, zf:
        members, skipped, layouts = checked_members(task.archive, fileobj, zf, options)
        dims = dimension_names(members, [layout.shape for layout in layouts])
        # The store records size and mtime; the manifest all of it, so that a rerun trusts a
        # stat only for an archive nothing has touched since (restoring an mtime changes the
        # ctime; rewriting an object changes its ETag).
        source = archive_stat(task.archive, task.storage_options, fileobj)
        source_size, source_mtime_ns = source[:2]
        sink = open_sink(
            task.store,
            options,
            {
                "zconvert_version": __version__,
                "source_archive": task.archive,
                "source_size": source_size,
                "source_mtime_ns": source_mtime_ns,
                OPTIONS_ATTR: options_fingerprint(options),  # what resume compares
                # Listed where the arrays are, so that nothing leaves an archive unseen.
                **({SKIPPED_ATTR: skipped_members_attr(skipped)} if skipped else {}),
            },
            storage_options=task.storage_options,
        )
        try:
            write = _refer_member if options.refers else _copy_member
            records = [
                write(task, fileobj, zf, member, layout, dim_names, sink)
                for member, layout, dim_names in zip(members, layouts, dims, strict=True)
            ]
            sink.commit()
        except BaseException:
            sink.abort()
            raise
    bytes_in = sum(m.compress_size for m in members)
    bytes_out = sum(r.nbytes for r in records)  # the arrays' bytes: no .npy header
    return records, skipped, bytes_in, bytes_out, source


def _zarr3(options: Any) -> bool:
    return options.format == "zarr" and options.zarr_format == 3


def _copy_member(
    task: Task,
    fileobj: Any,
    zf: Any,
    member: Member,
    layout: MemberLayout,
    dim_names: tuple[str, ...],
    sink: Any,
) -> ArrayRecord:
    """Stream one member into a new array of the sink. The member's bytes are read as the
    C-order array `stream_shape` (a Fortran array's transpose), cut into slabs of whole
    chunks along its first axis; each slab reaches the sink in the array's own axis order."""
    options = task.options
    dtype = np.dtype(layout.dtype)
    stream = layout.stream_shape
    rows, row_shape = stream[0], stream[1:]
    row_bytes = dtype.itemsize * math.prod(row_shape)
    sizes = array_sizes(options, rows, row_shape, row_bytes, scalar=not layout.shape)
    chunks, inner_chunks, slab_rows = sizes.chunks, sizes.inner_chunks, sizes.slab_rows
    in_array_order = _array_order(layout)
    handle = sink.add_array(
        ArraySpec(
            name=member.array_name,
            shape=layout.shape,
            dtype=dtype.str,
            chunks=in_array_order(chunks),
            dimension_names=dim_names,
            attributes=_array_attributes(task, member, layout, dtype),
            inner_chunks=in_array_order(inner_chunks) if inner_chunks else None,
            axis=layout.axis,
        )
    )
    # Page-aligned, so the sinks can hand slabs to O_DIRECT writes without a copy.
    buffers = slab_buffers(sizes.buffer_rows, row_shape, dtype)
    step = piece_rows(chunks[0], slab_rows, row_bytes, sink.partial_writes(handle))
    threads = threads_for(member.compress_size, options.inflate_threads, options.parallel_inflate)
    reader = MemberReader(task.archive, fileobj, zf, member, threads)
    try:
        if layout.data_offset:  # the .npy header: counted in the CRC32, not array data
            reader.readinto(memoryview(bytearray(layout.data_offset)))
        with SlabPipeline(
            lambda row, piece: sink.write_slab(handle, row, in_array_order(piece)), buffers
        ) as pipe:
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
        shape=layout.shape,
        # As the store gives it back: Zarr 3 keeps byte order in its codec, not its dtype,
        # and zarr reads a big-endian array as the native one (the values are the same).
        dtype=dtype.newbyteorder("=").str if _zarr3(options) else dtype.str,
        # as zarr reports them: the chunks inside shards
        chunks=in_array_order(inner_chunks or chunks),
        codec=options.codec,
        crc32=member.crc32,
        nbytes=dtype.itemsize * math.prod(layout.shape),
        stored_bytes=stored,
        shards=in_array_order(chunks) if inner_chunks else None,
        member_bytes=member.file_size,
    )


def _refer_member(
    task: Task,
    fileobj: Any,
    zf: Any,
    member: Member,
    layout: MemberLayout,
    dim_names: tuple[str, ...],
    sink: Any,
) -> ArrayRecord:
    """One stored member as an array of references to its bytes in the archive: chunks of
    whole rows (along the axis its bytes run slowest) that divide the array evenly."""
    options = task.options
    dtype = np.dtype(layout.dtype)
    stream = layout.stream_shape
    row_bytes = dtype.itemsize * math.prod(stream[1:])
    wanted = array_sizes(options, stream[0], stream[1:], row_bytes, not layout.shape).chunks[0]
    chunks = (reference_chunk_rows(stream[0], wanted), *stream[1:])
    in_array_order = _array_order(layout)
    attributes = _array_attributes(task, member, layout, dtype)
    attributes["header_offset"] = member.header_offset  # where a rerun expects the member
    spec = ArraySpec(
        member.array_name, layout.shape, dtype.str, in_array_order(chunks), dim_names,
        attributes, axis=layout.axis,
    )  # fmt: skip
    handle = sink.add_array(spec)
    offset = data_offset(task.archive, fileobj, member) + layout.data_offset
    sink.refer(handle, archive_location(task.archive), offset)
    return ArrayRecord(
        name=member.array_name,
        member=member.name,
        shape=layout.shape,
        dtype=dtype.str,  # Zarr 2 keeps byte order in the dtype
        chunks=spec.chunks,
        codec="reference",
        crc32=member.crc32,
        nbytes=dtype.itemsize * math.prod(layout.shape),
        stored_bytes=sink.finish_array(handle),
        member_bytes=member.file_size,
    )


def _array_attributes(
    task: Task, member: Member, layout: MemberLayout, dtype: np.dtype
) -> dict[str, Any]:
    """What every store records of each array: where it came from, and how to check it."""
    return {
        "source_archive": task.archive,
        "member": member.name,
        "member_format": "npy" if layout.npy else "raw",
        **_npy_attributes(layout),
        "crc32": member.crc32,
        "nbytes": member.file_size,
        "dtype": dtype.str,
        "zconvert_version": __version__,
    }


def _npy_attributes(layout: MemberLayout) -> dict[str, Any]:
    """A .npy member's header (its CRC32 covers it, so verify needs it) and its order."""
    if not layout.npy:
        return {}
    # Hex: the header holds NUL bytes, which HDF5 string attributes cannot.
    return {"npy_header_hex": layout.npy_header.hex(), "fortran_order": layout.fortran_order}


def _array_order(layout: MemberLayout) -> Any:
    """Shapes and slabs from the member's byte order to the array's: reversed (transposed) for
    a Fortran array, none for a 0-d one; unchanged otherwise."""
    if not layout.shape:
        return lambda x: () if isinstance(x, tuple) else x.reshape(())
    if layout.axis:
        return lambda x: tuple(reversed(x)) if isinstance(x, tuple) else x.T
    return lambda x: x


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
    try:
        records, skipped, bytes_in, bytes_out, source = _convert(task)
    except ArchiveError as exc:
        return Result.of(
            task,
            "failed",
            error=exc.reason,
            member=exc.member,
            seconds=time.perf_counter() - start,
            traceback=traceback.format_exc() if task.options.debug else None,
        )
    except Exception as exc:
        return Result.of(
            task,
            "failed",
            error=_describe(exc),
            seconds=time.perf_counter() - start,
            traceback=traceback.format_exc() if task.options.debug else None,
        )
    return Result.of(
        task,
        "converted",
        arrays=tuple(records),
        skipped_members=tuple(skipped),
        bytes_in=bytes_in,
        bytes_out=bytes_out,
        seconds=time.perf_counter() - start,
        peak_rss=peak_rss_bytes(),
        source_size=source[0],
        source_mtime_ns=source[1],
        source_ctime_ns=source[2],
        source_etag=source[3],
        options_id=options_digest(task.options),
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
