"""Verify converted stores: re-read every array and check CRC32 and size against the source.

A store's array attributes record the CRC32 and byte size of the member it came from (the raw
little-endian bytes as in the archive); the manifest records them too. Arrays are read a slab of
whole chunks at a time, so memory stays bounded whatever their size. With `sources=True` the
archives are re-inflated and checked against their own central directory and the store.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..core.errors import ArchiveError, ZconvertError
from ..core.records import DAMAGED, SERVING, ArrayRecord, StoreCheck, StoreVerdict
from ..core.storage import as_path, is_url
from ..stores.folder import (
    UNFINISHED,
    absolute,
    is_output_folder,
    is_unfinished_folder,
    store_location,
    stores_exist,
    stores_in,
)
from ..stores.manifest import iter_manifest, manifest_path, read_results
from ..stores.opened import StoredArray, opened_store, refuse_bad_place
from ..zipread.archive import MemberReader
from ..zipread.inflate import crc32
from ..zipread.members import list_members, open_archive
from .fingerprint import OPTIONS_ATTR
from .run_manifest import mark_damaged

SLAB_BYTES = 8 << 20
log = logging.getLogger("zconvert")


def verify(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    sources: bool = False,
    workers: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> list[str]:
    """Check output folders (by their manifest, or every store found in a folder whose run did
    not write one) or single stores, by local path or URL; returns one line per problem.
    Stores are checked on a pool of `workers` processes (default: one per core), as `convert`
    converts them."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    so = dict(storage_options or {})
    # In order: a problem found here (a str) or a store to check.
    items: list[str | StoreCheck] = []
    for raw in paths:
        path = absolute(as_path(raw))
        refuse_bad_place(path, so)
        if is_output_folder(path, so):
            try:
                header, entries = iter_manifest(path, so)
                getattr(entries, "close", lambda: None)()  # the header is all this needs
                results = [r for r in read_results(path, so) if r.status in CHECKED]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                items.append(f"{manifest_path(path)}: manifest cannot be read ({exc})")
                continue
            if header.get("complete", True) is not True:
                when = f" (manifest written {header.get('written')})"
                items.append(f"{path}: {UNFINISHED.format(when=when)}")
            # failed (no store) and orphans are not checked; OUT may have moved since the run
            stores = [store_location(path, r.relpath) for r in results]
            for result, store, exists in zip(
                results, stores, stores_exist(stores, so, path), strict=True
            ):
                if not exists:
                    items.append(f"{store}: listed in the manifest but missing")
                    continue
                items.append(
                    StoreCheck(store, result.relpath, result.format, result.arrays, sources, so)
                )
        elif is_unfinished_folder(path, so):
            found = stores_in(path, so)
            items.append(f"{path}: no manifest.json: {UNFINISHED.format(when='')}")
            if not found:
                items.append(f"{path}: no manifest.json and no stores")
            items.extend(
                StoreCheck(s, s[len(path) :].lstrip("/" + os.sep), "", None, sources, so)
                for s in found
            )
        else:
            items.append(_single_store_task(path, sources, so))
    found = _run([t for t in items if isinstance(t, StoreCheck)], workers)
    _record_damaged(items, found)
    return [
        line
        for item in items
        for line in ([item] if isinstance(item, str) else found.get(item.store, []))
    ]


# The manifest entries verify checks: those readers are handed, and those it marked damaged
# before (still damaged until a convert redoes them).
CHECKED = (*SERVING, DAMAGED)


def _single_store_task(store: str, sources: bool, so: dict[str, Any]) -> StoreCheck:
    """A store named on its own: checked against its run's manifest entry too, when it sits in
    a run folder that lists it (so that damage found is marked there as well)."""
    if is_url(store):  # no manifest search up a bucket: the store is checked on its own
        return StoreCheck(store, store.rstrip("/").rpartition("/")[2], "", None, sources, so)
    parent = os.path.dirname(store)
    while parent != os.path.dirname(parent):
        if os.path.isfile(manifest_path(parent)):
            relpath = os.path.relpath(store, parent).replace(os.sep, "/")
            try:
                listed = [r for r in read_results(parent) if r.relpath == relpath]
            except (OSError, ValueError, KeyError, TypeError):
                listed = []
            if listed and listed[0].status in CHECKED:
                found = listed[0]
                return StoreCheck(store, relpath, found.format, found.arrays, sources)
            break
        parent = os.path.dirname(parent)
    return StoreCheck(store, os.path.basename(store), "", None, sources)


