"""The manifest during a run: what the earlier one says a rerun can skip, and this run's
results merged into it, written now and then and at the end (the document: manifest.py)."""

from __future__ import annotations

import heapq
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from typing import Any, NamedTuple

from .._version import __version__
from ..core.convert_options import ConvertOptions, run_chunk_rows
from ..core.errors import ConfigError
from ..core.records import DAMAGED, ORPHAN, SERVING, Result, Task
from ..core.storage import is_url
from ..stores.folder import REMOTE_REQUESTS, store_exists, stores_exist
from ..stores.manifest import (
    MANIFEST_VERSION,
    entry_line,
    index_row,
    indexed,
    iter_manifest,
    manifest_path,
    read_rerun_index,
    write_manifest,
)
from .fingerprint import options_digest
from .task_list import store_locator


def recorded_options(options: ConvertOptions) -> dict[str, Any]:
    """The run's options as they took effect: defaults resolved (chunk_rows for the run's
    dtype and shape; the decompression-bomb limit and the member size it starts at), so that
    a manifest says what was done, not what was left unsaid."""
    from ..zipread.members import DEFAULT_MAX_RATIO, RATIO_CHECK_MIN_BYTES

    document = asdict(options)
    document["chunk_rows"] = run_chunk_rows(options)
    if options.max_ratio is None:
        document["max_ratio"] = DEFAULT_MAX_RATIO
        document["max_ratio_from_bytes"] = RATIO_CHECK_MIN_BYTES
    return document


def file_stamp(path: str) -> str | None:
    """A local archive's stamp as the manifest's index records it, "size:mtime:ctime"; None
    when it cannot be stat'ed."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return f"{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}"


class Orphan(NamedTuple):
    """An earlier store whose archive is not among this run's inputs."""

    relpath: str
    archive: str
    store: str

    @property
    def why(self) -> str:
        """'archive deleted' or, for one that exists but was not named, 'archive not an input'."""
        if self.archive and not is_url(self.archive) and not os.path.exists(self.archive):
            return "archive deleted"
        return "archive not among this run's inputs"


