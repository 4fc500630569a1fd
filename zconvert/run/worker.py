"""Convert one Task into one store: the only function executors run.

Inflate each member a slab of whole chunks at a time into two reused buffers, the sink
writing one while the next is inflated (slabs.py); check CRC32 and size; then commit.
Whatever goes wrong becomes a failed Result naming the archive and member; nothing is left
at the store's final path.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from typing import Any

from .._version import __version__
from ..core.errors import ArchiveError
from ..core.records import ArrayRecord, Result, SkippedMember, Task
from ..core.storage import archive_stat
from ..sinks import open_sink
from ..sinks.layout import SKIPPED_ATTR, skipped_members_attr
from ..zipread.member_layout import MemberLayout, checked_members
from ..zipread.members import Member, open_archive
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
            # Referring needs no numpy, slabs or inflate: loaded only by the runs that copy.
            if options.refers:
                from .member_refer import refer_member as write
            else:
                from .member_copy import copy_member as write
            records = [
                write(task, fileobj, zf, member, layout, names, sink, _array_attributes(task, member, layout))
                for member, layout, names in zip(members, layouts, dims, strict=True)
            ]  # fmt: skip
            sink.commit()
        except BaseException:
            sink.abort()
            raise
    bytes_in = sum(m.compress_size for m in members)
    bytes_out = sum(r.nbytes for r in records)  # the arrays' bytes: no .npy header
    return records, skipped, bytes_in, bytes_out, source


def _array_attributes(task: Task, member: Member, layout: MemberLayout) -> dict[str, Any]:
    """What every store records of each array: where it came from, and how to check it."""
    return {
        "source_archive": task.archive,
        "member": member.name,
        "member_format": "npy" if layout.npy else "raw",
        **_npy_attributes(layout),
        "crc32": member.crc32,
        "nbytes": member.file_size,
        "dtype": layout.dtype,  # numpy's dtype.str, byte order included
        "zconvert_version": __version__,
    }


def _npy_attributes(layout: MemberLayout) -> dict[str, Any]:
    """A .npy member's header (its CRC32 covers it, so verify needs it) and its order."""
    if not layout.npy:
        return {}
    # Hex: the header holds NUL bytes, which HDF5 string attributes cannot.
    return {"npy_header_hex": layout.npy_header.hex(), "fortran_order": layout.fortran_order}


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
