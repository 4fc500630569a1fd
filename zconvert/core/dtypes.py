"""Numeric dtypes and shapes from config values, without numpy where the value is a common one.

The parent process only plans and never touches array data: importing numpy there cost
0.1 s and started OpenBLAS threads that spun on the cores the workers need.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from .errors import ConfigError

_DTYPE_CODE = re.compile(r"([<>=|]?)([fiuc])(\d+)")
_DTYPE_NAME = re.compile(r"(float|int|uint|complex)(\d+)")
_SIZES = {"f": (2, 4, 8), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "c": (8, 16)}
_KINDS = {"float": "f", "int": "i", "uint": "u", "complex": "c"}


def _simple_dtype(value: Any) -> str | None:
    """numpy's canonical string for common numeric dtypes ('<f4', 'float32', 'u1'), without
    importing numpy: the parent process never needs it, and it costs 0.1 s plus a thread
    pool. None when only numpy can tell."""
    if not isinstance(value, str):
        return None
    order, kind, size = "", "", ""
    if m := _DTYPE_CODE.fullmatch(value):
        order, kind, size = m.groups()
    elif (m := _DTYPE_NAME.fullmatch(value)) is not None:
        kind, bits = _KINDS[m.group(1)], int(m.group(2))
        size = str(bits // 8) if bits % 8 == 0 else ""
    if not size.isdigit() or int(size) not in _SIZES.get(kind, ()):
        return None
    if int(size) == 1:
        return f"|{kind}1"
    if order in ("", "=", "|"):
        order = "<" if sys.byteorder == "little" else ">"
    return f"{order}{kind}{size}"


def canonical_dtype(dtype: str) -> str:
    """numpy's string for a dtype ('float32' -> '<f4'); numpy is imported only for rare ones."""
    simple = _simple_dtype(dtype)
    if simple is not None:
        return simple
    import numpy as np

    return np.dtype(dtype).str


def dtype_itemsize(dtype: str) -> int:
    """Bytes per element of a canonical dtype string from parse_dtype ('<f4' -> 4)."""
    return int(dtype[2:])


def parse_dtype(value: Any, key: str, source: str | None) -> str:
    """The canonical string of a numeric dtype (`'float32'` -> `'<f4'`); ConfigError otherwise."""
    simple = _simple_dtype(value)
    if simple is not None:
        return simple
    import numpy as np

    try:
        dt = np.dtype(value)
    except TypeError:
        raise ConfigError(key, f"{value!r} is not a numpy dtype such as <f4", source) from None
    if dt.kind not in "fiuc" or dt.itemsize == 0:
        raise ConfigError(key, f"{value!r} must be a numeric dtype such as <f4", source)
    return dt.str


def parse_shape(value: Any, key: str, source: str | None) -> tuple[int, ...]:
    """A shape as users write it: [-1, 4], "-1,4" or "-1x4"; only the first size may be -1."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace("x", ",").split(",")]
        if len(parts) > 1 and "" in parts:  # '1000x' is a typo, not the 1-D shape (1000,)
            raise ConfigError(
                key, f"{value!r} leaves a size out; write every size, like -1,4 or 1000x4", source
            )
        try:
            value = [int(p) for p in parts]
        except ValueError:
            raise ConfigError(
                key, f"{value!r} is not a list of integers like -1,4", source
            ) from None
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(key, f"{value!r} is not a list of integers like [-1, 4]", source)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ConfigError(key, f"{value!r} must hold integers only", source)
    if any(v == 0 or v < -1 for v in value) or any(v == -1 for v in value[1:]):
        raise ConfigError(
            key,
            f"{list(value)} is impossible: sizes must be positive, only the first may be -1",
            source,
        )
    return tuple(value)
