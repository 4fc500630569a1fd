"""What a person sees during and after a run: a live bar on a terminal, a one-screen summary.

The bar goes to stderr and only when stderr is a terminal (tqdm draws into pipes and log files
too unless told not to); tqdm is imported only when a bar is actually drawn. The summary is
plain text built from the Report, so scripts and tests can read it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from ..core.records import Result, Task
from ..core.units import human_bytes


def want_bar(quiet: bool, stream: TextIO | None = None) -> bool:
    """A bar only for a person watching: stream is a terminal and --quiet was not given."""
    stream = sys.stderr if stream is None else stream
    if quiet:
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class ProgressBar:
    """A live bar over archives, with inflated bytes and their rate; a no-op when disabled."""

    def __init__(self, enabled: bool, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self.stream = sys.stderr if stream is None else stream
        self.bar: Any = None
        self.bytes_out = 0
        self.failed = 0

    def start(self, tasks: Sequence[Task]) -> None:
        """Size the bar from the plan; called once before any archive is converted."""
        if not self.enabled or self.bar is not None:
            return
        from tqdm import tqdm

        # No monitor thread: the bar is redrawn on every result anyway, and a parent without
        # threads can fork its workers (run/executors/local.py).
        tqdm.monitor_interval = 0
        self.bar = tqdm(
            total=len(tasks),
            unit="archive",
            file=self.stream,
            dynamic_ncols=True,
            smoothing=0.1,
            # The byte rate (in the postfix) says more than archives per second.
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} archives [{elapsed}<{remaining}{postfix}]",
        )

    def update(self, result: Result) -> None:
        """Advance by one archive and its inflated bytes (Result.bytes_out)."""
        self.bytes_out += result.bytes_out
        self.failed += result.status == "failed"
        if self.bar is None:
            return
        elapsed = self.bar.format_dict.get("elapsed") or 0.0
        rate = self.bytes_out / elapsed if elapsed > 0 else 0.0
        postfix = f"{human_bytes(self.bytes_out)}, {human_bytes(rate)}/s"
        if self.failed:
            postfix += f", {self.failed} failed"
        self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    @contextlib.contextmanager
    def logging_redirected(self) -> Iterator[None]:
        """Route the zconvert logger's console output above the bar instead of through it."""
        if not self.enabled:
            yield
            return
        import logging

        from tqdm.contrib.logging import logging_redirect_tqdm

        with logging_redirect_tqdm([logging.getLogger("zconvert")]):
            yield


def report_totals(report: Any) -> dict[str, Any]:
    """The numbers of a summary, from a Report: counts, bytes, stored bytes, ratio, throughput."""
    arrays = [a for r in report.converted for a in r.arrays]
    nbytes = sum(a.nbytes for a in arrays)
    stored = sum(a.stored_bytes for a in arrays if a.stored_bytes is not None)
    seconds = report.seconds
    return {
        "converted": len(report.converted),
        "skipped": len(report.skipped),
        "failed": len(report.failed),
        "bytes_in": report.bytes_in,
        "bytes_out": report.bytes_out,
        "stored_bytes": stored,
        "ratio": nbytes / stored if stored else None,
        "seconds": seconds,
        "throughput": report.bytes_out / seconds if seconds > 0 else None,
    }


def summary_lines(report: Any) -> list[str]:
    """A one-screen summary of a run, first line compatible with scripts grepping for counts."""
    t = report_totals(report)
    lines = [
        f"zconvert: {t['converted']} converted, {t['skipped']} skipped, {t['failed']} failed "
        f"in {t['seconds']:.2f} s -> {report.output}"
    ]
    if t["skipped"]:
        lines.append(f"  skipped     {t['skipped']} already up to date (--overwrite redoes them)")
    refers = any(a.codec == "reference" for r in report.converted for a in r.arrays)
    if t["converted"] and refers:
        lines.append(
            f"  referred    to {human_bytes(t['bytes_out'])} of arrays in place in the archives "
            "(nothing copied)"
        )
    elif t["converted"]:
        ratio = f"{t['ratio']:.2f}" if t["ratio"] else "n/a"
        lines.append(f"  read        {human_bytes(t['bytes_in'])} compressed in the archives")
        lines.append(
            f"  wrote       {human_bytes(t['bytes_out'])} of arrays as "
            f"{human_bytes(t['stored_bytes'])} stored (ratio {ratio})"
        )
        if t["throughput"]:
            lines.append(f"  throughput  {human_bytes(t['throughput'])}/s inflated and written")
        inflater = getattr(report, "inflater", "")
        if inflater:  # which libraries did the work: what a throughput figure depends on
            parts = ", ".join(part.replace("=", " ") for part in inflater.split())
            lines.append(f"  libraries   {parts}")
    if report.manifest:
        lines.append(f"  manifest    {report.manifest}")
    combined_note = getattr(report, "combined_note", None)
    if combined_note:
        lines.append(f"  all.h5      not written: {combined_note}")
    snapshot = getattr(report, "snapshot", None)
    if snapshot:  # --format icechunk, when the run changed the repository
        lines.append(f"  icechunk    committed snapshot {snapshot} to {report.output}")
    lines.extend(orphan_lines(getattr(report, "orphans", []), getattr(report, "pruned", [])))
    if t["failed"]:
        noun = "archive" if t["failed"] == 1 else "archives"
        lines.append(f"  failed      {t['failed']} {noun} (one line each above); exit status 1")
    return lines


def orphan_lines(orphans: list[str], pruned: list[str], shown: int = 5) -> list[str]:
    """The stores whose archives are no longer inputs: left out of every view, or deleted."""
    lines = []
    for label, stores, what in (
        ("orphans", orphans, "left out of the manifest's views; --prune deletes them"),
        ("pruned", pruned, "deleted (--prune)"),
    ):
        if not stores:
            continue
        noun = "store" if len(stores) == 1 else "stores"
        lines.append(f"  {label:<11} {len(stores)} {noun} whose archive is not an input, {what}")
        lines.extend(f"              {store}" for store in stores[:shown])
        if len(stores) > shown:
            lines.append(f"              and {len(stores) - shown} more (--json lists all)")
    return lines
