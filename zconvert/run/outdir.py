"""The output folder of a run: one run at a time (a lock file), and no leftovers of a crash.

The lock is an `fcntl.flock` on OUT/.zconvert.lock: the kernel releases it when the holding
process dies, so a killed run never leaves OUT locked (a stale file left by a killed run is
harmless and reused). Temporaries are hidden siblings of
their final paths (see sinks/atomic.py), so a crashed run's are found by name alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

from ..core.errors import ConfigError
from ..core.storage import is_url
from ..sinks.atomic import remove_path
from ..stores.folder import LOCK_NAME, is_leftover

_held: set[int] = set()  # descriptors of the locks this process holds


class OutputLockedError(ConfigError):
    """Another zconvert run holds OUT; raised before any work (exit status 2)."""


@contextlib.contextmanager
def lock_output(out: str) -> Iterator[None]:
    """Hold OUT's lock for the duration; refuse at once if another live run holds it. Object
    storage has no lock: a URL OUT is not locked (one run at a time is the caller's to keep)."""
    if is_url(out):
        yield
        return
    fd = _acquire(os.path.join(out, LOCK_NAME), out)
    _held.add(fd)
    try:
        yield
    finally:
        # Unlink before unlocking: a run that opened this file meanwhile notices (its inode is
        # no longer at the path) and retries on a fresh file, so removal cannot let two in.
        try:
            os.unlink(os.path.join(out, LOCK_NAME))
        except FileNotFoundError:
            pass
        _held.discard(fd)
        os.close(fd)


def close_inherited_locks() -> None:
    """In a forked worker: drop the parent's lock descriptors, so that the lock lives exactly
    as long as the parent (closing a copy does not release the parent's lock)."""
    while _held:
        with contextlib.suppress(OSError):
            os.close(_held.pop())


def _acquire(path: str, out: str) -> int:
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:  # a folder this process cannot write: refused, one line
            raise ConfigError(
                "output",
                f"{out}: cannot write in it ({exc.strerror}); choose a folder you can write, "
                "or fix its permissions",
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            error = _locked_error(fd, out)
            os.close(fd)
            raise error from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)  # the holder removed it as we opened it: try again on the new file


def _locked_error(fd: int, out: str) -> OutputLockedError:
    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
    return OutputLockedError(
        "output",
        f"{out} is in use by another zconvert run (pid {holder}); wait for it to "
        "finish or choose another output folder",
    )


def refuse_if_locked(out: str) -> None:
    """A dry run's lock check: OutputLockedError if a live run holds OUT, as `convert` would
    raise; takes no lock and creates nothing."""
    if is_url(out):
        return  # object storage has no lock
    try:
        fd = os.open(os.path.join(out, LOCK_NAME), os.O_RDONLY)
    except OSError:
        return  # no lock file: no run holds OUT
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _locked_error(fd, out) from None
    finally:
        os.close(fd)


def remove_leftovers(out: str) -> list[str]:
    """Remove every leftover temporary under OUT (call with the lock held); returns their paths.

    Store folders are not descended into: temporaries are siblings of stores, never inside them,
    and a Zarr store can hold millions of chunk files.
    """
    removed: list[str] = []
    if is_url(out):
        return removed  # nothing is written under a temporary name on object storage
    for parent, dirs, files in os.walk(out):
        for name in [*dirs, *files]:
            if name[0] == "." and is_leftover(name):  # hidden first: 100,000 stores are quick
                path = os.path.join(parent, name)
                remove_path(path)
                removed.append(path)
        dirs[:] = [
            d
            for d in dirs
            if not d.endswith(".zarr")
            and not is_leftover(d)
            and not os.path.exists(os.path.join(parent, d, "zarr.json"))
            and not os.path.exists(os.path.join(parent, d, ".zgroup"))
        ]
    return removed
