"""Run a conversion: config -> task list -> executor -> manifest, returning a Report."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..core.records import Result, Task
from ..core.storage import is_url
from ..sinks.atomic import remove_path
from ..stores.folder import remove_store, store_exists
from ..zipread.inflate import backend_summary
from .config import RunConfig, build_config
from .executors import gc_frozen, get_executor
from .outdir import lock_output, remove_leftovers
from .run_manifest import RunManifest
from .survey import output_root, survey
from .task_list import archive_size, store_locator, task_list
from .tasks import convert_archive, convert_archive_unless_current


@dataclass
class Report:
    """What a run did: one Result per archive, in plan order, plus totals."""

    output: str
    results: list[Result] = field(default_factory=list)
    seconds: float = 0.0
    manifest: str | None = None
    inflater: str = ""
    orphans: list[str] = field(default_factory=list)  # stores left out: archive not an input
    pruned: list[str] = field(default_factory=list)  # orphan stores deleted (--prune)
    combined: str | None = None  # OUT/all.h5 (HDF5 runs), None when not written
    combined_note: str | None = None  # why all.h5 was not written
    # --format icechunk: the snapshot this run committed to OUT's repository; None when it
    # changed nothing (or the run is of another format)
    snapshot: str | None = None

    @property
    def converted(self) -> list[Result]:
        return [r for r in self.results if r.status == "converted"]

    @property
    def skipped(self) -> list[Result]:
        return [r for r in self.results if r.status == "skipped"]

    @property
    def failed(self) -> list[Result]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def bytes_in(self) -> int:
        return sum(r.bytes_in for r in self.results)

    @property
    def bytes_out(self) -> int:
        return sum(r.bytes_out for r in self.results)

    def to_dict(self) -> dict[str, object]:
        return {
            "output": self.output,
            "ok": self.ok,
            "converted": len(self.converted),
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "seconds": round(self.seconds, 3),
            "manifest": self.manifest,
            "inflater": self.inflater,
            "orphans": self.orphans,
            "pruned": self.pruned,
            "combined": self.combined,
            "combined_note": self.combined_note,
            "snapshot": self.snapshot,
            "results": [r.to_dict() for r in self.results],
        }


# Starting worker processes costs about 0.3-0.5 s (interpreter, numpy, codecs); a job smaller
# than this, or a single archive, is done sooner in this process than the pool can start.
IN_PROCESS_MAX_BYTES = 16 << 20


def _engine_for(config: RunConfig, tasks: Sequence[Task]) -> str:
    """`auto` (the default) is the local process pool, except for jobs it cannot speed up."""
    if config.executor != "auto":
        return config.executor
    if any(is_url(t.archive) for t in tasks):
        return "local"  # remote archives: reading them is the slow part, not starting workers
    if len(tasks) <= 1 or sum(archive_size(t.archive) or 0 for t in tasks) <= IN_PROCESS_MAX_BYTES:
        return "serial"  # one archive gains nothing from a pool but its start-up
    if tasks[0].options.refers:
        return "serial"  # a few hundred bytes read per archive: a pool would only start up
    return "local"


def _with_spare_cores(tasks: list[Task], engine: str, workers: int | None) -> list[Task]:
    """Tell tasks how many cores each may use to inflate one large member: with fewer tasks
    than cores (one huge archive), the idle ones can inflate in parallel."""
    cores = os.cpu_count() or 1
    if engine == "dask" or not tasks or tasks[0].options.parallel_inflate is False:
        return tasks  # a cluster's cores are the cluster's business
    running = 1 if engine == "serial" else max(1, min(workers or cores, len(tasks)))
    # A compressed store keeps one core per task for the writer thread's compression.
    compressing = tasks[0].options.codec != "none"
    threads = max(1, cores // running - (1 if compressing else 0))
    if threads == tasks[0].options.inflate_threads:
        return tasks
    options = dataclasses.replace(tasks[0].options, inflate_threads=threads)
    return [dataclasses.replace(t, options=options) for t in tasks]


def _remove_store(store: str, config: RunConfig) -> None:
    remove_store(store, config.storage_options)


def _without_store(failed: Result, config: RunConfig) -> Result:
    """A failed archive keeps no store at its final path: one written from an earlier version
    of the archive would serve data that no longer matches it, to anyone opening it by path."""
    if not store_exists(failed.store, config.storage_options):
        return failed
    _remove_store(failed.store, config)
    note = f"; its earlier store {failed.relpath} was removed (a failed archive keeps no store)"
    return dataclasses.replace(failed, error=f"{failed.error}{note}")


MANIFEST_EVERY_S = 30.0  # a long run rewrites its manifest this often: kill -9 loses no more


def _convert_all(
    config: RunConfig,
    tasks: list[Task],
    manifest: RunManifest,
    by_relpath: dict[str, Result],
    on_result: Callable[[Result], None] | None,
) -> None:
    """Run the tasks on the run's executor, filling `by_relpath` as results come."""
    if not tasks:
        return
    engine = _engine_for(config, tasks)
    executor = get_executor(engine, workers=config.workers, scheduler=config.scheduler)
    tasks = _with_spare_cores(tasks, engine, config.workers)
    # Without --overwrite, workers skip stores that are complete and up to date (resume.py).
    convert_fn = convert_archive if config.overwrite else convert_archive_unless_current
    all_h5 = config.options.format == "hdf5" and not is_url(config.output)
    # Once fewer tasks than workers remain, a core is idle: load the all.h5 writer (h5py,
    # 0.06-0.1 s) there rather than after the last result. Loading it one result sooner,
    # with every worker still busy, took that CPU from them instead.
    warm_at = max(1, len(tasks) - (config.workers or os.cpu_count() or 1) + 1)
    next_write = time.monotonic() + MANIFEST_EVERY_S
    results = executor.map(convert_fn, tasks)
    with gc_frozen():
        try:
            for done, result in enumerate(results, 1):
                if result.status == "failed":
                    result = _without_store(result, config)
                by_relpath[result.relpath] = result
                if on_result is not None:
                    on_result(result)
                if all_h5 and done == warm_at:
                    from .virtual_dataset import load_writer

                    load_writer()
                if time.monotonic() >= next_write:
                    manifest.write(list(by_relpath.values()), complete=False)
                    next_write = time.monotonic() + MANIFEST_EVERY_S
        finally:
            # An error in this loop stops the executor's workers at once (a generator's close),
            # not whenever the generator is collected.
            getattr(results, "close", lambda: None)()