def _record_damaged(items: list[str | StoreCheck], found: dict[str, list[str]]) -> None:
    """Mark the damaged stores of each run folder in its manifest, so that the next plain
    `zconvert convert` redoes them (its up-to-date check reads metadata, not data)."""
    by_folder: dict[str, tuple[dict[str, str], dict[str, Any]]] = {}
    for item in items:
        if isinstance(item, StoreCheck) and item.expected is not None and found.get(item.store):
            out = item.store[: -len(item.relpath)].rstrip("/" + os.sep)
            by_folder.setdefault(out, ({}, item.storage_options))[0][item.relpath] = found[
                item.store
            ][0]
    for out, (problems, storage_options) in by_folder.items():
        try:
            marked = mark_damaged(out, problems, storage_options)
        except ZconvertError as exc:  # OUT is locked by a run: it may be redoing them now
            log.warning("note: %s: damaged stores not marked in the manifest (%s)", out, exc)
            continue
        if marked:
            noun = "store is" if marked == 1 else "stores are"
            log.warning(
                "note: %d damaged %s marked in %s: run the same `zconvert convert ... -o %s` "
                "command again (no --overwrite needed) to redo them",
                marked,
                noun,
                manifest_path(out),
                shlex.quote(out),
            )


def _run(checks: list[StoreCheck], workers: int | None) -> dict[str, list[str]]:
    """Check every store, in worker processes when there are several: problems by store."""
    if len(checks) <= 1 or workers == 1:
        verdicts = [check_store(c) for c in checks]
    else:
        from .executors import gc_frozen, get_executor

        executor = get_executor("local", workers=workers)
        with gc_frozen():
            verdicts = list(executor.map(check_store, checks))
    return {
        v.store: [
            line if line.startswith(v.store) else f"{v.store}: {line}"  # a worker that died
            for line in v.problems
        ]
        for v in verdicts
        if v.problems
    }


def check_store(check: StoreCheck) -> StoreVerdict:
    """One store checked in this process (what `verify` ships to its workers)."""
    import zarr

    # One decode thread: zarr's pool left peak memory growing with the array (37 -> 65 MiB
    # for 32 -> 256 MB arrays); with one thread it stays flat (25 -> 29 MiB).
    with zarr.config.set({"threading.max_workers": 1}):
        problems = verify_store(check.store, check.sources, check.expected, check.storage_options)
    return StoreVerdict(check.store, tuple(problems))


