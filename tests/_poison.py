"""A task function for executor tests: dies (SIGKILL) on archives named poison*, else
returns a converted Result without touching any store."""

from __future__ import annotations

import os
import signal

from zconvert.core.records import Result, Task


def die_on_poison(task: Task) -> Result:
    if os.path.basename(task.archive).startswith("poison"):
        os.kill(os.getpid(), signal.SIGKILL)
    return Result(
        archive=task.archive,
        store=task.store,
        relpath=task.relpath,
        status="converted",
        format=task.options.format,
        pid=os.getpid(),
    )
