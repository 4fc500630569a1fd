"""RunConfig: one run's settings from YAML and flags, merged and validated before any work.

Every key is documented in KEYS (name -> help); `zconvert config --example` and the README
are built from the same table. Errors name the key and the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from ..core.dtypes import dtype_itemsize, parse_dtype, parse_shape
from ..core.errors import ConfigError
from ..core.records import ConvertOptions, default_chunk_rows
from ..core.storage import as_path
from ..sinks.codecs import PRESETS
from .member_rules import parse_member_rules

# key -> (example value, one-line documentation). The single place every key is described.
KEYS: dict[str, tuple[Any, str]] = {
    "inputs": (
        ["data/seed"],
        "archives (.zip, .npz or any ZIP named explicitly) or folders, searched recursively "
        "for *.zip and *.npz (any letter case)",
    ),
    "output": (
        "out/seed",
        "output folder or URL (s3://bucket/out); stores and manifest.json go here",
    ),
    "format": ("zarr", "zarr | hdf5"),
    "zarr_format": (3, "2 | 3 (Zarr only; 2 for older readers)"),
    "dtype": ("<f4", "numpy dtype of the raw blobs, with byte order (.npy members: their header)"),
    "shape": (
        [-1, 4],
        "shape of each raw member; -1 first means rows inferred from its size "
        "(.npy members: their header)",
    ),
    "include": (
        [],
        "member paths to convert, as globs ('*' crosses '/'; a glob without '/' also matches "
        "the file name alone, e.g. '*.bin'); default: every data member. Skipped members are "
        "listed in the manifest; macOS/Windows/JAR metadata (__MACOSX/, ._*, .DS_Store, "
        "Thumbs.db, desktop.ini, META-INF/MANIFEST.MF) is always skipped; documents, text and "
        "images (.txt, .md, .json, .csv, .xml, .yaml, .pdf, .png... see the README) unless a "
        "pattern here matches them",
    ),
    "exclude": ([], "member paths to skip, as globs (after include), e.g. ['*.json', 'README*']"),
    "members": (
        [{"match": "*timestamps*", "dtype": "<i8", "shape": [-1]}],
        "per-member dtype and shape for raw members: a list of {match: GLOB, dtype, shape}, "
        "first match wins, unmatched members use dtype and shape; .npy members describe "
        "themselves (a rule contradicting their header is refused)",
    ),
    "chunk_rows": (262144, "rows per chunk; default: about 4 MiB per chunk"),
    "shard_rows": (
        None,
        "Zarr 3: rows per shard, a multiple of chunk_rows (e.g. 2097152 = 8 chunks of 262144): "
        "each shard file holds several chunks and an index, so many small chunks make few "
        "files; at most 1 GiB per shard; default: no shards, one file per chunk",
    ),
    "codec": ("blosc-lz4", " | ".join(PRESETS)),
    "contiguous": (
        False,
        "Zarr: store each array as one uncompressed chunk that readers can memory-map "
        "(zconvert.open_memmap); needs codec none. HDF5 with codec none is always mappable",
    ),
    "workers": (2, "worker processes; default: CPU count"),
    "executor": (
        "auto",
        "auto (default: the local pool; in-process for one archive or under 16 MiB) | local (pool) "
        "| serial (in-process, for debugging) | dask (dask.distributed)",
    ),
    "scheduler": (
        None,
        "dask scheduler address (tcp://host:8786); default: a LocalCluster for the run",
    ),
    "storage_options": (
        {},
        "fsspec options for URL inputs/outputs, e.g. {client_kwargs: {endpoint_url: ...}}",
    ),
    "slab_bytes": (8 << 20, "bytes inflated and written at a time per worker (whole chunks)"),
    "max_ratio": (
        1000.0,
        "refuse members whose inflated/deflated size ratio is higher (decompression bombs); "
        "unset: 1000, checked on members over 64 MiB only (all-zero data deflates ~1030:1)",
    ),
    "max_member_bytes": (1 << 40, "refuse members larger than this when inflated"),
    "overwrite": (False, "redo every store even if it is complete and up to date"),
    "prune": (
        False,
        "delete orphan stores: those whose archive is no longer among the inputs (without it "
        "they are left on disk, out of the manifest's views, and named by plan and convert)",
    ),
    "durable": (
        False,
        "fsync every store before publishing it: survives power loss, costs a disk flush per store "
        "(without it a store is still never incomplete after a crash or kill of zconvert)",
    ),
    "direct_io": (
        True,
        "write array data with O_DIRECT where the file system allows it: far less kernel CPU "
        "than the page cache; false for ordinary buffered writes",
    ),
    "parallel_inflate": (
        None,
        "inflate a large member on cores the run leaves idle (fewer archives than cores), with "
        "rapidgzip: about 1.25x faster for one huge archive, for ~40-100 MB more memory; a "
        "compressed store keeps one core for its writer. null (auto): members of 64 MiB to 2 GiB "
        "deflated (rapidgzip keeps an index that grows with the member); true: every member of "
        "64 MiB+; false: never",
    ),
    "debug": (False, "keep tracebacks of failures (the CLI's --debug)"),
}

EXECUTORS = ("auto", "local", "serial", "dask")


def _expect(
    value: Any, types: type | tuple[type, ...], key: str, source: str | None, what: str
) -> Any:
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise ConfigError(key, f"{value!r} is not {what}", source)
    if not isinstance(value, types):
        raise ConfigError(key, f"{value!r} is not {what}", source)
    return value


def _positive_int(value: Any, key: str, source: str | None) -> int:
    _expect(value, int, key, source, "a whole number")
    if value <= 0:
        raise ConfigError(key, f"{value} must be a positive whole number", source)
    return value


def _choice(value: Any, key: str, source: str | None, choices: tuple[Any, ...]) -> Any:
    if value not in choices:
        raise ConfigError(key, f"{value!r} is not one of {', '.join(map(str, choices))}", source)
    return value


def _validate(key: str, value: Any, source: str | None) -> Any:
    """Check and normalise one key's value; ConfigError names the key and the source."""
    if key == "inputs":
        if isinstance(value, (str, os.PathLike)):
            value = [value]
        _expect(value, (list, tuple), key, source, "a list of paths")
        if not value:
            raise ConfigError(key, "no inputs given", source)
        return tuple(as_path(_expect(v, (str, os.PathLike), key, source, "a path")) for v in value)
    if key == "output":
        return as_path(_expect(value, (str, os.PathLike), key, source, "a path"))
    if key == "format":
        return _choice(value, key, source, ("zarr", "hdf5"))
    if key == "zarr_format":
        return _choice(value, key, source, (2, 3))
    if key == "dtype":
        return parse_dtype(value, key, source)
    if key == "shape":
        return parse_shape(value, key, source)
    if key in ("chunk_rows", "shard_rows", "workers", "slab_bytes", "max_member_bytes"):
        return (
            None
            if value is None and key in ("chunk_rows", "shard_rows", "workers")
            else _positive_int(value, key, source)
        )
    if key == "codec":
        return _choice(value, key, source, tuple(PRESETS))
    if key == "executor":
        return _choice(value, key, source, EXECUTORS)
    if key == "scheduler":
        if value is None:
            return None
        return _expect(value, str, key, source, "an address such as tcp://127.0.0.1:8786")
    if key == "storage_options":
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise ConfigError(key, f"{value!r} is not a mapping of option names to values", source)
        return dict(value)
    if key == "max_ratio":
        if value is None:
            return None
        _expect(value, (int, float), key, source, "a number")
        if value <= 1:
            raise ConfigError(key, f"{value} must be greater than 1", source)
        return float(value)
    if key == "parallel_inflate":
        if value is None or value == "auto":
            return None
        return _expect(value, bool, key, source, "true, false or null (auto)")
    if key in ("include", "exclude"):
        if isinstance(value, str):
            value = [value]
        _expect(value, (list, tuple), key, source, "a list of globs such as ['*.bin']")
        if not all(isinstance(v, str) and v for v in value):
            raise ConfigError(key, f"{value!r} must hold non-empty glob strings", source)
        return tuple(value)
    if key == "members":
        return parse_member_rules(value, source)
    if key in ("overwrite", "prune", "debug", "durable", "contiguous", "direct_io"):
        return _expect(value, bool, key, source, "true or false")
    raise ConfigError(key, f"unknown key; known keys are {', '.join(KEYS)}", source)


