"""The `zconvert` command line: subcommands, flags, help texts and examples.

Parsing only; commands.py runs the commands. Unset convert flags stay absent (SUPPRESS), so a
YAML run's values are overridden only by flags actually given.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .._version import __version__
from ..core.storage import as_path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2  # shell-friendly exit status

CONFIG_DOC = "docs/CONFIG.md"

MAIN_EXAMPLES = f"""\
examples:
  zconvert convert data/ -o out/                 # every *.zip and *.npz below data/, Zarr 3
  zconvert plan --config configs/seed.yaml       # dry run of a YAML run
  zconvert inspect out/                          # what a run wrote
  zconvert config --example > run.yaml           # every key, annotated

exit status: 0 ok, 1 some archives failed, 2 usage or configuration error.
Every run-file key is documented in {CONFIG_DOC} (`zconvert config --example` prints them).
Use `zconvert COMMAND --help` for each command's options.
"""

CONVERT_EXAMPLES = f"""\
examples:
  zconvert convert data/ -o out/                      # every *.zip and *.npz below data/, Zarr 3
  zconvert convert a.zip b.zip -o out/ --format hdf5 --codec none   # mappable HDF5
  zconvert convert data/ -o out/ --codec none --contiguous          # mappable Zarr
  zconvert convert data/ -o out/ --chunk-rows 1000 --shard-rows 64000  # small chunks, few files
  zconvert convert --config configs/seed.yaml --workers 4           # a YAML run, one flag overridden
  zconvert convert data/ -o out/ --dry-run            # what would happen, writing nothing
  zconvert convert data/ -o out/ --json > report.json # machine-readable report on stdout

A progress bar is drawn on stderr when it is a terminal (not with --quiet); a summary follows.
Run-file keys and their flags: {CONFIG_DOC}.
exit status: 0 all converted, 1 some failed (one line each on stderr), 2 usage/config error.
"""

PLAN_EXAMPLES = f"""\
examples:
  zconvert plan data/ -o out/                    # convert, skip or refuse, per archive
  zconvert plan --config configs/seed.yaml --json

Only each archive's central directory and its members' first bytes (.npy headers) are read;
nothing is written, not even OUT.
Run-file keys and their flags: {CONFIG_DOC}.
exit status: 0 everything would convert, 1 some archives would be refused, 2 usage/config error.
"""

INSPECT_EXAMPLES = """\
examples:
  zconvert inspect out/archive_00.zarr     # one row per array: shape, dtype, chunks, codec, ratio, CRC
  zconvert inspect out/                    # manifest summary and one line per store
  zconvert inspect out/ --arrays           # ... and every store's array table
  zconvert inspect out/archive_00.h5 --json

exit status: 0 ok, 1 the path is not a store or output folder.
"""

VERIFY_EXAMPLES = """\
examples:
  zconvert verify out/                     # every store the manifest lists, every array's CRC32
  zconvert verify out/archive_00.zarr      # one store
  zconvert verify out/ --sources           # also re-read the archives and compare

exit status: 0 all verified, 1 any problem (one line each on stdout).
"""

CONFIG_EXAMPLES = f"""\
examples:
  zconvert config --example > run.yaml     # every key with an example value and its meaning
  zconvert config --check configs/seed.yaml
  zconvert config --markdown > {CONFIG_DOC}
  zconvert config --schema > docs/zconvert.schema.json

