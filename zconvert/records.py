"""The small, picklable records that cross process boundaries: Task in, Result out.

No open file, array or store handle ever lives in one of these; executors ship them and
the manifest stores them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
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
    from .dtypes import dtype_itemsize  # not numpy: the parent of a run never imports it

    row_bytes = dtype_itemsize(options.dtype) * math.prod(options.shape[1:])
    return options.chunk_rows or default_chunk_rows(row_bytes)


@dataclass(frozen=True)
class Task:
    """Convert one archive into one store."""

    archive: str  # absolute path of the source archive
    store: str  # absolute final path of the store
    relpath: str  # store path relative to the output folder (the manifest key)
    options: ConvertOptions
    # fsspec options for URL archives/stores (endpoint, credentials): never in repr or manifest.
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class SkippedMember:
    """A member not converted on purpose (operating-system metadata, --include/--exclude)."""

    member: str
    reason: str


@dataclass(frozen=True)
class Result:
    """What a worker returns for one task: a few hundred bytes, never array data."""

    archive: str
    store: str
    relpath: str
    status: str  # "converted" | "failed" | "skipped"
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
    traceback: str | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["arrays"] = [asdict(a) for a in self.arrays]
        d["skipped_members"] = [asdict(s) for s in self.skipped_members]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        d = dict(d)
        arrays = tuple(
            ArrayRecord(
                **{
                    **a,
                    "shape": tuple(a["shape"]),
                    "chunks": tuple(a["chunks"]),
                    "shards": tuple(a["shards"]) if a.get("shards") else None,
                }
            )
            for a in d.pop("arrays", ())
        )
        skipped = tuple(SkippedMember(**s) for s in d.pop("skipped_members", None) or ())
        known = {f for f in cls.__dataclass_fields__}
        return cls(
            arrays=arrays, skipped_members=skipped, **{k: v for k, v in d.items() if k in known}
        )
