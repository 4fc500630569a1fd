"""Result records <-> OUT/manifest.json, written atomically (temporary, fsync, rename)."""

from __future__ import annotations

import heapq
import itertools
import json
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from typing import Any

from ._version import __version__
from .errors import ConfigError
from .fingerprint import options_digest
from .records import ConvertOptions, Result, Task, run_chunk_rows
from .storage import is_url, join

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


def manifest_path(out: str | os.PathLike[str]) -> str:
    if is_url(out):
        return join(out, MANIFEST_NAME)
    return os.path.join(os.fspath(out), MANIFEST_NAME)


def _header_text(document: dict[str, Any]) -> str:
    """The manifest's opening: its header keys indented, up to the `stores` list."""
    head = json.dumps(document, indent=1, ensure_ascii=False)
    return f"{head[:-2]},\n{_STORES_LINE}"


def entry_line(entry: dict[str, Any]) -> str:
    """One store's entry as one line: json's C encoder runs only without indentation
    (indenting 100,000 stores took 3 s, one line each 0.3 s), and a rerun reads the manifest
    one line at a time."""
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))


INDEX_KEY = "rerun_index"  # before the stores: one short row per store, for reruns
_INDEX_LINE = f' "{INDEX_KEY}": '
_STORES_LINE = ' "stores": [\n'


def _write_atomic(path: str, pieces: Iterable[str]) -> None:
    """Write text so that readers see the old file or the new one, never a partial one."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".manifest.", suffix=".tmp", dir=directory)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a manifest is for every reader
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(pieces)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_manifest(
    out: str | os.PathLike[str], storage_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The manifest document of a run folder or URL; FileNotFoundError if there is none."""
    if is_url(out):
        from .storage import read_bytes

        return json.loads(read_bytes(manifest_path(out), storage_options))
    with open(manifest_path(out), encoding="utf-8") as f:
        return json.load(f)


def iter_manifest(
    out: str | os.PathLike[str], storage_options: dict[str, Any] | None = None
) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
    """(header, entries): the manifest's keys but `stores`, and its store entries one at a
    time, for a manifest of any size in little memory (this version writes one entry a line;
    an older, indented manifest is read whole). FileNotFoundError if there is none."""
    path = manifest_path(out)
    if is_url(out):
        from .storage import read_bytes

        lines: Iterable[str] = read_bytes(path, storage_options).decode("utf-8").splitlines()
        return _split(iter(lines), path)
    f = open(path, encoding="utf-8")  # noqa: SIM115 - closed by the entries' generator
    try:
        return _split(f, path)
    except BaseException:
        f.close()
        raise


def _split(lines: Iterator[str], path: str) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
    """Header and entries of a manifest: streamed when its entries are one a line (column 0),
    else (an older, indented manifest) parsed whole."""
    head: list[str] = []
    for line in lines:
        if line.startswith(_INDEX_LINE) and line.rstrip().endswith("["):
            for row in lines:  # the index is a rerun's, not a reader's
                if row.startswith(_INDEX_CLOSING):
                    break
            continue
        if line.startswith(' "stores": [') and line.rstrip().endswith("["):
            first = next(lines, "")
            if first.startswith(("{", "\n", " ]")) or not first:
                header = json.loads("".join(head).rstrip().rstrip(",") + "}")
                return header, _entries(itertools.chain([first], lines))
            head.extend([line, first])
            continue
        head.append(line)
    _close(lines)
    document = json.loads("".join(head))
    if not isinstance(document, dict):
        raise ValueError(f"{path}: not a manifest")
    stores = document.pop("stores", [])
    return document, iter(stores)


