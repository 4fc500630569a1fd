"""OUT as an Icechunk repository (--format icechunk): a view of the run's reference files.

An icechunk run is a references run (a kerchunk file per archive, with the same manifest,
resume, verify and prune), plus, at its end, one commit to the Icechunk repository at OUT
that makes it hold exactly one group per current reference file: the archive's store name
without `.json` (nested where its input folder is). A group's chunks are virtual: the archive's
location, offset and length, with the archive's last-modified time as checksum, so Icechunk
refuses to read an archive changed after the run rather than return other bytes.

Like all.h5 for an HDF5 run, the repository is derived, never a second truth: a group is
written from its reference file, and a group whose archive failed, was pruned or is no longer
an input is removed. The commit names what changed; a rerun that changes nothing commits
nothing (icechunk_repo.write_repository compares each group with what it was written from).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from .._version import __version__
from ..core.errors import ConfigError, StoreError
from ..core.records import Result
from ..core.storage import archive_location, archive_stat, is_url, read_bytes

_NAMED = 10  # archives a commit message names before "and N more"
# What Icechunk keeps at a repository's root: a run's stores must not take these names.
REPOSITORY_NAMES = ("config.yaml", "refs", "snapshots", "manifests", "transactions", "chunks")


def group_name(relpath: str) -> str:
    """An archive's group: its store's path in OUT without `.json`."""
    return relpath[: -len(".json")] if relpath.endswith(".json") else relpath


def refuse_clashes(relpaths: Sequence[str]) -> None:
    """An archive's group cannot also be the folder of another's (a.zip beside a/b.zip), and
    no store may take a name the repository keeps at OUT (refs/, snapshots/, ...)."""
    for relpath in relpaths:
        top = relpath.split("/", 1)[0]
        if top in REPOSITORY_NAMES:
            raise ConfigError(
                "inputs",
                f"{relpath}: {top!r} is where the Icechunk repository at OUT keeps its own "
                "files; rename the folder or archive, or use --format references",
            )
    names = {group_name(r) for r in relpaths}
    for name in sorted(names):
        parent = name
        while "/" in parent:
            parent = parent.rpartition("/")[0]
            if parent in names:
                raise ConfigError(
                    "inputs",
                    f"the Icechunk group {parent!r} would be both an archive and the folder of "
                    f"{name!r}; rename one of them or use --format references",
                )


def update_repository(
    out: str, results: Sequence[Result], storage_options: Mapping[str, Any] | None = None
) -> str | None:
    """Commit OUT's repository to hold the groups of `results` that have a store (converted
    or current) and no other; the snapshot id, or None when nothing changed. Derived anew each
    run from the reference files, never from what the last run meant to commit: a run that
    died before its commit, or whose commit failed, is made good by the next (a group whose
    document and archive time are unchanged is left alone, and no change is no commit)."""
    from . import icechunk_repo  # icechunk itself: checked installed before the run

    kept = [r for r in results if r.status in ("converted", "skipped")]
    documents = {group_name(r.relpath): _document(r.store, storage_options) for r in kept}
    modified = {archive_location(r.archive): _modified(r, storage_options) for r in kept}
    exists = icechunk_repo.is_repository(out, storage_options)
    present = icechunk_repo.group_names(out, storage_options) if exists else []
    removed = sorted(set(present) - documents.keys())
    converted = sorted(group_name(r.relpath) for r in kept if r.status == "converted")
    message = commit_message(converted, removed)
    try:
        return icechunk_repo.write_repository(
            out, documents, removed, message, modified, storage_options
        )
    except Exception as exc:
        raise StoreError(
            f"{out}: the Icechunk repository could not be committed ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())}); the reference files and manifest are written: run "
            "the same command again to commit"
        ) from exc


def _modified(result: Result, storage_options: Mapping[str, Any] | None) -> datetime:
    """The archive's last-modified time: as the worker saw it, or (a store the manifest found
    current, whose Result carries no stat) as it is now, which is the same."""
    mtime_ns = result.source_mtime_ns
    if mtime_ns is None:
        mtime_ns = archive_stat(result.archive, storage_options).mtime_ns
    return datetime.fromtimestamp(mtime_ns / 1e9, UTC)


def _document(store: str, storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    if is_url(store):
        return json.loads(read_bytes(store, storage_options))
    with open(store, "rb") as f:
        return json.load(f)


def commit_message(converted: Sequence[str], removed: Sequence[str]) -> str:
    """What a commit did, naming the archives: 'zconvert 0.1.0: 2 converted (a, b); 1
    removed (c)'."""
    parts = []
    for verb, names in (("converted", converted), ("removed", removed)):
        if names:
            shown = ", ".join(names[:_NAMED])
            more = f" and {len(names) - _NAMED} more" if len(names) > _NAMED else ""
            parts.append(f"{len(names)} {verb} ({shown}{more})")
    return f"zconvert {__version__}: " + ("; ".join(parts) or "groups rewritten")
