"""How every archive of a run is converted: ConvertOptions, whose fields declare the options
workers get (core/options.py), and the chunk size they resolve to. Tasks carry one."""

from __future__ import annotations

import math
from dataclasses import dataclass

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
        help="zarr | hdf5 | references (a kerchunk reference file per archive over its stored "
        "members) | icechunk (those files, and an Icechunk repository at OUT of them)",
        kind="choice",
        choices=("zarr", "hdf5", "references", "icechunk"),
        shapes_store=True,
        cli_help="store format (default zarr); references: a kerchunk file per archive, "
        "pointing at its stored members (nothing copied); icechunk: those, and an Icechunk "
        "repository at OUT with a group per archive",
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
        "(zconvert.open_memmap); needs codec none. HDF5 with codec none is always mappable. "
        "references: one chunk referred to per member",
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

    @property
    def refers(self) -> bool:
        """Whether stores refer to the archives' stored members instead of copying them."""
        return self.format in REFERENCE_FORMATS


# Formats whose stores refer to the archives' stored members instead of copying them.
REFERENCE_FORMATS = ("references", "icechunk")


def run_chunk_rows(options: ConvertOptions) -> int:
    """chunk_rows as it takes effect for the run's dtype and shape (members whose header or
    `members:` rule gives another row size get their own default)."""
    from .dtypes import canonical_dtype, dtype_itemsize  # no numpy: the parent never needs it

    row_bytes = dtype_itemsize(canonical_dtype(options.dtype)) * math.prod(options.shape[1:])
    return options.chunk_rows or default_chunk_rows(row_bytes)
