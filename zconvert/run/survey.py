"""What OUT holds before a run starts, decided once for `convert` and `plan` alike: the output
checked, the earlier manifest read, the stores it can skip, the orphans (stores whose archive is
no longer among the inputs), the stores verify found damaged, and another layout refused.

`plan` runs exactly these checks, so that it exits as `convert` would; it only writes nothing.
"""

from __future__ import annotations

import os

from ..core.errors import ConfigError
from ..core.records import Result, Task
from ..core.storage import check_output_place, is_url
from .config import RunConfig
from .run_manifest import Orphan, RunManifest
from .task_list import output_path


def output_root(config: RunConfig) -> str:
    """OUT as the run names it (task_list.output_path), checked before any work: a bucket that
    cannot be written, or an existing path that is not a folder, is refused (a run would fail
    on every archive)."""
    out = output_path(config)
    if is_url(out):
        check_output_place(out, config.storage_options)
    elif os.path.lexists(out) and not os.path.isdir(out):
        raise ConfigError(
            "output",
            f"{out} exists and is not a folder; name a folder for the stores (it is created "
            "if missing)",
        )
    else:
        _refuse_unwritable(out)
    return out


def _refuse_unwritable(out: str) -> None:
    """A folder this process cannot write in (or create) is refused before any work, by
    `plan` as by `convert`: every store, the lock and the manifest would fail."""
    folder = out
    while not os.path.lexists(folder):  # the nearest existing parent is where it is made
        parent = os.path.dirname(folder)
        if parent == folder:
            return
        folder = parent
    if not os.access(folder, os.W_OK | os.X_OK):
        what = "cannot write in it:" if folder == out else f"cannot create it in {folder}:"
        raise ConfigError(
            "output",
            f"{out}: {what} permission denied; choose a folder you can write, or fix its "
            "permissions",
        )


class Survey:
    """The earlier state of OUT, as the run about to start sees it."""

    def __init__(self, out: str, manifest: RunManifest, current: dict[str, Result]) -> None:
        self.out = out
        self.manifest = manifest
        self.current = current  # relpath -> skipped Result, decided from the manifest alone
        self.old_layout: list[str] = []  # another format's stores, to replace (--overwrite)
        self.orphans: list[Orphan] = list(manifest.orphans)
        self.damaged: set[str] = set(manifest.damaged)  # relpaths verify found damaged: redo

    @property
    def unchanged(self) -> bool:
        """Whether the earlier manifest stays true as it is when no store needs work."""
        m = self.manifest
        return not self.old_layout and m.was_complete and m.has_index and not m.views_changed


def survey(config: RunConfig, tasks: list[Task], out: str) -> Survey:
    """Read OUT's manifest once against the planned tasks; raises ConfigError for a folder of
    another layout without --overwrite."""
    manifest = RunManifest(out, config.options, config.storage_options)
    found = Survey(out, manifest, manifest.scan(tasks, trust_stat=not config.overwrite))
    found.old_layout = manifest.refuse_other_layout(config.overwrite)
    return found
