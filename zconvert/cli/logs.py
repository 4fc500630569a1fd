"""Logging for the command line: the `zconvert` logger to stderr, and to a file if asked.

Console verbosity is a filter rather than a handler level, so that it survives the progress
bar swapping the console handler for one that writes above the bar.
"""

from __future__ import annotations

import logging
import os
import sys

LOGGER = "zconvert"
_MARK = "_zconvert_cli_handler"


class _AtLeast(logging.Filter):
    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level


def console_level(verbose: bool = False, debug: bool = False, quiet: bool = False) -> int:
    if debug:
        return logging.DEBUG
    if verbose:
        return logging.INFO
    return logging.ERROR if quiet else logging.WARNING


def configure_logging(
    verbose: bool = False,
    debug: bool = False,
    log_file: str | os.PathLike[str] | None = None,
    quiet: bool = False,
) -> logging.Logger:
    """Send the zconvert logger to stderr ('zconvert: message') and, with a log file, every
    record at DEBUG with time and level to that file. Safe to call more than once."""
    logger = logging.getLogger(LOGGER)
    for handler in [h for h in logger.handlers if getattr(h, _MARK, False)]:
        logger.removeHandler(handler)
        handler.close()
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("zconvert: %(message)s"))
    console.addFilter(_AtLeast(console_level(verbose, debug, quiet)))
    setattr(console, _MARK, True)
    logger.addHandler(console)
    if log_file is not None:
        # OSError (no such folder, permission) is the caller's to report as a usage error.
        to_file = logging.FileHandler(os.fspath(log_file), encoding="utf-8")
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        setattr(to_file, _MARK, True)
        logger.addHandler(to_file)
    # Records no handler keeps are not even made: a rerun of 100,000 archives logs one per
    # archive at INFO, which costs 0.1 s when only warnings are shown.
    level = console_level(verbose, debug, quiet)
    logger.setLevel(logging.DEBUG if log_file is not None else level)
    logger.propagate = False
    return logger
