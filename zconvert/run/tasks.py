"""The conversion functions executors ship to workers, importable without numpy or codecs.

Executors pickle a function by reference; importing it from here keeps the parent process
light (numpy, h5py and the codecs load in the workers, where the work is), which shortens
the time to the first converted archive. (`zconvert verify` ships run/verify.py's check_store.)
"""

from __future__ import annotations

from ..core.records import Result, Task


def convert_archive(task: Task) -> Result:
    """Convert one archive, redoing its store whatever is there (--overwrite)."""
    from .worker import convert_task

    return convert_task(task)


def convert_archive_unless_current(task: Task) -> Result:
    """Skip a store that is complete and up to date; convert anything else (resume)."""
    from .resume import convert_unless_current as convert_or_skip

    return convert_or_skip(task)
