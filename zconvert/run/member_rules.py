"""Per-member rules (`members:` in a run file, `--members` as JSON): which members get which
dtype and shape, first match wins. Errors name the entry and its key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.convert_options import MemberRule
from ..core.dtypes import parse_dtype, parse_shape
from ..core.errors import ConfigError

RULE_KEYS = ("match", "dtype", "shape")


def parse_member_rules(value: Any, source: str | None) -> tuple[MemberRule, ...]:
    """YAML `members:`: a list of {match, dtype, shape}; errors name the entry and its key."""
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise ConfigError(
            "members", f"{value!r} is not a list of {{match, dtype, shape}} entries", source
        )
    rules = []
    for i, entry in enumerate(value):
        key = f"members[{i}]"
        if isinstance(entry, MemberRule):  # validated already (a merged run is checked twice)
            rules.append(entry)
            continue
        if not isinstance(entry, Mapping):
            raise ConfigError(key, f"{entry!r} is not a mapping like {{match: '*.bin'}}", source)
        unknown = sorted(str(k) for k in entry if k not in RULE_KEYS)
        if unknown:
            raise ConfigError(
                key, f"unknown key {', '.join(unknown)}; known are {', '.join(RULE_KEYS)}", source
            )
        match = entry.get("match")
        if not isinstance(match, str) or not match:
            raise ConfigError(f"{key}.match", "is required: a glob of member paths", source)
        if entry.get("dtype") is None and entry.get("shape") is None:
            raise ConfigError(key, "needs dtype or shape (or both) besides match", source)
        dtype = entry.get("dtype")
        shape = entry.get("shape")
        rules.append(
            MemberRule(
                match=match,
                dtype=None if dtype is None else parse_dtype(dtype, f"{key}.dtype", source),
                shape=None if shape is None else parse_shape(shape, f"{key}.shape", source),
            )
        )
    return tuple(rules)