def verify_store(
    store: str,
    sources: bool = False,
    expected: tuple[ArrayRecord, ...] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> list[str]:
    """Re-read one store's arrays; `expected` (from the manifest) must agree with them too."""
    try:
        with opened_store(store, False, storage_options) as (root, arrays, handles):
            return _check_store(store, root, arrays, handles, sources, expected)
    except Exception as exc:
        return [f"{store}: cannot be opened ({type(exc).__name__}: {exc})"]


def _check_store(
    store: str,
    root: dict[str, Any],
    arrays: list[StoredArray],
    handles: dict[str, Any],
    sources: bool,
    expected: tuple[ArrayRecord, ...] | None,
) -> list[str]:
    problems: list[str] = []
    if not arrays:
        problems.append(f"{store}: holds no arrays")
    by_name = {a.name: a for a in arrays}
    for record in expected or ():
        got = by_name.get(record.name)
        member_bytes = record.nbytes if record.member_bytes is None else record.member_bytes
        if got is None:
            problems.append(f"{store}: {record.name}: in the manifest but not in the store")
        elif (got.attrs.get("crc32"), got.attrs.get("nbytes")) != (record.crc32, member_bytes):
            problems.append(
                f"{store}: {record.name}: store attributes (crc32, nbytes) = "
                f"{got.attrs.get('crc32')}, {got.attrs.get('nbytes')} but the manifest records "
                f"{record.crc32}, {member_bytes}"
            )
        elif tuple(got.shape) != tuple(record.shape):
            problems.append(
                f"{store}: {record.name}: shape {got.shape} but the manifest records {record.shape}"
            )
    if expected is not None:
        listed = {r.name for r in expected}
        problems.extend(
            f"{store}: {a.name}: in the store but not in the manifest"
            for a in arrays
            if a.name not in listed
        )
    for array in arrays:
        problem = _check_array(array, handles[array.name])
        if problem:
            problems.append(f"{store}: {array.name}: {problem}")
    if sources:
        problems.extend(_check_sources(store, root, by_name))
    return problems


def _check_array(array: StoredArray, handle: Any) -> str | None:
    attrs = array.attrs
    if "crc32" not in attrs or "nbytes" not in attrs or "dtype" not in attrs:
        return "no crc32/nbytes/dtype attributes (not written by zconvert?)"
    dtype = np.dtype(attrs["dtype"])
    nbytes = len(_npy_header(array)) + math.prod(array.shape) * dtype.itemsize
    if nbytes != attrs["nbytes"]:
        return f"holds {nbytes} bytes but the source member had {attrs['nbytes']}"
    try:
        crc = _array_crc32(array, handle, dtype)
    except Exception as exc:
        return f"cannot be read ({type(exc).__name__}: {exc})"
    if crc != attrs["crc32"]:
        return f"CRC32 {crc:08x} but the source member had {attrs['crc32']:08x}; reconvert it"
    return None


def _npy_header(array: StoredArray) -> bytes:
    """The .npy header a member began with (empty for a raw member): part of its CRC32."""
    return bytes.fromhex(array.attrs.get("npy_header_hex") or "")


def _array_crc32(array: StoredArray, handle: Any, dtype: np.dtype) -> int:
    """The CRC32 of the member the array came from: its .npy header, if it had one, then its
    data in the member's byte order (a Fortran array's column by column)."""
    crc = crc32(_npy_header(array), 0)
    if not array.shape:
        return crc32(memoryview(np.ascontiguousarray(handle[()], dtype=dtype)).cast("B"), crc)
    fortran = bool(array.attrs.get("fortran_order")) and len(array.shape) > 1
    axis = len(array.shape) - 1 if fortran else 0
    rows = array.shape[axis]
    row_bytes = dtype.itemsize * math.prod(array.shape) // max(rows, 1)
    chunk_rows = max(1, array.chunks[axis] if array.chunks else 1)
    # Whole chunks per read: a compressed chunk is decoded once, never twice.
    step = chunk_rows * max(1, SLAB_BYTES // max(1, chunk_rows * row_bytes))
    lead = (slice(None),) * axis
    for start in range(0, rows, step):
        block = np.asarray(handle[(*lead, slice(start, start + step))], dtype=dtype)
        block = np.ascontiguousarray(block.T if fortran else block)
        crc = crc32(memoryview(block).cast("B"), crc)
    return crc


def _selection(root: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The include and exclude globs the store was converted with (in its options record)."""
    try:
        options = json.loads(root.get(OPTIONS_ATTR) or "{}")
    except (TypeError, ValueError):
        options = {}
    return tuple(options.get("include", ())), tuple(options.get("exclude", ()))


def _check_sources(store: str, root: dict[str, Any], by_name: dict[str, StoredArray]) -> list[str]:
    archive = root.get("source_archive")
    if not archive:
        return [f"{store}: no source_archive attribute; cannot check the source"]
    problems: list[str] = []
    try:
        fileobj, zf = open_archive(archive)
    except ArchiveError as exc:
        return [f"{store}: source {exc}"]
    with fileobj, zf:
        try:
            selection = _selection(root)
            members = list_members(archive, zf, *selection)
        except ArchiveError as exc:
            return [f"{store}: source {exc}"]
        buffer = memoryview(bytearray(SLAB_BYTES))
        for member in members:
            stored = by_name.get(member.array_name)
            if stored is None:
                problems.append(f"{store}: source member {member.name} has no array in the store")
                continue
            if stored.attrs.get("crc32") != member.crc32:
                problems.append(
                    f"{store}: {stored.name}: the archive now records CRC32 {member.crc32:08x}, "
                    f"the store {stored.attrs.get('crc32', 0):08x}; reconvert it"
                )
            reader = MemberReader(archive, fileobj, zf, member)
            try:
                while reader.readinto(buffer) == len(buffer):
                    pass
                reader.verify_end()
            except ArchiveError as exc:
                problems.append(f"{store}: source {exc}")
            except Exception as exc:  # e.g. NotImplementedError for an unknown method
                problems.append(f"{store}: source {archive}: {member.name}: {exc}")
            finally:
                reader.close()
    return problems