def run(
    config: RunConfig,
    on_result: Callable[[Result], None] | None = None,
    on_plan: Callable[[Sequence[Task]], None] | None = None,
) -> Report:
    """Convert every archive the config names; failures are recorded, never raised.
    `on_plan(tasks)` is called once before any work (progress bars size themselves from it).

    Afterwards every view of OUT (its store paths, the manifest, refs, open_all, all.h5)
    describes exactly the inputs of this run under its options: a failed archive has no store,
    an orphan (its archive no longer an input) is left out of every view, and --prune deletes it.
    """
    start = time.perf_counter()
    tasks = task_list(config)
    out = output_root(config)
    if on_plan is not None:
        on_plan(tasks)
    remote = is_url(out)
    if not remote:
        os.makedirs(out, exist_ok=True)
    by_relpath: dict[str, Result] = {}
    # One run per local OUT: a second one refuses instead of racing (object stores: no lock).
    with lock_output(out):
        remove_leftovers(out)  # temporaries of a crashed run; none of ours exist yet
        # One read of the earlier manifest: another layout's stores, orphans, damaged stores,
        # and the stores a rerun can skip from the manifest and a stat per archive (the
        # workers check the rest, resume.py, skipping stores that are complete and up to date).
        found = survey(config, tasks, out)
        manifest = found.manifest
        for relpath in found.old_layout:  # --overwrite replaces the old layout's stores
            _remove_store(store_locator(out)(relpath), config)
        if found.old_layout and not remote and config.options.format != "hdf5":
            # virtual_dataset.COMBINED_NAME, written by HDF5 runs only
            remove_path(os.path.join(out, "all.h5"))
        pruned = manifest.forget_orphans() if config.prune else []
        for orphan in pruned:
            _remove_store(orphan.store, config)
        for task in tasks:
            if task.relpath in found.damaged:  # verify found it damaged: the workers redo it
                _remove_store(task.store, config)
            elif task.relpath in found.current:
                by_relpath[task.relpath] = found.current[task.relpath]
                if on_result is not None:
                    on_result(found.current[task.relpath])
        todo = [t for t in tasks if t.relpath not in found.current]
        try:
            _convert_all(config, todo, manifest, by_relpath, on_result)
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM, an executor's error): the executor has stopped its
            # workers; the stores that finished stay and the manifest lists them, marked
            # incomplete; partial ones are removed. Rerunning convert resumes.
            if not remote:
                remove_leftovers(out)
            manifest.write(list(by_relpath.values()), complete=False)
            raise
        if todo and not remote:
            remove_leftovers(out)  # those of workers that died (kill -9, OOM) during this run
        results = [by_relpath[t.relpath] for t in tasks]
        # A rerun that found every store current changes nothing, not even the manifest
        # (rewriting 100,000 entries to say "skipped" took longer than deciding).
        unchanged = not todo and found.unchanged
        manifest_file = manifest.path if unchanged else manifest.write(results)
        combined: tuple[str | None, str | None] = (None, None)
        if config.options.format == "hdf5" and not remote:
            from ..stores.folder import COMBINED_NAME
            from .virtual_dataset import write_virtual_dataset

            combined = (os.path.join(out, COMBINED_NAME), None)
            if not (unchanged and os.path.exists(combined[0])):
                # OUT/all.h5, the whole run as one HDF5 dataset, rebuilt whenever the set of
                # stores changed: a virtual dataset reads a missing source as NaN, silently.
                combined = write_virtual_dataset(out)
        snapshot = None
        if config.options.format == "icechunk":
            from .icechunk_run import update_repository

            snapshot = update_repository(out, results, config.storage_options)
    return Report(
        output=out,
        results=results,
        seconds=time.perf_counter() - start,
        manifest=manifest_file,
        inflater=backend_summary(),
        orphans=[o.store for o in manifest.orphans],
        pruned=[o.store for o in pruned],
        combined=combined[0],
        combined_note=combined[1],
        snapshot=snapshot,
    )


def convert(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    config: str | os.PathLike[str] | None = None,
    on_result: Callable[[Result], None] | None = None,
    **options: object,
) -> Report:
    """Convert archives (files or folders) into stores under `output`; options as the CLI's."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    cfg = build_config(
        config, inputs=[os.fspath(p) for p in inputs], output=os.fspath(output), **options
    )
    return run(cfg, on_result)
