"""Discover archives and turn a RunConfig into Task records: pure, no writing."""

from __future__ import annotations

import os
from pathlib import Path

from .config import RunConfig
from .errors import ConfigError
from .records import Task
from .sinks import SUFFIXES


def discover(inputs: tuple[str, ...]) -> list[tuple[Path, Path]]:
    """(archive, root) pairs: named files as given, folders searched recursively for *.zip."""
    found: list[tuple[Path, Path]] = []
    for raw in inputs:
        path = Path(raw).expanduser().absolute()
        if path.is_dir():
            archives = sorted(
                p for p in path.rglob("*") if p.suffix.lower() == ".zip" and p.is_file()
            )
            found.extend((p, path) for p in archives)
        elif path.is_file():
            found.append((path, path.parent))
        else:
            raise ConfigError("inputs", f"{raw} does not exist")
    return found


def store_relpath(archive: Path, root: Path, fmt: str) -> str:
    """OUT-relative store path: the archive's path below its input root, .zip replaced."""
    rel = archive.relative_to(root)
    stem = rel.with_suffix("") if rel.suffix.lower() == ".zip" else rel
    return stem.as_posix() + SUFFIXES[fmt]


def plan_tasks(config: RunConfig) -> list[Task]:
    """One Task per archive, in a stable order; two archives aiming at one store are refused."""
    out = Path(config.output).expanduser().absolute()
    tasks: list[Task] = []
    claimed: dict[str, Path] = {}
    seen: set[Path] = set()
    for archive, root in discover(config.inputs):
        if archive in seen:
            continue
        seen.add(archive)
        rel = store_relpath(archive, root, config.options.format)
        if rel in claimed:
            raise ConfigError(
                "inputs",
                f"{claimed[rel]} and {archive} would both be written to {rel}; "
                "give their parent folder as the input instead",
            )
        claimed[rel] = archive
        tasks.append(
            Task(
                archive=os.fspath(archive),
                store=os.fspath(out / rel),
                relpath=rel,
                options=config.options,
            )
        )
    return tasks
