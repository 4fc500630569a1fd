"""Exceptions users can catch; each message names what is wrong and how to fix it."""

from __future__ import annotations


class ZconvertError(Exception):
    """Base class of every error zconvert raises on purpose."""


class ConfigError(ZconvertError):
    """A run configuration (YAML file or flags) is invalid; raised before any work."""

    def __init__(
        self, key: str | None, reason: str, source: str | None = None, name: str | None = None
    ) -> None:
        self.key = key
        self.reason = reason
        self.source = source
        where = f"{source}: " if source else ""
        # `name`: the key as the user spelled it (a flag), or "" when the reason says it all.
        shown = key if name is None else name
        what = f"{shown}: " if shown else ""
        super().__init__(f"{where}{what}{reason}")


class ArchiveError(ZconvertError):
    """One archive (or one member of it) cannot be converted."""

    def __init__(self, archive: str, member: str | None, reason: str) -> None:
        self.archive = archive
        self.member = member
        self.reason = reason
        where = f"{archive}: {member}" if member else archive
        super().__init__(f"{where}: {reason}")


class StoreError(ZconvertError):
    """A converted store cannot be opened or read the way it was asked for."""
