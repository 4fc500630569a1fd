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
from .records import ConvertOptions, Result, run_chunk_rows
from .storage import is_url, join

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


def manifest_path(out: str | os.PathLike[str]) -> str:
    if is_url(out):
        return join(out, MANIFEST_NAME)
    return os.path.join(os.fspath(out), MANIFEST_NAME)


def write_json_atomic(path: str, document: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never a partial one."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".manifest.", suffix=".tmp", dir=directory)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a manifest is for every reader
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=1, ensure_ascii=False)
            f.write("\n")
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


def check_one_layout(
    out: str,
    options: ConvertOptions,
    overwrite: bool,
    storage_options: dict[str, Any] | None = None,
) -> list[str]:
    """One output folder holds one layout: a run of another format than the folder's manifest
    is refused, unless it overwrites, when the old format's stores (paths below OUT) are
    returned for removal."""
    try:
        document = read_manifest(out, storage_options)
    except (FileNotFoundError, ValueError):
        return []
    entries = [e for e in document.get("stores", []) if e.get("format") != options.format]
    if not entries:
        return []
    old = entries[0].get("format")
    if not overwrite:
        raise ConfigError(
            "format",
            f"{out} holds {len(entries)} {old} store(s) of an earlier run (manifest.json); one "
            f"folder holds one layout: write {options.format} to another folder, or add "
            f"--overwrite to replace the {old} stores",
            name="",
        )
    return [e["relpath"] for e in entries if e.get("relpath") and e.get("status") != "failed"]


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


def write_manifest(
    out: str | os.PathLike[str],
    results: Iterable[Result],
    options: ConvertOptions,
    storage_options: dict[str, Any] | None = None,
) -> str:
    """Merge this run's results into OUT/manifest.json (earlier stores whose files still exist are
    kept) and write it atomically; returns its path."""
    path = manifest_path(out)
    results = list(results)
    redone = {r.relpath for r in results}
    merged: dict[str, dict[str, Any]] = {}
    try:
        for entry in read_manifest(out, storage_options).get("stores", []):
            if entry.get("relpath") in redone:
                continue  # replaced below; no need to ask (object) storage whether it exists
            if entry.get("format", options.format) != options.format:
                continue  # another layout's store: replaced by this run (check_one_layout)
            if entry.get("status") == "failed" or _store_exists(
                entry.get("store", ""), storage_options
            ):
                merged[entry["relpath"]] = entry
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        pass
    for result in results:
        entry = result.to_dict()
        if entry.get("traceback") is None:
            entry.pop("traceback", None)
        merged[result.relpath] = entry
    document = {
        "zconvert_version": __version__,
        "manifest_version": MANIFEST_VERSION,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "options": recorded_options(options),
        "stores": [merged[k] for k in sorted(merged)],
    }
    if is_url(path):
        from .storage import write_bytes

        # Object stores have no rename, but a single PUT is atomic: readers see the old
        # manifest or the new one. It is written after every store is complete.
        text = json.dumps(document, indent=1, ensure_ascii=False) + "\n"
        write_bytes(path, text.encode("utf-8"), storage_options)
    else:
        write_json_atomic(path, document)
    return path
