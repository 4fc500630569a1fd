"""The small, picklable records that cross process boundaries: Task in, Result out.

No open file, array or store handle ever lives in one of these; executors ship them and
the manifest stores them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

TARGET_CHUNK_BYTES = 4 << 20  # the default chunk size (chunk_rows unset)


def default_chunk_rows(row_bytes: int) -> int:
    """Rows per chunk when chunk_rows is unset: about TARGET_CHUNK_BYTES, at least one row."""
    return max(1, TARGET_CHUNK_BYTES // row_bytes)


@dataclass(frozen=True)
class MemberRule:
    """YAML `members:` entry: members whose path matches `match` have this dtype and shape
    (None: the run's). The first matching rule wins."""

    match: str
    dtype: str | None = None
    shape: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ConvertOptions:
    """How every archive of a run is converted (shared by all its tasks)."""

    format: str = "zarr"
    zarr_format: int = 3
    dtype: str = "<f4"
    shape: tuple[int, ...] = (-1, 4)
    chunk_rows: int | None = None
    shard_rows: int | None = None  # Zarr 3: rows per shard, whole chunks; None: no shards
    codec: str = "blosc-lz4"
    contiguous: bool = False  # Zarr: one uncompressed chunk per array, memory-mappable
    slab_bytes: int = 8 << 20
    max_ratio: float | None = None  # None: the default limit, on large members only
    max_member_bytes: int = 1 << 40
    durable: bool = False
    direct_io: bool = True  # write large data around the page cache where possible
    parallel_inflate: bool | None = None  # None: auto (see parallel_inflate.threads_for)
    inflate_threads: int = 1  # set by the run from parallel_inflate: spare cores per task
    debug: bool = False
    include: tuple[str, ...] = ()  # member globs to convert (none given: every data member)
    exclude: tuple[str, ...] = ()  # member globs to skip
    members: tuple[MemberRule, ...] = ()


def run_chunk_rows(options: ConvertOptions) -> int:
    """chunk_rows as it takes effect for the run's dtype and shape (members whose header or
    `members:` rule gives another row size get their own default)."""
    from .dtypes import canonical_dtype, dtype_itemsize  # no numpy: the parent never needs it

    row_bytes = dtype_itemsize(canonical_dtype(options.dtype)) * math.prod(options.shape[1:])
    return options.chunk_rows or default_chunk_rows(row_bytes)


@dataclass(frozen=True, slots=True)
class Task:
    """Convert one archive into one store."""

    archive: str  # absolute path of the source archive
    store: str  # absolute final path of the store
    relpath: str  # store path relative to the output folder (the manifest key)
    options: ConvertOptions
    # fsspec options for URL archives/stores (endpoint, credentials): never in repr or manifest.
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class VerifyTask(Task):
    """Check one store (`zconvert verify`), shipped to workers like a Task: `expected` holds the
    manifest's records of its arrays (None: a store checked on its own)."""

    expected: tuple[ArrayRecord, ...] | None = None
    sources: bool = False


@dataclass(frozen=True, slots=True)
class ArrayRecord:
    """One converted member: where it lives in the store and what it holds."""

    name: str
    member: str
    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]
    codec: str
    crc32: int
    nbytes: int
    stored_bytes: int | None = None
    shards: tuple[int, ...] | None = None  # the shard shape of a sharded Zarr 3 array


@dataclass(frozen=True, slots=True)
class SkippedMember:
    """A member not converted on purpose (operating-system metadata, a document or image
    rather than data, --include/--exclude)."""

    member: str
    reason: str


# A manifest entry's status. A worker's Result is "converted", "skipped" (current, left as it
# was) or "failed" (no store at its final path). A rerun marks "orphan" an earlier store whose
# archive is no longer among the inputs (left on disk until --prune), and verify marks
# "damaged" a store that failed its checks (the next convert redoes it). Readers (refs,
# open_all, all.h5, inspect's counts) see only the stores that serve data.
SERVING = ("converted", "skipped")
ORPHAN = "orphan"
DAMAGED = "damaged"


@dataclass(frozen=True, slots=True)
class Result:
    """What a worker returns for one task: a few hundred bytes, never array data."""

    archive: str
    store: str
    relpath: str
    status: str  # "converted" | "failed" | "skipped" (a manifest's: also ORPHAN, DAMAGED)
    format: str
    arrays: tuple[ArrayRecord, ...] = ()
    error: str | None = None
    member: str | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    pid: int = 0
    peak_rss: int = 0  # the worker process's peak resident memory so far (VmHWM), bytes
    skipped_members: tuple[SkippedMember, ...] = ()
    # What a rerun compares before opening the store: the archive's size, mtime and ctime when
    # it was converted, and the digest of the options it was converted with (fingerprint.py).
    source_size: int | None = None
    source_mtime_ns: int | None = None
    source_ctime_ns: int | None = None
    options_id: str | None = None
    traceback: str | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    @property
    def serves_data(self) -> bool:
        """Whether readers see this store: converted or current, not orphaned or damaged."""
        return self.status in SERVING

    def to_dict(self) -> dict[str, Any]:
        # By hand, not dataclasses.asdict (which deep-copies every value): a manifest of
        # 100,000 stores is built in 0.2 s instead of 3 s. Every field is a plain value.
        d = {f: getattr(self, f) for f in _FIELDS[Result]}
        d["arrays"] = [{f: getattr(a, f) for f in _FIELDS[ArrayRecord]} for a in self.arrays]
        d["skipped_members"] = [
            {"member": s.member, "reason": s.reason} for s in self.skipped_members
        ]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        """From a manifest entry; keys this version does not know are ignored."""
        arrays = tuple(
            ArrayRecord(
                name=a["name"],
                member=a["member"],
                shape=tuple(a["shape"]),
                dtype=a["dtype"],
                chunks=tuple(a["chunks"]),
                codec=a["codec"],
                crc32=a["crc32"],
                nbytes=a["nbytes"],
                stored_bytes=a.get("stored_bytes"),
                shards=tuple(a["shards"]) if a.get("shards") else None,
            )
            for a in d.get("arrays") or ()
        )
        skipped = tuple(SkippedMember(**s) for s in d.get("skipped_members") or ())
        plain = {k: d[k] for k in _PLAIN_FIELDS if k in d}
        return cls(arrays=arrays, skipped_members=skipped, **plain)


_FIELDS = {cls: tuple(f.name for f in fields(cls)) for cls in (Result, ArrayRecord)}
_PLAIN_FIELDS = tuple(f for f in _FIELDS[Result] if f not in ("arrays", "skipped_members"))