exit status: 0 valid ("ok"), 2 invalid (one line naming the file and the key).
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit 2, like every usage error
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _json_mapping(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not JSON: {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"not a JSON object: {text!r}")
    return value


def _json_list(text: str) -> list[Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not JSON: {text!r}") from None
    if not isinstance(value, list):
        raise argparse.ArgumentTypeError(f"not a JSON list: {text!r}")
    return value


def _add_convert_options(p: argparse.ArgumentParser) -> None:
    """One flag per declared option (run/config.OPTIONS), in the order the docs list them."""
    from ..run.config import OPTIONS

    S = argparse.SUPPRESS  # unset flags stay absent, so YAML values are not overridden
    for opt in OPTIONS:
        if not opt.parser or opt.flag_name is None:
            continue
        if opt.kind == "paths":  # the positional inputs
            p.add_argument(opt.name, nargs="*", default=S, help=opt.cli_help or opt.help)
            p.add_argument(
                "--config", default=None, help="a YAML run file; flags override its keys"
            )
            continue
        names = [n for n in (opt.short_flag, opt.flag_name) if n]
        p.add_argument(*names, default=S, help=opt.cli_help or opt.help, **_flag_kind(opt))
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


def _flag_kind(opt: Any) -> dict[str, Any]:
    """How argparse reads an option's value, from its declared kind."""
    if opt.kind == "bool":
        if opt.default is False and not opt.nullable:
            return {"action": "store_true"}
        return {"action": argparse.BooleanOptionalAction}  # --direct-io / --no-direct-io
    if opt.kind == "globs":
        return {"action": "append", "metavar": opt.metavar}
    if opt.kind == "members":
        return {"type": _json_list, "metavar": opt.metavar}
    if opt.kind == "mapping":
        return {"type": _json_mapping, "metavar": opt.metavar}
    if opt.kind == "choice":
        return {"type": type(opt.choices[0]), "choices": opt.choices}
    if opt.kind == "positive_int":
        return {"type": int}
    if opt.kind == "ratio":
        return {"type": float}
    return {"metavar": opt.metavar} if opt.metavar else {}


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("logging")
    group.add_argument("-v", "--verbose", action="store_true", help="more log output")
    group.add_argument("--debug", action="store_true", help="debug log and tracebacks for errors")
    group.add_argument("--log-file", metavar="FILE", help="also write a detailed log to FILE")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="zconvert",
        description="Convert ZIP archives of raw float32 blobs into per-file Zarr or HDF5 stores.",
        epilog=MAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action=_VersionAction, nargs=0, help="show the version and exit"
    )
    common = _common_options()
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    raw = argparse.RawDescriptionHelpFormatter

    convert = sub.add_parser(
        "convert",
        parents=[common],
        help="convert archives into stores (progress bar on a terminal, summary at the end)",
        description="Convert every archive into its own store under OUT, in parallel.",
        epilog=CONVERT_EXAMPLES,
        formatter_class=raw,
    )
    _add_convert_options(convert)
    convert.add_argument(
        "-n", "--dry-run", action="store_true", help="show what would happen; write nothing"
    )
    convert.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar and no summary; errors only"
    )

    plan = sub.add_parser(
        "plan",
        parents=[common],
        help="what convert would do, and why, writing nothing (= convert --dry-run)",
        description="For each archive: would it be converted, skipped (up to date) or refused, "
        "and why. Reads central directories only; writes nothing.",
        epilog=PLAN_EXAMPLES,
        formatter_class=raw,
    )
    _add_convert_options(plan)

    inspect = sub.add_parser(
        "inspect",
        parents=[common],
        help="arrays of a store, or the manifest summary of an output folder",
        description="For a store: one row per array (name, shape, dtype, chunks, codec, stored "
        "bytes, ratio, source member, CRC32), read from the store itself. For an output folder "
        "(it holds manifest.json): the manifest summary and one line per store.",
        epilog=INSPECT_EXAMPLES,
        formatter_class=raw,
    )
    inspect.add_argument("path", metavar="STORE|OUT", help="a .zarr/.h5 store or an output folder")
    inspect.add_argument(
        "-a", "--arrays", action="store_true", help="for OUT: also every store's array table"
    )
    inspect.add_argument("--json", action="store_true", help="print JSON on stdout")

    config = sub.add_parser(
        "config",
        parents=[common],
        help="print an example run file, or check one",
        description=f"Run files are YAML; every key is documented in {CONFIG_DOC}.",
        epilog=CONFIG_EXAMPLES,
        formatter_class=raw,
    )
    what = config.add_mutually_exclusive_group(required=True)
    what.add_argument("--example", action="store_true", help="print an annotated run file")
    what.add_argument("--check", metavar="FILE", help="validate a run file")
    what.add_argument("--markdown", action="store_true", help=f"print {CONFIG_DOC}")
    what.add_argument(
        "--schema",
        action="store_true",
        help="print the JSON Schema of run files (docs/zconvert.schema.json), for editors",
    )

    verify = sub.add_parser(
        "verify",
        parents=[common],
        help="re-read stores and check every array's CRC32 and size",
        description="Re-read every array of each store (or of every store an output folder's "
        "manifest lists, or that a folder whose run was interrupted holds) and check its "
        "CRC32 and size against the source archive's record, on worker processes. "
        "Prints one line per problem; exit status 1 if there is any.",
        epilog=VERIFY_EXAMPLES,
        formatter_class=raw,
    )
    verify.add_argument(
        "paths",
        nargs="+",
        type=as_path,  # file:///abs/out is the folder /abs/out
        metavar="OUT|STORE",
        help="output folders or stores",
    )
    verify.add_argument(
        "--sources", action="store_true", help="also re-read the source archives and check them"
    )
    verify.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes that check stores (default: one per core)",
    )
    return parser


class _VersionAction(argparse.Action):
    """--version, its text made when asked: it names the inflate backends, whose import (3-4
    ms) a run's parent otherwise never needs."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        print(_version_text())  # to stdout, as argparse's own version action
        parser.exit()


def _version_text() -> str:
    from ..zipread.inflate import backend_summary

    return f"zconvert {__version__} ({backend_summary()})"
