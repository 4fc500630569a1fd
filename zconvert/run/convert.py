"""Run a conversion: config -> plan -> executor -> manifest, returning a Report."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..core.records import Result, Task
from ..core.storage import is_url, join
from ..sinks.atomic import remove_path
from ..zipread.inflate import backend_summary
from .config import RunConfig, build_config
from .executors import gc_frozen, get_executor
from .outdir import lock_output, remove_leftovers
from .plan import archive_size, plan_tasks
from .run_manifest import RunManifest
from .tasks import convert_archive, convert_archive_unless_current


@dataclass
class Report:
    """What a run did: one Result per archive, in plan order, plus totals."""

    output: str
    results: list[Result] = field(default_factory=list)
    seconds: float = 0.0
    manifest: str | None = None
    inflater: str = ""

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
    if is_url(store):
        from ..core.storage import remove_tree

        remove_tree(store, config.storage_options)
    else:
        remove_path(store)


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
    `on_plan(tasks)` is called once before any work (progress bars size themselves from it)."""
    start = time.perf_counter()
    tasks = plan_tasks(config)
    if on_plan is not None:
        on_plan(tasks)
    remote = is_url(config.output)
    if remote:
        out = config.output.rstrip("/")  # object stores have no folders to create
    else:
        out = os.path.abspath(os.path.expanduser(config.output))
        os.makedirs(out, exist_ok=True)
    manifest = RunManifest(out, config.options, config.storage_options)
    by_relpath: dict[str, Result] = {}
    # One run per local OUT: a second one refuses instead of racing (object stores: no lock).
    with contextlib.nullcontext() if remote else lock_output(out):
        if not remote:
            remove_leftovers(out)  # temporaries of a crashed run; none of ours exist yet
        # One read of the earlier manifest: another layout's stores, and the stores a rerun
        # can skip from the manifest and a stat per archive (the workers check the rest,
        # resume.py, skipping stores that are complete and up to date).
        current = manifest.scan(tasks, trust_stat=not config.overwrite)
        old_layout = manifest.refuse_other_layout(config.overwrite)
        for relpath in old_layout:  # --overwrite replaces the old layout's stores
            _remove_store(join(out, relpath) if remote else os.path.join(out, relpath), config)
        if old_layout and not remote and config.options.format != "hdf5":
            # virtual_dataset.COMBINED_NAME, written by HDF5 runs only
            remove_path(os.path.join(out, "all.h5"))
        for task in tasks:
            if task.relpath in current:
                by_relpath[task.relpath] = current[task.relpath]
                if on_result is not None:
                    on_result(current[task.relpath])
        todo = [t for t in tasks if t.relpath not in current]
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
        unchanged = not todo and not old_layout and manifest.was_complete and manifest.has_index
        manifest_file = manifest.path if unchanged else manifest.write(results)
        if config.options.format == "hdf5" and not remote:
            from .virtual_dataset import COMBINED_NAME, write_virtual_dataset

            if not (unchanged and os.path.exists(os.path.join(out, COMBINED_NAME))):
                write_virtual_dataset(out)  # OUT/all.h5: the whole run as one HDF5 dataset
    return Report(
        output=out,
        results=results,
        seconds=time.perf_counter() - start,
        manifest=manifest_file,
        inflater=backend_summary(),
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
