"""Temporaries and renames: a store appears at its final path only when it is complete."""

from __future__ import annotations

import ctypes
import os
import shutil
import sys

TEMP_MARK = ".zconvert-tmp-"


NAME_MAX = 255  # bytes in one file name (Linux, macOS and Windows file systems alike)


def temp_sibling(final_path: str) -> str:
    """A hidden sibling of final_path that no reader globbing for stores will pick up. It fits
    wherever the final name fits: a name too long for the mark is shortened (from its end,
    whole characters), so an archive named with 240 characters still converts."""
    parent, base = os.path.split(final_path)
    tail = f"{TEMP_MARK}{os.getpid()}-{os.urandom(4).hex()}"
    room = NAME_MAX - 1 - len(tail.encode())
    name = base.encode(errors="surrogateescape")[:room].decode(errors="ignore")
    return os.path.join(parent, f".{name}{tail}")


def remove_path(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def fsync_tree(path: str) -> None:
    """Flush a file, or every file and folder below a folder, to disk."""
    if not os.path.isdir(path):
        with open(path, "rb+") as f:
            os.fsync(f.fileno())
        return
    for folder, _, files in os.walk(path, topdown=False):
        for name in files:
            with open(os.path.join(folder, name), "rb+") as f:
                os.fsync(f.fileno())
        _fsync_dir(folder)


def publish(temp_path: str, final_path: str, durable: bool = False) -> None:
    """Move a complete temporary into place, replacing any older store there.

    A file is replaced atomically. A directory cannot be renamed over a non-empty one: on
    Linux the two are exchanged in one step (renameat2 RENAME_EXCHANGE), so a store is at the
    final path at every moment; elsewhere the old store is first renamed aside, and for a
    moment nothing is there, but never an incomplete store. Readers that opened the old store
    read it, whole, until it is deleted (stores/pinned.py). The rename alone protects against a crash of zconvert; `durable` also
    flushes the data to disk first, against a crash of the machine.
    """
    if durable:
        fsync_tree(temp_path)
    if os.path.isdir(temp_path) and os.path.lexists(final_path):
        if _exchange(temp_path, final_path):  # one step: the old store is now at temp_path
            remove_path(temp_path)
        else:
            aside = temp_sibling(final_path) + ".old"
            os.rename(final_path, aside)
            os.rename(temp_path, final_path)
            remove_path(aside)
    else:
        os.replace(temp_path, final_path)
    if durable:
        _fsync_dir(os.path.dirname(final_path) or ".")


_RENAME_EXCHANGE = 2  # <linux/fs.h>
_AT_FDCWD = -100


def _exchange(a: str, b: str) -> bool:
    """Swap two paths in one step (Linux 3.15+, glibc 2.28+); False where that cannot be."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    done = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return done == 0  # EINVAL (a file system without it), ENOSYS: the two-rename way


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
