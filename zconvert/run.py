"""Run a conversion: config -> plan -> executor -> manifest, returning a Report."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .config import RunConfig, build_config
from .executors import get_executor
from .inflate import backend_summary
from .manifest import write_manifest
from .plan import plan_tasks
from .records import Result
from .storage import is_url
from .worker import convert_task


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


def run(config: RunConfig, on_result: Callable[[Result], None] | None = None) -> Report:
    """Convert every archive the config names; failures are recorded, never raised."""
    start = time.perf_counter()
    tasks = plan_tasks(config)
    if is_url(config.output):
        out = config.output.rstrip("/")  # object stores have no folders to create
    else:
        out = os.path.abspath(os.path.expanduser(config.output))
        os.makedirs(out, exist_ok=True)
    executor = get_executor(config.executor, workers=config.workers, scheduler=config.scheduler)
    by_relpath: dict[str, Result] = {}
    for result in executor.map(convert_task, tasks):
        by_relpath[result.relpath] = result
        if on_result is not None:
            on_result(result)
    results = [by_relpath[t.relpath] for t in tasks]
    manifest = write_manifest(out, results, config.options, config.storage_options)
    return Report(
        output=out,
        results=results,
        seconds=time.perf_counter() - start,
        manifest=manifest,
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
