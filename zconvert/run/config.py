"""RunConfig: one run's settings from YAML and flags, merged and validated before any work.

Every key is declared once, as a field of RunConfig (the run's own) or of ConvertOptions (what
workers get), see core/options.py; OPTIONS lists them in order and KEYS by name, and the flags,
`zconvert config --example`, docs/CONFIG.md and the JSON Schema are built from them. Errors
name the key and the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..core.convert_options import ConvertOptions, default_chunk_rows
from ..core.dtypes import dtype_itemsize, parse_dtype, parse_shape
from ..core.errors import ConfigError
from ..core.options import Option, declared_options, option
from ..core.storage import as_path
from .member_rules import parse_member_rules


@dataclass(frozen=True)
class RunConfig:
    """A validated run: where to read, where to write, how to convert and with what engine.
    Its fields declare the run's own options (ConvertOptions declares those workers get)."""

    inputs: tuple[str, ...] = option(
        help="archives (.zip, .npz or any ZIP named explicitly) or folders, searched recursively "
        "for *.zip and *.npz (any letter case)",
        kind="paths",
        shapes_store=False,
        example=["data/seed"],
        flag="inputs",
        cli_help="archives or folders (searched for *.zip and *.npz)",
    )
    output: str = option(
        help="output folder or URL (s3://bucket/out); stores and manifest.json go here",
        kind="path",
        shapes_store=False,
        example="out/seed",
        short_flag="-o",
        cli_help="output folder",
    )
    options: ConvertOptions = field(default_factory=ConvertOptions, metadata={"nested": True})
    workers: int | None = option(
        None,
        help="worker processes; default: CPU count",
        kind="positive_int",
        nullable=True,
        shapes_store=False,
        example=2,
        cli_help="worker processes (default: CPU count)",
    )
    executor: str = option(
        "auto",
        help="auto (default: the local pool; in-process for one archive or under 16 MiB) | local "
        "(pool) | serial (in-process, for debugging) | dask (dask.distributed)",
        kind="choice",
        choices=("auto", "local", "serial", "dask"),
        shapes_store=False,
        cli_help="auto (default), local (process pool), serial or dask",
    )
    scheduler: str | None = option(
        None,
        help="dask scheduler address (tcp://host:8786); default: a LocalCluster for the run",
        kind="text",
        nullable=True,
        shapes_store=False,
        metavar="tcp://HOST:PORT",
        cli_help="dask scheduler address, tcp://HOST:PORT (with --executor dask; default: a "
        "LocalCluster)",
    )
    storage_options: dict[str, Any] = option(
        help="fsspec options for URL inputs/outputs, e.g. {client_kwargs: {endpoint_url: ...}}",
        kind="mapping",
        shapes_store=False,
        default_factory=dict,
        repr=False,  # credentials
        example={},
        metavar="JSON",
        cli_help="fsspec options for s3:// and other URLs, as JSON: '{\"anon\": false}'",
    )
    overwrite: bool = option(
        False,
        help="redo every store even if it is complete and up to date",
        kind="bool",
        shapes_store=False,
        cli_help="redo every store",
    )
    prune: bool = option(
        False,
        help="delete orphan stores: those whose archive is no longer among the inputs (without "
        "it they are left on disk, out of the manifest's views, and named by plan and convert)",
        kind="bool",
        shapes_store=False,
        cli_help="delete orphan stores, whose archives are no longer among the inputs",
    )

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
        to_workers = {o.name for o in OPTIONS if o.to_workers}
        options = replace(ConvertOptions(), **{k: v for k, v in clean.items() if k in to_workers})
        # A reference file copies nothing, so no codec applies: contiguous is one chunk a member.
        if options.contiguous and options.codec != "none" and not options.refers:
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
        rest = {k: v for k, v in clean.items() if k not in to_workers}
        return cls(options=options, **rest)


def _ordered(run: list[Option], convert: list[Option]) -> list[Option]:
    """inputs and output, then how a store is made, then how the run goes."""
    head = [o for o in run if o.name in ("inputs", "output")]
    return [*head, *(o for o in convert if not o.internal), *(o for o in run if o not in head)]


# Every option a run file or the command line can set, in the order the docs list them.
OPTIONS: list[Option] = _ordered(
    declared_options(RunConfig, to_workers=False), declared_options(ConvertOptions, True)
)
KEYS: dict[str, Option] = {o.name: o for o in OPTIONS}
EXECUTORS: tuple[str, ...] = KEYS["executor"].choices


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


def _path(value: Any, key: str, source: str | None) -> str:
    return as_path(_expect(value, (str, os.PathLike), key, source, "a path"))


def _validate(key: str, value: Any, source: str | None) -> Any:
    """Check and normalise one key's value by its declared kind; ConfigError names the key
    and the source."""
    opt = KEYS.get(key)
    if opt is None or opt.internal:
        raise ConfigError(key, f"unknown key; known keys are {', '.join(KEYS)}", source)
    kind = opt.kind
    if opt.nullable and (value is None or (kind == "bool" and value == "auto")):
        return None  # unset: the automatic choice
    if kind == "bool":
        what = "true, false or null (auto)" if opt.nullable else "true or false"
        return _expect(value, bool, key, source, what)
    if kind == "positive_int":
        return _positive_int(value, key, source)
    if kind == "ratio":
        _expect(value, (int, float), key, source, "a number")
        if value <= 1:
            raise ConfigError(key, f"{value} must be greater than 1", source)
        return float(value)
    if kind == "choice":
        return _choice(value, key, source, opt.choices)
    if kind == "text":
        return _expect(value, str, key, source, f"a text such as {opt.metavar or 'abc'}")
    if kind == "dtype":
        return parse_dtype(value, key, source)
    if kind == "shape":
        return parse_shape(value, key, source)
    if kind == "globs":
        if isinstance(value, str):
            value = [value]
        _expect(value, (list, tuple), key, source, "a list of globs such as ['*.bin']")
        if not all(isinstance(v, str) and v for v in value):
            raise ConfigError(key, f"{value!r} must hold non-empty glob strings", source)
        return tuple(value)
    if kind == "members":
        return parse_member_rules(value, source)
    if kind == "mapping":
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise ConfigError(key, f"{value!r} is not a mapping of option names to values", source)
        return dict(value)
    if kind == "paths":
        if isinstance(value, (str, os.PathLike)):
            value = [value]
        _expect(value, (list, tuple), key, source, "a list of paths")
        if not value:
            raise ConfigError(key, "no inputs given", source)
        return tuple(_path(v, key, source) for v in value)
    if kind == "path":
        return _path(value, key, source)
    raise AssertionError(f"no check for option kind {kind!r}")  # KINDS and this list agree


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
    if options.format == "icechunk":
        import importlib.util

        if importlib.util.find_spec("icechunk") is None:
            raise ConfigError(
                "format",
                "icechunk needs the icechunk package: pip install 'zconvert[icechunk]'",
                source,
            )


def _check_shards(
    options: ConvertOptions, shard_rows: int, row_bytes: int, source: str | None
) -> None:
    """Shards are Zarr 3's way to pack many chunks into one file: whole chunks each."""
    if options.format != "zarr" or options.zarr_format != 3:
        layout = {"zarr": "Zarr 2", "hdf5": "HDF5"}.get(options.format, "a reference file")
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
