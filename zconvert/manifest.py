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
from .records import ConvertOptions, Result
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
    """The manifest's stores as Result records, in manifest order."""
    return [Result.from_dict(d) for d in read_manifest(out, storage_options).get("stores", [])]


def _store_exists(store: str, storage_options: dict[str, Any] | None) -> bool:
    if is_url(store):
        from .storage import exists

        return exists(store, storage_options)
    return os.path.exists(store)


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
        "options": asdict(options),
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
