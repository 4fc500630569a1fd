"""`zconvert plan` and `convert --dry-run`: what a run would do, and why, writing nothing.

Each archive's central directory and its members' first bytes (.npy headers) are read and put
through the same checks a worker makes before inflating: names, encryption, method, size and ratio limits, and whether
the declared size fits --dtype and --shape. No folder, store or manifest is created.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from ..core.errors import ArchiveError
from ..core.records import SkippedMember, Task
from ..zipread.member_layout import checked_members
from ..zipread.members import open_archive
from .config import RunConfig
from .outdir import refuse_if_locked
from .survey import output_root, survey
from .task_list import task_list


@dataclass(frozen=True)
class PlannedTask:
    """One archive's fate in a dry run: convert, skip or refuse, with the reason."""

    archive: str
    store: str
    relpath: str
    action: str  # "convert" | "skip" | "refuse"
    reason: str | None = None
    member: str | None = None
    members: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    skipped_members: tuple[SkippedMember, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _redo_reason(task: Task) -> str | None:
    """Why this task's store must be (re)built ("store missing", "options changed: codec",
    "archive modified (...)"), or None when it is complete and up to date."""
    from .resume import store_is_current

    return store_is_current(task)


def preflight(task: Task) -> PlannedTask:
    """Read the archive's central directory and each member's first bytes (a .npy header),
    and apply every pre-inflate check."""
    base = {"archive": task.archive, "store": task.store, "relpath": task.relpath}
    try:
        fileobj, zf = open_archive(task.archive, storage_options=task.storage_options)
        with fileobj, zf:
            members, skipped, _ = checked_members(task.archive, fileobj, zf, task.options)
    except ArchiveError as exc:
        return PlannedTask(**base, action="refuse", reason=exc.reason, member=exc.member)
    return PlannedTask(
        **base,
        action="convert",
        members=len(members),
        bytes_in=sum(m.compress_size for m in members),
        bytes_out=sum(m.file_size for m in members),
        skipped_members=tuple(skipped),
    )


def plan_run(config: RunConfig) -> list[PlannedTask]:
    """Every archive of the run with what would happen to it, then the orphan stores (whose
    archives are no longer inputs); writes nothing. Runs every check `convert` runs before
    work starts (the output, another layout in OUT), raising the same ConfigError."""
    tasks = task_list(config)
    out = output_root(config)
    refuse_if_locked(out)
    found = survey(config, tasks, out)
    planned = []
    for task in tasks:
        if config.overwrite:
            reason: str | None = "--overwrite"
        elif task.relpath in found.damaged:
            reason = "damaged (found by zconvert verify)"
        elif task.relpath in found.current:
            reason = None  # as convert decides it: from the manifest and a stat
        else:
            reason = _redo_reason(task)  # as a worker does: the store itself, file or object
        if reason is None:
            planned.append(
                PlannedTask(
                    archive=task.archive,
                    store=task.store,
                    relpath=task.relpath,
                    action="skip",
                    reason="complete and up to date",
                )
            )
        else:
            preflighted = preflight(task)
            if preflighted.action == "convert":
                preflighted = replace(preflighted, reason=reason)
            planned.append(preflighted)
    action, fate = (
        ("prune", "deleted by --prune")
        if config.prune
        else ("orphan", "left out of every view; --prune deletes it")
    )
    planned.extend(
        PlannedTask(
            archive=o.archive,
            store=o.store,
            relpath=o.relpath,
            action=action,
            reason=f"{o.why}: {fate}",
        )
        for o in found.orphans
    )
    return planned


def plan_lines(planned: list[PlannedTask], output: str, refers: bool = False) -> list[str]:
    """The dry run as text: one line per archive, then the totals. `refers`: a references
    run's, which inflates nothing."""
    from ..core.units import human_bytes

    work = "to index" if refers else "to inflate"
    lines = []
    for p in planned:
        if p.action == "convert":
            why = f"{p.reason}; " if p.reason else ""
            lines.append(
                f"convert  {p.archive} -> {p.relpath}  ({why}{p.members} member"
                f"{'s' if p.members != 1 else ''}, {human_bytes(p.bytes_out)} {work})"
            )
            lines.extend(
                f"           skip member {s.member}: {s.reason}" for s in p.skipped_members
            )
        elif p.action == "skip":
            lines.append(f"skip     {p.archive} -> {p.relpath}  ({p.reason})")
        elif p.action in ("orphan", "prune"):
            lines.append(f"{p.action:<8} {p.store}  ({p.reason})")
        else:
            where = f"{p.archive}: {p.member}" if p.member else p.archive
            lines.append(f"refuse   {where}: {p.reason}")
    actions = ("convert", "skip", "refuse", "orphan", "prune")
    counts = {a: sum(p.action == a for p in planned) for a in actions}
    total = sum(p.bytes_out for p in planned if p.action == "convert")
    stale = "".join(
        f", {counts[a]} {'orphan' if a == 'orphan' else 'to prune'}"
        for a in ("orphan", "prune")
        if counts[a]
    )
    lines.append(
        f"zconvert: would convert {counts['convert']}, skip {counts['skip']}, "
        f"refuse {counts['refuse']}{stale}; {human_bytes(total)} {work} into {output}; "
        "nothing written (dry run)"
    )
    return lines
