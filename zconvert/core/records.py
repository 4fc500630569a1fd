"""The small, picklable records that cross process boundaries: Task in, Result out.

No open file, array or store handle ever lives in one of these; executors ship them and
the manifest stores them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

from .convert_options import ConvertOptions


@dataclass(frozen=True, slots=True)
class Task:
    """Convert one archive into one store."""

    archive: str  # absolute path of the source archive
    store: str  # absolute final path of the store
    relpath: str  # store path relative to the output folder (the manifest key)
    options: ConvertOptions
    # fsspec options for URL archives/stores (endpoint, credentials): never in repr or manifest.
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    # What executors ask of any item (see run/executors): its key, what to size it by, and
    # what it comes back as when its worker died.
    @property
    def key(self) -> str:
        return self.relpath

    @property
    def input_path(self) -> str:
        return self.archive

    def crashed(self, reason: str) -> Result:
        return Result.of(self, "failed", error=reason, pid=0)  # pid 0: no worker made it


@dataclass(frozen=True, slots=True)
class StoreCheck:
    """Check one store (`zconvert verify`) on an executor's workers: `expected` holds the
    manifest's records of its arrays (None: a store checked on its own)."""

    store: str
    relpath: str
    format: str  # "" when not known from a manifest
    expected: tuple[ArrayRecord, ...] | None = None
    sources: bool = False  # re-read the source archives too
    # fsspec options for a store by URL, as Task's: never in repr.
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    # What executors ask of any item (see run/executors): its key, what to size it by, and
    # what it comes back as when its worker died.
    @property
    def key(self) -> str:
        return self.store

    @property
    def input_path(self) -> str:
        return self.store

    def crashed(self, reason: str) -> StoreVerdict:
        return StoreVerdict(self.store, (reason,))


@dataclass(frozen=True, slots=True)
class StoreVerdict:
    """What checking one store found: one line per problem, none for a sound store."""

    store: str
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ArrayRecord:
    """One converted member: where it lives in the store and what it holds."""

    name: str
    member: str
    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]
    codec: str
    crc32: int  # of the member: its .npy header, if any, and its data
    nbytes: int  # the array's bytes (shape x itemsize)
    stored_bytes: int | None = None
    shards: tuple[int, ...] | None = None  # the shard shape of a sharded Zarr 3 array
    # The member's bytes, a .npy header included: what crc32 covers. None in manifests
    # written before it was recorded, whose nbytes is the member's bytes.
    member_bytes: int | None = None


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
    source_ctime_ns: int | None = None  # a local file's
    source_etag: str | None = None  # an object's (URL archives), in place of a ctime
    options_id: str | None = None
    traceback: str | None = field(default=None, repr=False)

    @classmethod
    def of(cls, task: Task, status: str, **fields: Any) -> Result:
        """A task's Result: where it came from and went (archive, store, relpath, format)
        taken from the task, and the process that made it."""
        if "pid" not in fields:
            fields["pid"] = os.getpid()
        # Positional: a rerun makes one per current store, 100,000 and more.
        return cls(task.archive, task.store, task.relpath, status, task.options.format, **fields)

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
                member_bytes=a.get("member_bytes"),
            )
            for a in d.get("arrays") or ()
        )
        skipped = tuple(SkippedMember(**s) for s in d.get("skipped_members") or ())
        plain = {k: d[k] for k in _PLAIN_FIELDS if k in d}
        return cls(arrays=arrays, skipped_members=skipped, **plain)


_FIELDS = {cls: tuple(f.name for f in fields(cls)) for cls in (Result, ArrayRecord)}
_PLAIN_FIELDS = tuple(f for f in _FIELDS[Result] if f not in ("arrays", "skipped_members"))
