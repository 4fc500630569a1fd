"""What a store was written with: the options that shape its content, as one JSON string.

Workers record it in each store's root attributes and the manifest records a short digest of
it per store, so that a rerun can tell a current store from a stale one. No numpy here: the
parent compares digests for every archive of a run.
"""

from __future__ import annotations

import functools
import json

try:  # CPython's own SHA-1: the same digest as hashlib's, without loading OpenSSL (2.7 ms)
    from _sha1 import sha1
except ImportError:  # pragma: no cover - an interpreter built without it
    from hashlib import sha1
from typing import Any

from ..core.convert_options import ConvertOptions, run_chunk_rows
from ..core.dtypes import canonical_dtype
from ..core.options import Option, declared_options

OPTIONS_ATTR = "zconvert_options"


# The options that shape what a store holds, as declared (core/options.py): a rerun redoes a
# store when one of them changed, and no other option can make it do so.
STORE_OPTIONS: tuple[Option, ...] = tuple(
    o for o in declared_options(ConvertOptions, to_workers=True) if o.shapes_store
)


def options_fingerprint(options: ConvertOptions) -> str:
    """The options that shape a store's content, as a JSON string (HDF5 attrs hold no dicts)."""
    try:
        return _cached_fingerprint(options)  # asked twice per archive, of one run's options
    except TypeError:  # a field holding a list, not a tuple: unhashable
        return _fingerprint(options)


@functools.lru_cache(maxsize=16)
def _cached_fingerprint(options: ConvertOptions) -> str:
    return _fingerprint(options)


def _fingerprint(options: ConvertOptions) -> str:
    fp: dict[str, Any] = {}
    for opt in STORE_OPTIONS:
        value = getattr(options, opt.name)
        if opt.fingerprint == "zarr" and options.format != "zarr":
            continue
        # Absent while at its default: stores written before the option existed stay current.
        if opt.fingerprint == "unless_default" and value == opt.default:
            continue
        fp[opt.name] = _recorded(opt.name, value, options)
    if options.format == "zarr" and options.zarr_format == 2:
        fp[ZARR2_FILL] = "none"  # see ZARR2_FILL
    return json.dumps(fp, sort_keys=True)


# Zarr 2 stores record no fill value since zconvert 0.1 of December 2026: xarray reads every
# value equal to a Zarr 2 fill value as missing, so the fill value 0 of the stores written
# before made it return int 0 and False as NaN. Their fingerprint lacks this key, so a rerun
# redoes them, saying why.
ZARR2_FILL = "zarr2_fill_value"


def _recorded(name: str, value: Any, options: ConvertOptions) -> Any:
    """A value as the fingerprint writes it: resolved and JSON-plain."""
    if name == "dtype":
        return canonical_dtype(value)
    if name == "chunk_rows":
        # Resolved, so that the default and the same value written out are one run (a run
        # file that says chunk_rows: 262144 and flags that leave it to the default).
        return run_chunk_rows(options)
    if name == "members":
        return [
            {"match": r.match, "dtype": r.dtype, "shape": list(r.shape) if r.shape else None}
            for r in value
        ]
    return list(value) if isinstance(value, tuple) else value


def options_digest(options: ConvertOptions) -> str:
    """A short digest of options_fingerprint: what the manifest records per store."""
    return sha1(options_fingerprint(options).encode()).hexdigest()[:16]


def options_changed(stored: str | None, options: ConvertOptions) -> str:
    """Which options differ from those a store was written with: "options changed: codec"."""
    try:
        before = json.loads(stored or "{}")
    except (TypeError, ValueError):
        before = {}
    now = json.loads(options_fingerprint(options))
    keys = sorted(k for k in {*before, *now} if before.get(k) != now.get(k))
    if keys == [ZARR2_FILL] and ZARR2_FILL not in before:
        return "written by an earlier zconvert with a Zarr 2 fill value, which xarray reads as missing (0 as NaN)"
    named = [k for k in keys if k != ZARR2_FILL]  # follows zarr_format, which is named
    return "options changed: " + (", ".join(named) or "unreadable record")
