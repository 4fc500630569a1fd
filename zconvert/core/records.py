"""The small, picklable records that cross process boundaries: Task in, Result out.

No open file, array or store handle ever lives in one of these; executors ship them and
the manifest stores them.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from typing import Any

from .options import option

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
    """How every archive of a run is converted (shared by all its tasks). Each field declares
    its option once (core/options.py): flags, checks, docs and the store fingerprint follow."""

    format: str = option(
        "zarr",
        help="zarr | hdf5",
        kind="choice",
        choices=("zarr", "hdf5"),
        shapes_store=True,
        cli_help="store format (default zarr)",
    )
    zarr_format: int = option(
        3,
        help="2 | 3 (Zarr only; 2 for older readers)",
        kind="choice",
        choices=(2, 3),
        shapes_store=True,
        fingerprint="zarr",
        cli_help="Zarr format (default 3)",
    )
    dtype: str = option(
        "<f4",
        help="numpy dtype of the raw blobs, with byte order (.npy members: their header)",
        kind="dtype",
        shapes_store=True,
        cli_help="numpy dtype of the blobs (default <f4)",
    )
    shape: tuple[int, ...] = option(
        (-1, 4),
        help="shape of each raw member; -1 first means rows inferred from its size "
        "(.npy members: their header)",
        kind="shape",
        shapes_store=True,
        example=[-1, 4],
        cli_help="shape of each raw member: -1,4 or 1000x4; -1 first = rows inferred "
        "(default -1,4)",
    )
    include: tuple[str, ...] = option(
        (),
        help="member paths to convert, as globs ('*' crosses '/'; a glob without '/' also "
        "matches the file name alone, e.g. '*.bin'); default: every data member. Skipped "
        "members are listed in the manifest; macOS/Windows/JAR metadata (__MACOSX/, ._*, "
        ".DS_Store, Thumbs.db, desktop.ini, META-INF/MANIFEST.MF) is always skipped; documents, "
        "text and images (.txt, .md, .json, .csv, .xml, .yaml, .pdf, .png... see the README) "
        "unless a pattern here matches them",
        kind="globs",
        shapes_store=True,
        fingerprint="unless_default",
        example=[],
        metavar="GLOB",
        cli_help="convert only members whose path matches (repeatable; '*' crosses '/'); "
        "a pattern that matches a document (README.txt) converts it",
    )
    exclude: tuple[str, ...] = option(
        (),
        help="member paths to skip, as globs (after include), e.g. ['*.json', 'README*']",
        kind="globs",
        shapes_store=True,
        fingerprint="unless_default",
        example=[],
        metavar="GLOB",
        cli_help="skip members whose path matches (repeatable); OS metadata is always skipped",
    )
    members: tuple[MemberRule, ...] = option(
        (),
        help="per-member dtype and shape for raw members: a list of {match: GLOB, dtype, "
        "shape}, first match wins, unmatched members use dtype and shape; .npy members "
        "describe themselves (a rule contradicting their header is refused)",
        kind="members",
        shapes_store=True,
        fingerprint="unless_default",
        example=[{"match": "*timestamps*", "dtype": "<i8", "shape": [-1]}],
        metavar="JSON",
        cli_help="per-member dtype/shape of raw members, first match wins: "
        '\'[{"match": "*time*", "dtype": "<i8", "shape": [-1]}]\' (YAML: members:)',
    )
    chunk_rows: int | None = option(
        None,
        help="rows per chunk; default: about 4 MiB per chunk",
        kind="positive_int",
        nullable=True,
        shapes_store=True,
        example=262144,
        cli_help="rows per chunk (default ~4 MiB chunks)",
    )
    shard_rows: int | None = option(
        None,
        help="Zarr 3: rows per shard, a multiple of chunk_rows (e.g. 2097152 = 8 chunks of "
        "262144): each shard file holds several chunks and an index, so many small chunks make "
        "few files; default: no shards",
        kind="positive_int",
        nullable=True,
        shapes_store=True,
        fingerprint="unless_default",
        cli_help="Zarr 3: rows per shard file, a multiple of the chunk rows (default: no shards)",
    )
    # The names of sinks/codecs.PRESETS (tests/run/test_options.py checks they agree).
    codec: str = option(
        "blosc-lz4",
        help="none | blosc-lz4 | blosc-zstd | zstd | gzip",
        kind="choice",
        choices=("none", "blosc-lz4", "blosc-zstd", "zstd", "gzip"),
        shapes_store=True,
        cli_help="compression preset (default blosc-lz4; none for memory-mappable stores)",
    )
    contiguous: bool = option(
        False,
        help="Zarr: store each array as one uncompressed chunk that readers can memory-map "
        "(zconvert.open_memmap); needs codec none. HDF5 with codec none is always mappable",
        kind="bool",
        shapes_store=True,
        fingerprint="unless_default",
        cli_help="Zarr: one uncompressed chunk per array, memory-mappable (needs --codec none)",
    )
    slab_bytes: int = option(
        8 << 20,
        help="bytes inflated and written at a time per worker (whole chunks)",
        kind="positive_int",
        shapes_store=False,
        cli_help="bytes inflated at a time per worker (8 MiB)",
    )
    max_ratio: float | None = option(
        None,
        help="refuse members whose inflated/deflated size ratio is higher (decompression "
        "bombs); unset: 1000, checked on members over 64 MiB only (all-zero data deflates "
        "~1030:1)",
        kind="ratio",
        nullable=True,
        shapes_store=False,
        example=1000.0,
        cli_help="refuse members compressed more (1000)",
    )
    max_member_bytes: int = option(
        1 << 40,
        help="refuse members larger than this when inflated",
        kind="positive_int",
        shapes_store=False,
        cli_help="refuse larger members (1 TiB)",
    )
    durable: bool = option(
        False,
        help="fsync every store before publishing it: survives power loss, costs a disk flush "
        "per store (without it a store is still never incomplete after a crash or kill of "
        "zconvert)",
        kind="bool",
        shapes_store=False,
        cli_help="fsync each store before publishing it (survives power loss; slower)",
    )
    direct_io: bool = option(
        True,
        help="write array data with O_DIRECT where the file system allows it: far less kernel "
        "CPU than the page cache; false for ordinary buffered writes",
        kind="bool",
        shapes_store=False,
        cli_help="write array data around the page cache (O_DIRECT) where possible (default: on)",
    )
    parallel_inflate: bool | None = option(
        None,
        help="inflate a large member on cores the run leaves idle (fewer archives than cores), "
        "with rapidgzip: about 1.25x faster for one huge archive, for ~40-100 MB more memory; a "
        "compressed store keeps one core for its writer. null (auto): members of 64 MiB to "
        "2 GiB deflated (rapidgzip keeps an index that grows with the member); true: every "
        "member of 64 MiB+; false: never",
        kind="bool",
        nullable=True,
        shapes_store=False,
        cli_help="inflate a large member on idle cores (rapidgzip): faster for one huge "
        "archive, more memory (default: auto, members of 64 MiB-2 GiB with uncompressed output)",
    )
    # Set by the run from parallel_inflate: the spare cores each task may inflate on.
    inflate_threads: int = option(
        1,
        help="cores a task inflates one member on",
        kind="positive_int",
        shapes_store=False,
        internal=True,
    )
    debug: bool = option(
        False,
        help="keep tracebacks of failures (the CLI's --debug)",
        kind="bool",
        shapes_store=False,
        parser=False,
    )


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

    @classmethod
    def of(cls, task: Task, status: str, **fields: Any) -> Result:
        """A task's Result: where it came from and went (archive, store, relpath, format)
        taken from the task, and the process that made it."""
        fields.setdefault("pid", os.getpid())
        return cls(
            archive=task.archive,
            store=task.store,
            relpath=task.relpath,
            status=status,
            format=task.options.format,
            **fields,
        )

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
