"""Every option of a run declared once, as a dataclass field of the record that carries it
(ConvertOptions for what travels to workers, run.config.RunConfig for the run's own).

From the declarations come the command-line flags and their help (cli/parser.py), the checks of
YAML values and flags (run/config.py), `zconvert config --example`, docs/CONFIG.md and the JSON
Schema of run files (cli/configdoc.py), and which options a store's fingerprint holds
(run/fingerprint.py). Adding an option is one `option(...)` field; its `shapes_store` mark has no
default, so an option nobody marked cannot be declared.

Plain data only (no argparse, no YAML): the parent and every worker import this.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, field, fields
from typing import Any

# How a value is checked and parsed (run/config.py has one check per kind) and typed in the
# JSON Schema (cli/configdoc.py).
KINDS = (
    "bool",  # true | false
    "positive_int",  # a whole number > 0
    "ratio",  # a number > 1
    "choice",  # one of `choices`
    "text",  # a string
    "dtype",  # a numpy dtype with byte order, '<f4'
    "shape",  # [-1, 4], '-1,4' or '1000x4'
    "globs",  # a list of glob strings (one string is a list of one)
    "members",  # a list of {match, dtype, shape} rules
    "mapping",  # a mapping of names to values
    "paths",  # a list of paths or URLs (one is a list of one)
    "path",  # a path or URL
)

# How a store-shaping option is written into the store's fingerprint: "always", or only when
# it differs from its default ("unless_default": stores written before the option existed stay
# current), or only for Zarr stores ("zarr").
FINGERPRINT_RULES = ("always", "unless_default", "zarr")


class Option:
    """One option: its name (the YAML key and, with dashes, the flag), default, help and
    check, and what it does to a store. (A plain class, not a dataclass: every command builds
    the parser from these, and defining a 16-field frozen dataclass cost ~1 ms of start-up.)"""

    __slots__ = (
        "choices",
        "cli_help",
        "default",
        "example",
        "fingerprint",
        "flag",
        "help",
        "internal",
        "kind",
        "metavar",
        "name",
        "nullable",
        "parser",
        "shapes_store",
        "short_flag",
        "to_workers",
    )

    def __init__(
        self,
        name: str,
        default: Any,
        help: str,  # one line: --help, docs/CONFIG.md, `config --example`, the JSON Schema
        kind: str,  # one of KINDS
        shapes_store: bool,  # changing it changes what a store holds: a rerun redoes it
        to_workers: bool,  # a ConvertOptions field (True) or the run's own (RunConfig)
        example: Any = None,  # for `config --example` and docs; None: the default
        choices: tuple[Any, ...] = (),  # kind "choice"
        nullable: bool = False,  # null (None) is a value: "unset, take the automatic choice"
        fingerprint: str = "always",  # one of FINGERPRINT_RULES, for store-shaping options
        flag: str | None = "",  # "": --name-with-dashes; None: no flag (set otherwise)
        short_flag: str | None = None,  # "-o"
        metavar: str | None = None,
        cli_help: str | None = None,  # a shorter --help text, when `help` is long
        internal: bool = False,  # set by the run itself: no YAML key, no flag
        parser: bool = True,  # False: a flag every command shares adds it (--debug)
    ) -> None:
        self.name, self.default, self.help, self.kind = name, default, help, kind
        self.shapes_store, self.to_workers, self.example = shapes_store, to_workers, example
        self.choices, self.nullable, self.fingerprint = choices, nullable, fingerprint
        self.flag, self.short_flag, self.metavar = flag, short_flag, metavar
        self.cli_help, self.internal, self.parser = cli_help, internal, parser

    def __repr__(self) -> str:
        return f"Option({self.name!r}, default={self.default!r}, kind={self.kind!r})"

    @property
    def flag_name(self) -> str | None:
        if self.flag is None:
            return None
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def documented_example(self) -> Any:
        return self.default if self.example is None else self.example


def option(
    default: Any = MISSING,
    *,
    help: str,
    kind: str,
    shapes_store: bool,
    default_factory: Callable[[], Any] | None = None,
    repr: bool = True,
    **declared: Any,
) -> Any:
    """A dataclass field that declares an option (see Option for the arguments)."""
    if kind not in KINDS:
        raise ValueError(f"unknown option kind {kind!r}")
    meta = {"option": {"help": help, "kind": kind, "shapes_store": shapes_store, **declared}}
    if default_factory is not None:
        return field(default_factory=default_factory, repr=repr, metadata=meta)
    return field(default=default, repr=repr, metadata=meta)


def declared_options(record: type, to_workers: bool) -> list[Option]:
    """The options a dataclass declares, in field order. Fields without a declaration are
    refused: every field of these records is an option (or, marked `nested`, a record of
    options)."""
    found = []
    for f in fields(record):
        if f.metadata.get("nested"):
            continue
        meta = f.metadata.get("option")
        if meta is None:
            raise TypeError(f"{record.__name__}.{f.name} is not declared with option(...)")
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            default = None  # required (inputs, output)
        found.append(Option(name=f.name, default=default, to_workers=to_workers, **meta))
    return found