class RunManifest:
    """OUT/manifest.json as one run goes: written whole and atomically now and then (an
    interrupted run leaves an inspectable folder) and at the end, merging this run's results
    into the earlier manifest one entry at a time, so that its size never costs memory.

    Earlier stores are kept when their files still exist; a store of another format than the
    run's is refused (one folder holds one layout) or, with --overwrite, handed back for removal.
    """

    def __init__(
        self,
        out: str | os.PathLike[str],
        options: ConvertOptions,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.out = os.fspath(out)
        self.options = options
        self.storage_options = storage_options
        self.path = manifest_path(out)
        self.was_complete = False  # an earlier manifest exists and its run finished
        self.has_index = False  # it has a rerun index (an older version's has none)
        self.other_layout: list[str] = []  # relpaths of another format's stores
        self._other_format: str | None = None
        self._listings: dict[str, set[str]] = {}  # names in each output folder, listed once
        self._from_manifest: dict[str, str] = {}  # relpath -> store, of those scan() found current
        self._planned: set[str] | None = None  # the relpaths of this run's tasks
        self.orphans: list[Orphan] = []  # earlier stores whose archive is not among the inputs
        self.damaged: set[str] = set()  # relpaths of planned stores verify found damaged
        self.views_changed = False  # entries go or change status whatever the workers do

    def scan(self, tasks: Iterable[Task], trust_stat: bool = True) -> dict[str, Result]:
        """Read the earlier manifest once (its index when that is current), noting another
        layout's stores, and return skipped Results for the tasks whose store it records as
        written from this very archive (path, size, mtime, ctime: untouched since) with these
        options, and which still exists: decided from one stat of the archive and a listing of
        the output folder, without opening either. Tasks not answered here go to the workers,
        which check the store itself (resume.py).

        These Results carry no arrays (reading 100,000 entries' arrays cost more than the
        decision): the manifest keeps them, and refs(OUT) lists them."""
        found: dict[str, Result] = {}
        rows = self._read_index()
        self.has_index = rows is not None
        if rows is None:
            try:
                header, entries = iter_manifest(self.out, self.storage_options)
            except (FileNotFoundError, ValueError):
                return found
            self.was_complete = header.get("complete", True) is True
            rows = (index_row(e) for e in entries)
        by_relpath = {t.relpath: t for t in tasks}
        self._planned = set(by_relpath)
        digest, fmt = options_digest(self.options), self.options.format
        remote_out = is_url(self.out)
        in_out = self._listing(self.out) if not remote_out else set()
        remote: list[tuple[Task, str]] = []
        for relpath, archive, stamp, options_id, status, store_format in rows:
            if store_format is not None and store_format != fmt:
                self._other_format = store_format
                if status != "failed":
                    self.other_layout.append(relpath)
                continue
            task = by_relpath.get(relpath)
            if task is None:
                self._note_orphan(relpath, archive, status)
                continue
            if status == DAMAGED:
                self.damaged.add(relpath)
            if (
                not trust_stat
                or options_id != digest
                or status not in SERVING
                or archive != task.archive
                or stamp is None
            ):
                continue
            if remote_out or not archive.startswith(os.sep):  # a URL, archive or store
                remote.append((task, stamp))  # asked of the object store below, many at once
                continue
            if file_stamp(archive) != stamp:
                continue
            # Final paths are renamed in complete: a store that exists is complete.
            if not (relpath in in_out if "/" not in relpath else self._exists_now(task.store)):
                continue
            found[relpath] = Result.of(task, "skipped", pid=0)  # decided here, not by a worker
        for task in self._current_remote(remote):
            found[task.relpath] = Result.of(task, "skipped", pid=0)
        self._from_manifest = {relpath: r.store for relpath, r in found.items()}
        return found

    def _current_remote(self, candidates: list[tuple[Task, str]]) -> list[Task]:
        """The tasks whose archive (a URL) or store (on object storage) is as the manifest
        records. An object archive's size and ETag come from this run's listing of its
        prefix when it made one (else a HEAD each, REMOTE_REQUESTS at a time), and the stores
        from one listing of OUT, or a HEAD of each root document when that is fewer requests
        (stores_exist)."""
        if not candidates:
            return []
        archives_ok = self._many(lambda item: self._stamp_holds(*item), candidates)
        kept = [task for (task, _), ok in zip(candidates, archives_ok, strict=True) if ok]
        stores = [task.store for task in kept]
        if is_url(self.out):
            exist = stores_exist(stores, self.storage_options, self.out)
        else:
            exist = [self._exists_now(store) for store in stores]
        return [task for task, ok in zip(kept, exist, strict=True) if ok]

    @staticmethod
    def _many(check: Any, items: list[Any]) -> list[bool]:
        """check(item) for each item, REMOTE_REQUESTS at a time (each may wait on a request)."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(REMOTE_REQUESTS, len(items))) as pool:
            return list(pool.map(check, items))

    def _stamp_holds(self, task: Task, stamp: str) -> bool:
        """Whether the archive is as the index row's stamp records it: a file's size, mtime and
        ctime; an object's size and ETag (its content's tag: a new upload of other bytes has
        another, and the same bytes uploaded again are the same archive)."""
        archive = task.archive
        if not is_url(archive):
            return file_stamp(archive) == stamp
        from ..core.storage import listed_stamp, source_stat

        now = listed_stamp(archive)
        if now is None:
            try:
                size, _, etag = source_stat(archive, self.storage_options)
            except (OSError, ValueError):
                return False
            now = (size, etag)
        size, _, etag = stamp.split(":", 2)
        return now[1] is not None and (str(now[0]), now[1]) == (size, etag)

    def _note_orphan(self, relpath: str, archive: str | None, status: str | None) -> None:
        """An earlier entry no task of this run has: its archive was deleted, renamed or left
        out of the inputs. Its store, if still there, is an orphan: kept on disk (until
        --prune), out of every view; a failure's entry, or a store gone, is dropped."""
        store = store_locator(self.out)(relpath)
        exists = status != "failed" and self._store_exists(store)
        if exists:
            self.orphans.append(Orphan(relpath, archive or "", store))
        if not exists or status != ORPHAN:
            self.views_changed = True

    def forget_orphans(self) -> list[Orphan]:
        """The orphans, no longer to be listed (the run deleted them: --prune)."""
        gone, self.orphans = self.orphans, []
        if gone:
            self.views_changed = True
        return gone

    def _store_exists(self, store: str) -> bool:
        if is_url(store):
            return store_exists(store, self.storage_options)
        return self._exists_now(store)

    def _read_index(self) -> Iterator[list[Any]] | None:
        """The manifest's rerun index (local manifests), else None: the manifest is then read
        entry by entry."""
        if is_url(self.out):
            return None
        found = read_rerun_index(self.path)
        if found is None:
            return None
        self.was_complete, rows = found
        return rows

    def refuse_other_layout(self, overwrite: bool) -> list[str]:
        """Another format's stores (scan found them): refused without --overwrite
        (ConfigError), else their paths below OUT, for the run to remove."""
        if self._other_format is None:
            return []
        if not overwrite:
            old, fmt = self._other_format, self.options.format
            raise ConfigError(
                "format",
                f"{self.out} holds {len(self.other_layout)} {old} store(s) of an earlier run "
                f"(manifest.json); one folder holds one layout: write {fmt} to another folder, "
                f"or add --overwrite to replace the {old} stores",
                name="",
            )
        return self.other_layout

    def _exists_now(self, store: str) -> bool:
        """Whether a local store's final path exists, from one listing of its folder (cached):
        100,000 stores in one folder are one listing, not 100,000 stat calls."""
        parent, _, name = store.rpartition(os.sep)
        return name in self._listing(parent)

    def _listing(self, folder: str) -> set[str]:
        names = self._listings.get(folder)
        if names is None:
            try:
                names = self._listings[folder] = set(os.listdir(folder))
            except OSError:
                names = self._listings[folder] = set()
        return names

    def _still_true(self, entry: dict[str, Any]) -> bool:
        """An earlier entry this run did not redo is kept if it is a failure or its store
        exists, and if it is of the run's layout."""
        if entry.get("format", self.options.format) != self.options.format:
            return False
        if entry.get("status") == "failed":
            return True
        return self._store_exists(entry.get("store", ""))

    def write(self, results: Iterable[Result], complete: bool = True) -> str:
        """Merge `results` (this run's so far) with the earlier entries and write the manifest
        atomically; `complete=False` marks a run still going or interrupted. Returns its path.
        Both lists are in relpath order, so the merge streams."""
        mine = sorted(results, key=lambda r: r.relpath)
        header = {
            "zconvert_version": __version__,
            "manifest_version": MANIFEST_VERSION,
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "complete": complete,
            "options": recorded_options(self.options),
        }
        try:
            _, earlier = iter_manifest(self.out, self.storage_options)
        except (FileNotFoundError, ValueError):
            earlier = iter(())
        # Stores found current from the manifest keep their earlier entry (with its arrays),
        # marked skipped; every other result of this run replaces its entry.
        as_before = self._from_manifest
        redone = {r.relpath for r in mine if r.relpath not in as_before}
        orphans = {o.relpath: o.store for o in self.orphans}
        planned = self._planned

        def kept_as(e: dict[str, Any]) -> dict[str, Any] | None:
            relpath = e.get("relpath")
            if relpath in as_before:
                return {**e, **_SKIPPED, "store": as_before[relpath]}
            if planned is not None and relpath not in planned:
                # Out of every view: listed as an orphan while its store is on disk.
                if relpath not in orphans:
                    return None
                return {**e, "status": ORPHAN, "store": orphans[relpath]}
            if relpath in redone or not self._still_true(e):
                return None
            return e

        kept = (entry for entry in map(kept_as, earlier) if entry is not None)
        index: list[str] = []
        merged = heapq.merge(
            ((e["relpath"], e) for e in kept),
            ((r.relpath, _entry(r)) for r in mine if r.relpath not in as_before),
            key=lambda item: item[0],
        )
        lines = (entry_line(indexed(entry, index)) for _, entry in merged)
        return write_manifest(self.out, header, lines, index, self.storage_options)