@dataclass(frozen=True)
class RunConfig:
    """A validated run: where to read, where to write, how to convert and with what engine."""

    inputs: tuple[str, ...]
    output: str
    options: ConvertOptions = field(default_factory=ConvertOptions)
    workers: int | None = None
    executor: str = "auto"
    overwrite: bool = False
    prune: bool = False
    scheduler: str | None = None
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str | None = None) -> RunConfig:
        """Validate `values` (YAML keys); unknown keys and bad values raise ConfigError."""
        clean = _validated(values, source)
        if "inputs" not in clean:
            raise ConfigError(
                "inputs",
                "no archives or folders given: zconvert convert DATA... -o OUT "
                "(or inputs: in a YAML run file)",
                source,
                name="",
            )
        if "output" not in clean:
            raise ConfigError(
                "output",
                "no output folder given: add -o OUT (or output: in a YAML run file)",
                source,
                name="",
            )
        if clean.get("scheduler") and clean.get("executor", "auto") != "dask":
            raise ConfigError(
                "scheduler", "is only used by the dask executor; add --executor dask", source
            )
        option_names = {f.name for f in fields(ConvertOptions)}
        options = replace(ConvertOptions(), **{k: v for k, v in clean.items() if k in option_names})
        if options.contiguous and options.codec != "none":
            raise ConfigError(
                "contiguous",
                f"needs codec none (a mapped chunk cannot be compressed), not {options.codec}; "
                "add --codec none",
                source,
            )
        _check_layout(options, source)
        for rule in options.members:  # each rule's layout must be possible too
            _check_layout(
                replace(
                    options, dtype=rule.dtype or options.dtype, shape=rule.shape or options.shape
                ),
                source,
            )
        rest = {k: v for k, v in clean.items() if k not in option_names}
        return cls(options=options, **rest)


