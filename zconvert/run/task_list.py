"""Discover archives and turn a RunConfig into Task records: pure, no writing."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..core.errors import ConfigError
from ..core.records import Task
from ..core.storage import ARCHIVE_SUFFIXES, is_url, join, search_order, searched_archive
from ..sinks import SUFFIXES
from ..stores.folder import COMBINED_NAME, is_leftover
from ..stores.manifest import MANIFEST_NAME
from .config import RunConfig


def discover(inputs: tuple[str, ...]) -> list[tuple[str, str]]:
    """(archive, its '/'-separated path below its input) pairs: named files as given (any
    name), folders searched recursively for ARCHIVE_SUFFIXES, symlinked folders too (once
    each), in sorted order per input; a folder that cannot be searched is refused, never
    skipped. os.walk tells files from folders without a stat per file (one per folder):
    100,000 archives are listed in about 0.1 s."""
    found: list[tuple[str, str]] = []
    for raw in inputs:
        path = os.path.abspath(os.path.expanduser(raw))
        if os.path.isdir(path):
            archives = []
            unreadable: list[OSError] = []
            seen: set[tuple[int, int]] = set()  # folders searched, by identity: links loop
            for parent, dirs, files in os.walk(path, onerror=unreadable.append, followlinks=True):
                if not _first_visit(parent, seen):
                    dirs[:] = []
                    continue
                dirs[:] = [d for d in dirs if d != "__MACOSX"]  # searched_archive's rule, early
                below = os.path.relpath(parent, path).replace(os.sep, "/")
                prefix = "" if below == "." else below + "/"
                folder = parent if parent.endswith(os.sep) else parent + os.sep
                archives.extend(
                    (prefix + name, folder + name)
                    for name in files
                    if searched_archive(prefix + name)
                )
            if unreadable:  # never a silent gap: its archives would be left out
                exc = unreadable[0]
                more = f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1 else ""
                raise ConfigError(
                    "inputs",
                    f"{exc.filename}: cannot be searched ({exc.strerror}){more}; its archives "
                    "would be left out: fix its permissions, or name the folders to convert",
                )
            archives.sort(key=lambda item: search_order(item[0]))
            found.extend((archive, rel) for rel, archive in archives)
        elif os.path.isfile(path):
            found.append((path, os.path.basename(path)))
        else:
            raise ConfigError("inputs", f"{raw} does not exist")
    return found


def _first_visit(folder: str, seen: set[tuple[int, int]]) -> bool:
    """Whether a folder is searched for the first time: a symlinked folder is searched (its
    archives are the user's as much as any), once, and a link back up is no loop."""
    try:
        st = os.stat(folder)
    except OSError:
        return False
    key = (st.st_dev, st.st_ino)
    if key in seen:
        return False
    seen.add(key)
    return True


def discover_any(
    inputs: tuple[str, ...], storage_options: dict[str, Any] | None = None
) -> list[tuple[str, str]]:
    """(archive, its '/'-separated path below its input root) for local paths and URLs alike.
    Searches skip macOS metadata: AppleDouble twins a Mac leaves on other volumes (`._a.zip`
    beside `a.zip`, 4 KiB of extended attributes) and unpacked `__MACOSX/` trees."""
    found: list[tuple[str, str]] = []
    for raw in inputs:
        if is_url(raw):
            from ..core.storage import discover as discover_url

            found.extend(discover_url(raw, storage_options))
        else:
            found.extend(discover((raw,)))
    return found


def archive_size(path: str) -> int | None:
    """A local archive's size in bytes; None for a URL or a path that cannot be read."""
    if is_url(path):
        return None
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def _relpath(below_root: str, fmt: str) -> str:
    """The store's path: the archive's without its suffix ('a.zip', 'a.npz', 'a.jar' -> 'a.zarr')."""
    if below_root[-4:].lower() in ARCHIVE_SUFFIXES and below_root[-5:-4] not in ("", "/"):
        return below_root[:-4] + SUFFIXES[fmt]  # what folders are searched for: a quick cut
    return os.path.splitext(below_root)[0] + SUFFIXES[fmt]


def output_path(config: RunConfig) -> str:
    """OUT as the run names it: an absolute folder, or a URL prefix without its last '/'."""
    if is_url(config.output):
        return config.output.rstrip("/")  # object stores have no folders to create
    return os.path.abspath(os.path.expanduser(config.output))


def store_locator(out: str) -> Callable[[str], str]:
    """Where each store below OUT is: relpath ('/'-separated) -> a path, or a URL. Whether
    OUT is a URL is decided once: a run names 100,000 stores and more."""
    if is_url(out):
        return lambda relpath: join(out, relpath)
    if os.sep == "/":
        prefix = out + "/"
        return lambda relpath: prefix + relpath
    return lambda relpath: os.path.join(out, *relpath.split("/"))


def _refuse_reserved(archive: str, rel: str, fmt: str) -> None:
    """A store never takes a name zconvert keeps for itself: the combined view of an HDF5 run
    (OUT/all.h5, which would overwrite it), the manifest (a references run's
    OUT/manifest.json) or a temporary's (which a rerun removes)."""
    if fmt == "hdf5" and rel == COMBINED_NAME:
        why = f"{COMBINED_NAME}, the name of an HDF5 run's combined view of every array"
    elif rel == MANIFEST_NAME:
        why = f"{MANIFEST_NAME}, the name of the run's manifest"
    elif any(is_leftover(part) for part in rel.split("/")):
        why = f"{rel}, a name zconvert gives its temporaries (a rerun removes them)"
    else:
        return
    raise ConfigError("inputs", f"{archive} would be stored as {why}; rename the archive")


def task_list(config: RunConfig) -> list[Task]:
    """One Task per archive, in a stable order; two archives aiming at one store are refused."""
    store_at = store_locator(output_path(config))
    storage_options = config.storage_options
    tasks: list[Task] = []
    claimed: dict[str, str] = {}
    seen: set[str] = set()
    for archive, below_root in discover_any(config.inputs, storage_options):
        if archive in seen:
            continue
        seen.add(archive)
        rel = _relpath(below_root, config.options.format)
        if rel in claimed:
            same_name = _relpath(str(claimed[rel]), "zarr") == _relpath(str(archive), "zarr")
            fix = (
                "rename one of them (a store is named after its archive without the suffix)"
                if same_name
                else "give their parent folder as the input instead"
            )
            raise ConfigError(
                "inputs", f"{claimed[rel]} and {archive} would both be written to {rel}; {fix}"
            )
        _refuse_reserved(archive, rel, config.options.format)
        claimed[rel] = archive
        tasks.append(
            Task(
                archive=archive,
                store=store_at(rel),
                relpath=rel,
                options=config.options,
                storage_options=storage_options,
            )
        )
    if not tasks:
        suffixes = ", ".join(f"*{s}" for s in ARCHIVE_SUFFIXES)
        raise ConfigError(
            "inputs",
            f"no archives ({suffixes}) found in {', '.join(config.inputs)} (searched "
            "recursively); name archives with other suffixes explicitly",
            name="",
        )
    if config.options.format == "icechunk":
        from .icechunk_run import refuse_clashes

        refuse_clashes([t.relpath for t in tasks])
    return tasks