# What a rerun needs of each entry, one short row per store at the end of the manifest:
# reading it is about 20 times cheaper than reading the entries (their arrays and all).


def _entry(result: Result) -> dict[str, Any]:
    entry = result.to_dict()
    if entry.get("traceback") is None:
        entry.pop("traceback", None)
    return entry


# A store found current by RunManifest.scan: this run moved no bytes for it.
_SKIPPED = {
    "status": "skipped",
    "bytes_in": 0,
    "bytes_out": 0,
    "seconds": 0.0,
    "pid": 0,
    "peak_rss": 0,
}


def mark_damaged(
    out: str, problems: dict[str, str], storage_options: dict[str, Any] | None = None
) -> int:
    """Mark the stores `zconvert verify` found damaged (relpath -> its first problem) in OUT's
    manifest, holding a local OUT's lock (object storage has none): the next plain `convert`
    redoes them, and no reader is handed them meanwhile. Returns how many entries it marked."""
    from .outdir import lock_output

    marked = 0
    with lock_output(out):
        header, entries = iter_manifest(out, storage_options)
        index: list[str] = []

        def lines() -> Iterator[str]:
            nonlocal marked
            for entry in entries:
                relpath = entry.get("relpath")
                if relpath in problems and entry.get("status") in (*SERVING, DAMAGED):
                    entry = {**entry, "status": DAMAGED, "error": problems[relpath]}
                    marked += 1
                yield entry_line(indexed(entry, index))

        write_manifest(out, header, lines(), index, storage_options)
    return marked
