"""What a store was written with: the options that shape its content, as one JSON string.

Workers record it in each store's root attributes and the manifest records a short digest of
it per store, so that a rerun can tell a current store from a stale one. No numpy here: the
parent compares digests for every archive of a run.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..core.dtypes import canonical_dtype
from ..core.records import ConvertOptions, run_chunk_rows

OPTIONS_ATTR = "zconvert_options"


def options_fingerprint(options: ConvertOptions) -> str:
    """The options that shape a store's content, as a JSON string (HDF5 attrs hold no dicts)."""
    fp: dict[str, Any] = {
        "format": options.format,
        "dtype": canonical_dtype(options.dtype),
        "shape": list(options.shape),
        # Resolved, so that the default and the same value written out are one run (a run
        # file that says chunk_rows: 262144 and flags that leave it to the default).
        "chunk_rows": run_chunk_rows(options),
        "codec": options.codec,
    }
    if options.format == "zarr":
        fp["zarr_format"] = options.zarr_format
    if options.shard_rows is not None:  # absent when unset: unsharded stores stay current
        fp["shard_rows"] = options.shard_rows
    # Absent when unset too, so that stores written before member selection stay current.
    if options.include:
        fp["include"] = list(options.include)
    if options.exclude:
        fp["exclude"] = list(options.exclude)
    if options.members:
        fp["members"] = [
            {"match": r.match, "dtype": r.dtype, "shape": list(r.shape) if r.shape else None}
            for r in options.members
        ]
    return json.dumps(fp, sort_keys=True)


def options_digest(options: ConvertOptions) -> str:
    """A short digest of options_fingerprint: what the manifest records per store."""
    return hashlib.sha1(options_fingerprint(options).encode()).hexdigest()[:16]


def options_changed(stored: str | None, options: ConvertOptions) -> str:
    """Which options differ from those a store was written with: "options changed: codec"."""
    try:
        before = json.loads(stored or "{}")
    except (TypeError, ValueError):
        before = {}
    now = json.loads(options_fingerprint(options))
    keys = sorted(k for k in {*before, *now} if before.get(k) != now.get(k))
    return "options changed: " + (", ".join(keys) or "unreadable record")
