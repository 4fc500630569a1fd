"""Resume: is a store at its final path complete and up to date for its task?

A store is current when its source archive has the size and mtime the store records, the
archive's central directory lists the same members with the same CRC32s and sizes, and it was
written with the same format, dtype, shape, chunking, sharding and codec. Only metadata is
read (the store's attributes and the archive's central directory), never array data, so the
check is cheap enough for a dry run or the parent process.
"""

from __future__ import annotations

import numpy as np

from ..core.errors import ArchiveError
from ..core.records import ArrayRecord, Result, SkippedMember, Task
from ..core.storage import ArchiveStat, archive_stat
from ..stores.folder import store_exists
from ..stores.opened import read_store_metadata, zarr_format_of
from ..zipread.member_layout import raw_dtype_shape
from ..zipread.members import open_archive, select_members
from .fingerprint import OPTIONS_ATTR, options_changed, options_digest, options_fingerprint


def current_arrays(
    task: Task, stat: ArchiveStat | None = None
) -> tuple[str | None, list[ArrayRecord], tuple[SkippedMember, ...]]:
    """(None, the store's arrays, the members skipped) if the store is current, else
    (why not, [], ()). `stat`: the archive's, taken by the caller before this check. Stores
    and archives are files or objects alike (a URL store is complete once its root document
    is there)."""
    store, options, so = task.store, task.options, task.storage_options
    if not store_exists(store, so):
        return "store missing", [], ()
    if stat is None:
        try:
            stat = archive_stat(task.archive, so)
        except OSError as exc:
            return f"cannot stat the archive ({exc.strerror or exc})", [], ()
    try:
        root, arrays = read_store_metadata(store, so)
    except Exception as exc:
        return f"the store cannot be read ({type(exc).__name__}: {exc})", [], ()
    if root.get(OPTIONS_ATTR) != options_fingerprint(options):
        return options_changed(root.get(OPTIONS_ATTR), options), [], ()
    if options.format == "zarr" and zarr_format_of(store, so) != options.zarr_format:
        return "the store has another Zarr format", [], ()
    if root.get("source_size") != stat.size:
        return "archive modified (size changed)", [], ()
    if root.get("source_mtime_ns") != stat.mtime_ns:
        return "archive modified (modification time changed)", [], ()
    try:
        fileobj, zf = open_archive(task.archive, storage_options=so)
        with fileobj, zf:
            members, skipped = select_members(task.archive, zf, options.include, options.exclude)
    except ArchiveError as exc:
        return exc.reason, [], ()
    except Exception as exc:
        return f"the archive cannot be read ({type(exc).__name__}: {exc})", [], ()
    by_name = {a.name: a for a in arrays}
    if sorted(by_name) != sorted(m.array_name for m in members):
        return "the store's arrays differ from the archive's members", [], ()
    records = []
    for m in members:
        a = by_name[m.array_name]
        recorded = (a.attrs.get("member"), a.attrs.get("crc32"), a.attrs.get("nbytes"))
        if recorded != (m.name, m.crc32, m.file_size):
            return f"{m.name}: CRC32 or size differs from what the store records", [], ()
        if a.attrs.get("header_offset", m.header_offset) != m.header_offset:
            return f"{m.name}: moved within the archive (its references point elsewhere)", [], ()
        member_format = a.attrs.get("member_format")
        if member_format is None and m.name.lower().endswith(".npy"):
            return f"{m.name}: stored by a zconvert that did not read .npy headers", [], ()
        if member_format != "npy":  # a .npy member's layout is its header's: same CRC, same
            dtype_str, shape = raw_dtype_shape(m.name, options)
            dtype = np.dtype(dtype_str)
            # Byte order aside: Zarr 3 gives it back native (the options' digest has it).
            same_type = np.dtype(a.dtype).newbyteorder("<") == dtype.newbyteorder("<")
            if not same_type or a.shape[1:] != tuple(shape[1:]):
                return f"{m.name}: the stored dtype or shape differs from the options", [], ()
            if a.shape[0] * dtype.itemsize * int(np.prod(a.shape[1:])) != m.file_size:
                return f"{m.name}: the stored array does not hold the member's size", [], ()
        records.append(
            ArrayRecord(
                name=a.name,
                member=m.name,
                shape=a.shape,
                dtype=a.dtype,
                chunks=a.chunks,
                codec="reference" if options.refers else options.codec,
                crc32=m.crc32,
                nbytes=np.dtype(a.dtype).itemsize * int(np.prod(a.shape)),
                stored_bytes=a.stored_bytes,
                shards=a.shards,
                member_bytes=m.file_size,
            )
        )
    return None, records, tuple(skipped)


def store_is_current(task: Task) -> str | None:
    """None if the task's store is complete and up to date, else the reason it must be redone."""
    return current_arrays(task)[0]


def convert_unless_current(task: Task) -> Result:
    """The worker function of a resumed run: skip a current store, convert anything else."""
    from .worker import convert_task

    try:
        # Taken before the store and archive are read, and the one the manifest records: an
        # archive changed during the check then shows a newer stat to the next rerun.
        stat = archive_stat(task.archive, task.storage_options)
    except OSError:
        return convert_task(task)  # which reports why in the archive's Result
    reason, records, skipped = current_arrays(task, stat)
    if reason is not None:
        return convert_task(task)
    return Result.of(
        task,
        "skipped",
        arrays=tuple(records),  # kept in the manifest; bytes stay 0: this run moved none
        skipped_members=skipped,
        source_size=stat.size,
        source_mtime_ns=stat.mtime_ns,
        source_ctime_ns=stat.ctime_ns,
        source_etag=stat.etag,
        options_id=options_digest(task.options),
    )
