"""The zconvert command: argument parsing, subcommands, progress, logging and config docs. May
import every stage; nothing imports it."""

from .commands import main

__all__ = ["main"]