MAX_CHUNK_BYTES = (1 << 31) - 1  # Blosc's limit per chunk; HDF5's is 4 GiB
MAX_SHARD_BYTES = 1 << 30  # a worker holds two slabs of at least one shard each


def _check_layout(options: ConvertOptions, source: str | None) -> None:
    """Values that are each valid but impossible together: refused before any work."""
    import math

    row_bytes = dtype_itemsize(options.dtype) * math.prod(options.shape[1:])
    if row_bytes > options.max_member_bytes:
        raise ConfigError(
            "shape",
            f"one row of {list(options.shape)} x {options.dtype} is {row_bytes} bytes, over "
            f"max_member_bytes={options.max_member_bytes}: no member can hold it",
            source,
        )
    if options.shape[0] != -1 and options.shape[0] * row_bytes > options.max_member_bytes:
        raise ConfigError(
            "shape",
            f"{list(options.shape)} x {options.dtype} is {options.shape[0] * row_bytes} bytes, "
            f"over max_member_bytes={options.max_member_bytes}",
            source,
        )
    chunk_rows = options.chunk_rows or 1  # the default is at least one row
    if chunk_rows * row_bytes > MAX_CHUNK_BYTES:
        raise ConfigError(
            "chunk_rows" if options.chunk_rows else "shape",
            f"{chunk_rows} rows of {row_bytes} bytes make chunks of "
            f"{chunk_rows * row_bytes} bytes, over the 2 GiB a chunk may hold",
            source,
        )
    if options.shard_rows is not None:
        _check_shards(options, options.shard_rows, row_bytes, source)


def _check_shards(
    options: ConvertOptions, shard_rows: int, row_bytes: int, source: str | None
) -> None:
    """Shards are Zarr 3's way to pack many chunks into one file: whole chunks each."""
    if options.format != "zarr" or options.zarr_format != 3:
        layout = "HDF5" if options.format != "zarr" else "Zarr 2"
        fix = "--format zarr" if options.format != "zarr" else "--zarr-format 3"
        raise ConfigError(
            "shard_rows",
            f"shards are a Zarr 3 layout, {layout} has none; remove shard_rows or use {fix}",
            source,
        )
    if options.contiguous:
        raise ConfigError(
            "shard_rows",
            "a contiguous array is one plain chunk file and cannot be sharded; "
            "remove shard_rows or contiguous",
            source,
        )
    chunk_rows = options.chunk_rows or default_chunk_rows(row_bytes)
    chunks = (
        f"chunk_rows ({chunk_rows})"
        if options.chunk_rows
        else f"the default chunk_rows ({chunk_rows} for {row_bytes}-byte rows)"
    )
    chunk_bytes = chunk_rows * row_bytes
    max_rows = MAX_SHARD_BYTES // chunk_bytes * chunk_rows  # the largest shard allowed
    if max_rows == 0:
        raise ConfigError(
            "shard_rows",
            f"chunks of {chunk_bytes} bytes are over the 1 GiB a shard may hold; "
            "lower chunk_rows or remove shard_rows",
            source,
        )
    if shard_rows * row_bytes > MAX_SHARD_BYTES:
        raise ConfigError(
            "shard_rows",
            f"{shard_rows} rows of {row_bytes} bytes make shards of {shard_rows * row_bytes} "
            f"bytes, over the 1 GiB a shard may hold (a worker keeps two in memory); "
            f"use at most {max_rows}",
            source,
        )
    if shard_rows % chunk_rows:
        lower = shard_rows // chunk_rows * chunk_rows
        nearest = [str(n) for n in (lower, lower + chunk_rows) if 0 < n <= max_rows]
        raise ConfigError(
            "shard_rows",
            f"{shard_rows} is not a multiple of {chunks}; use {' or '.join(nearest)}",
            source,
        )


def _validated(values: Mapping[str, Any], source: str | None) -> dict[str, Any]:
    unknown = sorted(str(k) for k in values if k not in KEYS)
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise ConfigError(
            ", ".join(unknown), f"unknown key{plural}; known keys are {', '.join(KEYS)}", source
        )
    return {k: _validate(k, v, source) for k, v in values.items()}


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML run file with the safe loader; the top level must be a mapping."""
    import yaml

    path = as_path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(None, "config file not found", path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(None, f"not valid YAML{where}", path) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(None, "the top level must be a mapping of keys to values", path)
    return data


def build_config(config_file: str | os.PathLike[str] | None = None, **overrides: Any) -> RunConfig:
    """Merge a YAML file (if any) with explicit overrides (flags win) and validate the whole."""
    values: dict[str, Any] = {}
    source = None
    if config_file is not None:
        source = as_path(config_file)
        values.update(_validated(load_yaml(source), source))  # errors blame the file
    values.update(_validated({k: v for k, v in overrides.items() if v is not None}, None))
    return RunConfig.from_mapping(values, source)