def _entries(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    try:
        for line in lines:
            if line.startswith("{"):
                yield json.loads(line.rstrip().rstrip(","))
    finally:
        _close(lines)


def _close(lines: Iterator[str]) -> None:
    close = getattr(lines, "close", None)
    if close is not None:
        close()


def read_results(
    out: str | os.PathLike[str], storage_options: dict[str, Any] | None = None
) -> list[Result]:
    """The manifest's stores of the run's layout (its options' format) as Result records, in
    manifest order. Folders written before one folder held one layout may list stores of
    another format too; readers follow the last run's."""
    header, entries = iter_manifest(out, storage_options)  # one entry in memory at a time
    layout = (header.get("options") or {}).get("format")
    return [
        Result.from_dict(d) for d in entries if layout is None or d.get("format", layout) == layout
    ]


def _store_exists(store: str, storage_options: dict[str, Any] | None) -> bool:
    if is_url(store):
        from .storage import exists

        return exists(store, storage_options)
    return os.path.exists(store)


def recorded_options(options: ConvertOptions) -> dict[str, Any]:
    """The run's options as they took effect: defaults resolved (chunk_rows for the run's
    dtype and shape; the decompression-bomb limit and the member size it starts at), so that
    a manifest says what was done, not what was left unsaid."""
    from .members import DEFAULT_MAX_RATIO, RATIO_CHECK_MIN_BYTES

    document = asdict(options)
    document["chunk_rows"] = run_chunk_rows(options)
    if options.max_ratio is None:
        document["max_ratio"] = DEFAULT_MAX_RATIO
        document["max_ratio_from_bytes"] = RATIO_CHECK_MIN_BYTES
    return document


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
            rows = (_index_row(e) for e in entries)
        by_relpath = {t.relpath: t for t in tasks}
        digest, fmt = options_digest(self.options), self.options.format
        in_out = self._listing(self.out) if not is_url(self.out) else set()
        for relpath, archive, stamp, options_id, status, store_format in rows:
            if store_format is not None and store_format != fmt:
                self._other_format = store_format
                if status != "failed":
                    self.other_layout.append(relpath)
                continue
            task = by_relpath.get(relpath)
            if (
                not trust_stat
                or task is None
                or options_id != digest
                or status not in ("converted", "skipped")
                or archive != task.archive
                or not archive.startswith(os.sep)  # a URL: no stat to trust
                or stamp is None
            ):
                continue
            try:
                stat = os.stat(archive)
            except OSError:
                continue
            if f"{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}" != stamp:
                continue
            # Final paths are renamed in complete: a store that exists is complete.
            if not (relpath in in_out if "/" not in relpath else self._exists_now(task.store)):
                continue
            found[relpath] = Result(archive, task.store, relpath, "skipped", fmt)
        self._from_manifest = {relpath: r.store for relpath, r in found.items()}
        return found

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
        store = entry.get("store", "")
        if is_url(store):
            return _store_exists(store, self.storage_options)
        return self._exists_now(store)

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
        kept = (
            {**e, **_SKIPPED, "store": as_before[e["relpath"]]}
            if e.get("relpath") in as_before
            else e
            for e in earlier
            if e.get("relpath") not in redone and self._still_true(e)
        )
        index: list[str] = []
        merged = heapq.merge(
            ((e["relpath"], e) for e in kept),
            ((r.relpath, _entry(r)) for r in mine if r.relpath not in as_before),
            key=lambda item: item[0],
        )
        lines = (entry_line(_indexed(entry, index)) for _, entry in merged)
        local = not is_url(self.path)
        with tempfile.TemporaryFile(
            "w+", encoding="utf-8", dir=self.out if local else None
        ) as spool:
            pieces = _manifest_pieces(header, lines, index, spool)
            if local:
                _write_atomic(self.path, pieces)
            else:
                from .storage import write_bytes

                # Object stores have no rename, but a single PUT is atomic: readers see the
                # old manifest or the new one.
                write_bytes(self.path, "".join(pieces).encode("utf-8"), self.storage_options)
        return self.path


# What a rerun needs of each entry, one short row per store at the end of the manifest:
# reading it is about 20 times cheaper than reading the entries (their arrays and all).
INDEX_COLUMNS = ["relpath", "archive", "size:mtime_ns:ctime_ns", "options_id", "status", "format"]
_INDEX_OPENING = f'{{"columns": {json.dumps(INDEX_COLUMNS)}, "rows": ['
_INDEX_CLOSING = " ]},"
INDEX_ROWS_PER_LINE = 1000


def _index_row(entry: dict[str, Any]) -> list[Any]:
    """[relpath, archive, "size:mtime:ctime" or None, options digest, status, format]."""
    stamp = [entry.get("source_size"), entry.get("source_mtime_ns"), entry.get("source_ctime_ns")]
    return [
        entry.get("relpath", ""),
        entry.get("archive"),
        None if None in stamp else ":".join(map(str, stamp)),
        entry.get("options_id"),
        entry.get("status"),
        entry.get("format"),
    ]


def _indexed(entry: dict[str, Any], index: list[str]) -> dict[str, Any]:
    index.append(json.dumps(_index_row(entry), ensure_ascii=False, separators=(",", ":")))
    return entry


def _entry(result: Result) -> dict[str, Any]:
    entry = result.to_dict()
    if entry.get("traceback") is None:
        entry.pop("traceback", None)
    return entry


def _manifest_pieces(
    header: dict[str, Any], lines: Iterator[str], index: list[str], spool: Any
) -> Iterator[str]:
    """The document: header, the rerun index (one row a line), then one line per store. The
    store lines fill in the index rows as they are made, so they are spooled to a temporary
    file first: a rerun reads the index and stops before the stores."""
    for i, line in enumerate(lines):
        spool.write(f",\n{line}" if i else line)
    spool.seek(0)
    yield _header_text(header)[: -len(_STORES_LINE)]
    yield f"{_INDEX_LINE}{_INDEX_OPENING}\n"
    # INDEX_ROWS_PER_LINE rows a line: one json call reads many, and memory stays bounded
    step = INDEX_ROWS_PER_LINE
    yield ",\n".join(",".join(index[i : i + step]) for i in range(0, len(index), step))
    yield f"\n{_INDEX_CLOSING}\n{_STORES_LINE}"
    yield from iter(lambda: spool.read(1 << 20), "")
    yield "\n ]\n}\n"


def read_rerun_index(path: str) -> tuple[bool, Iterator[list[Any]]] | None:
    """(complete, rows) of a local manifest's rerun index, its rows read a batch at a time,
    the store lines after them never read; None for a manifest without one (an older
    version's) or that is not ours."""
    complete = True
    try:
        f = open(path, encoding="utf-8")  # noqa: SIM115 - closed by _rows
    except OSError:
        return None
    for line in f:
        if line.startswith(' "complete": '):
            complete = line.strip().rstrip(",").endswith("true")
        elif line.startswith(_INDEX_LINE):
            if line[len(_INDEX_LINE) :].strip() != _INDEX_OPENING:
                break
            return complete, _rows(f)
        elif line.startswith(_STORES_LINE):
            break
    f.close()
    return None


def _rows(f: Any) -> Iterator[list[Any]]:
    """Index rows up to the index's end, a line (many rows) at a time."""
    with f:
        for line in f:
            if not line.startswith("["):
                break  # the index's closing line
            yield from json.loads(f"[{line.rstrip().rstrip(',')}]")


# A store found current by RunManifest.scan: this run moved no bytes for it.
_SKIPPED = {
    "status": "skipped",
    "bytes_in": 0,
    "bytes_out": 0,
    "seconds": 0.0,
    "pid": 0,
    "peak_rss": 0,
}


def write_manifest(
    out: str | os.PathLike[str],
    results: Iterable[Result],
    options: ConvertOptions,
    storage_options: dict[str, Any] | None = None,
) -> str:
    """Merge a run's results into OUT/manifest.json and write it atomically; returns its path."""
    return RunManifest(out, options, storage_options).write(results)
