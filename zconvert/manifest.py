"""Result records <-> OUT/manifest.json, written atomically (temporary, fsync, rename)."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterable
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


def manifest_text(document: dict[str, Any]) -> str:
    """The manifest as JSON: its header indented, then one line per store. json's C encoder
    runs only without indentation; indenting 100,000 stores took 3 s, one line each 0.3 s."""
    stores = document.get("stores", [])
    head = json.dumps({k: v for k, v in document.items() if k != "stores"}, indent=1)
    lines = ",\n".join(json.dumps(e, ensure_ascii=False, separators=(",", ":")) for e in stores)
    return f'{head[:-2]},\n "stores": [\n{lines}\n ]\n}}\n'


def write_json_atomic(path: str, document: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never a partial one."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".manifest.", suffix=".tmp", dir=directory)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a manifest is for every reader
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(manifest_text(document))
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


def read_results(
    out: str | os.PathLike[str], storage_options: dict[str, Any] | None = None
) -> list[Result]:
    """The manifest's stores of the run's layout (its options' format) as Result records, in
    manifest order. Folders written before one folder held one layout may list stores of
    another format too; readers follow the last run's."""
    document = read_manifest(out, storage_options)
    layout = (document.get("options") or {}).get("format")
    return [
        Result.from_dict(d)
        for d in document.get("stores", [])
        if layout is None or d.get("format", layout) == layout
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
    """OUT/manifest.json as one run goes: the earlier manifest read once, this run's results
    merged in, and the whole written atomically now and then (an interrupted run leaves an
    inspectable folder) and at the end.

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
        try:
            document = read_manifest(out, storage_options)
            stores = document.get("stores", [])
            self.earlier = {e["relpath"]: e for e in stores if isinstance(e, dict)}
            self.was_complete = document.get("complete", True) is True
        except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError):
            self.earlier = {}
        self._exists: dict[str, bool] = {}  # earlier stores found (or not) on disk
        self._as_entry: dict[int, tuple[Result, dict[str, Any]]] = {}

    def other_layout(self, overwrite: bool) -> list[str]:
        """Stores of another format than this run's: refused without --overwrite (ConfigError),
        else their paths below OUT, for the run to remove."""
        fmt = self.options.format
        entries = [e for e in self.earlier.values() if e.get("format", fmt) != fmt]
        if not entries:
            return []
        old = entries[0].get("format")
        if not overwrite:
            raise ConfigError(
                "format",
                f"{self.out} holds {len(entries)} {old} store(s) of an earlier run (manifest.json);"
                f" one folder holds one layout: write {fmt} to another folder, or add "
                f"--overwrite to replace the {old} stores",
                name="",
            )
        for e in entries:
            del self.earlier[e["relpath"]]
        return [e["relpath"] for e in entries if e.get("status") != "failed"]

    def current(self, tasks: Iterable[Task]) -> dict[str, Result]:
        """Skipped Results for the tasks whose store the manifest records as written from this
        very archive (path, size, mtime, ctime: untouched since) with these options, and which
        still exists: decided from one stat of the archive and one of the store, without
        opening either. Tasks not
        answered here go to the workers, which check the store itself (resume.py)."""
        digest = options_digest(self.options)
        found: dict[str, Result] = {}
        for task in tasks:
            entry = self.earlier.get(task.relpath)
            if (
                entry is None
                or entry.get("source_ctime_ns") is None
                or entry.get("options_id") != digest
                or entry.get("status") not in ("converted", "skipped")
                or entry.get("archive") != task.archive
                or is_url(task.archive)
                or is_url(task.store)
            ):
                continue
            try:
                stat = os.stat(task.archive)
            except OSError:
                continue
            recorded = (
                entry.get("source_size"),
                entry["source_mtime_ns"],
                entry["source_ctime_ns"],
            )
            if recorded != (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns) or not (
                os.path.exists(task.store)  # final paths are renamed in complete
            ):
                continue
            entry.update(_SKIPPED, store=task.store)  # OUT may have moved since
            found[task.relpath] = result = Result.from_dict(entry)
            self._as_entry[id(result)] = (result, entry)
        return found

    def _earlier_kept(self, replaced: set[str]) -> dict[str, dict[str, Any]]:
        """Earlier entries still true, but for those `replaced` by this run's results:
        failures, and stores whose files exist (each asked once)."""
        kept = {}
        for relpath, entry in self.earlier.items():
            if relpath in replaced or entry.get("format", self.options.format) != (
                self.options.format
            ):
                continue
            exists = self._exists.get(relpath)
            if exists is None:
                exists = entry.get("status") == "failed" or _store_exists(
                    entry.get("store", ""), self.storage_options
                )
                self._exists[relpath] = exists
            if exists:
                kept[relpath] = entry
        return kept

    def write(self, results: Iterable[Result], complete: bool = True) -> str:
        """Merge `results` (this run's so far) with the earlier entries and write the manifest
        atomically; `complete=False` marks a run still going or interrupted. Returns its path."""
        results = list(results)
        merged = self._earlier_kept({r.relpath for r in results})
        for result in results:
            known = self._as_entry.get(id(result))
            if known is not None and known[0] is result:
                merged[result.relpath] = known[1]  # skipped by current(): its entry as read
                continue
            entry = result.to_dict()
            if entry.get("traceback") is None:
                entry.pop("traceback", None)
            merged[result.relpath] = entry
        document = {
            "zconvert_version": __version__,
            "manifest_version": MANIFEST_VERSION,
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "complete": complete,
            "options": recorded_options(self.options),
            "stores": [merged[k] for k in sorted(merged)],
        }
        path = self.path
        if is_url(path):
            from .storage import write_bytes

            # Object stores have no rename, but a single PUT is atomic: readers see the old
            # manifest or the new one.
            text = manifest_text(document)
            write_bytes(path, text.encode("utf-8"), self.storage_options)
        else:
            write_json_atomic(path, document)
        return path


# A store found current by RunManifest.current: this run moved no bytes for it.
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
