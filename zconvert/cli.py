"""The `zconvert` command: argument parsing and printing only; the work happens in run.py.

Exit status: 0 all converted, 1 any archive failed, 2 usage or config error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from ._version import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

log = logging.getLogger("zconvert")

CONVERT_EXAMPLES = """\
examples:
  zconvert convert data/ -o out/                      # every *.zip below data/, Zarr 3, blosc-lz4
  zconvert convert a.zip b.zip -o out/ --format hdf5 --codec none   # mappable HDF5
  zconvert convert --config configs/seed.yaml --workers 4           # a YAML run, one flag overridden
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit 2, like every usage error
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _add_convert_options(p: argparse.ArgumentParser) -> None:
    S = argparse.SUPPRESS  # unset flags stay absent, so YAML values are not overridden
    p.add_argument("inputs", nargs="*", default=S, help="archives or folders (searched for *.zip)")
    p.add_argument("-o", "--output", default=S, help="output folder")
    p.add_argument("--config", default=None, help="a YAML run file; flags override its keys")
    p.add_argument(
        "--format", default=S, choices=["zarr", "hdf5"], help="store format (default zarr)"
    )
    p.add_argument(
        "--zarr-format", default=S, type=int, choices=[2, 3], help="Zarr format (default 3)"
    )
    p.add_argument("--dtype", default=S, help="numpy dtype of the blobs (default <f4)")
    p.add_argument(
        "--shape", default=S, help="shape of each member, -1 first = inferred (default -1,4)"
    )
    p.add_argument(
        "--chunk-rows", default=S, type=int, help="rows per chunk (default ~4 MiB chunks)"
    )
    p.add_argument("--codec", default=S, help="none, blosc-lz4 (default), blosc-zstd, zstd, gzip")
    p.add_argument("--workers", default=S, type=int, help="worker processes (default: CPU count)")
    p.add_argument("--executor", default=S, help="local (default), serial or dask")
    p.add_argument(
        "--scheduler",
        default=S,
        help="dask scheduler address, tcp://HOST:PORT (with --executor dask; default: a LocalCluster)",
    )
    p.add_argument("--overwrite", default=S, action="store_true", help="redo every store")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="zconvert",
        description="Convert ZIP archives of raw float32 blobs into per-file Zarr or HDF5 stores.",
    )
    parser.add_argument("--version", action="version", version=_version_text())
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="more log output")
    common.add_argument("--debug", action="store_true", help="tracebacks for every error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    convert = sub.add_parser(
        "convert",
        parents=[common],
        help="convert archives into stores",
        description="Convert every archive into its own store under OUT, in parallel.",
        epilog=CONVERT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_convert_options(convert)
    return parser


def _version_text() -> str:
    from .inflate import backend_summary

    return f"zconvert {__version__} ({backend_summary()})"


def _failure_line(result: Any) -> str:
    where = f"{result.archive}: {result.member}" if result.member else result.archive
    return f"zconvert: failed: {where}: {result.error}"


def _cmd_convert(args: argparse.Namespace) -> int:
    from .config import build_config
    from .run import run

    overrides = {
        k: v
        for k, v in vars(args).items()
        if k not in ("command", "config", "verbose", "debug", "func")
    }
    if "inputs" in overrides and not overrides["inputs"]:
        del overrides["inputs"]
    if args.debug:
        overrides["debug"] = True
    config = build_config(args.config, **overrides)

    def on_result(result: Any) -> None:
        if result.status == "failed":
            print(_failure_line(result), file=sys.stderr, flush=True)
            if result.traceback:
                print(result.traceback, file=sys.stderr)
        else:
            log.info("%s: %s -> %s", result.status, result.archive, result.store)

    report = run(config, on_result)
    print(
        f"zconvert: {len(report.converted)} converted, {len(report.skipped)} skipped, "
        f"{len(report.failed)} failed; {report.bytes_out / 1e6:.1f} MB in {report.seconds:.2f} s "
        f"-> {report.output}",
        file=sys.stderr,
    )
    return EXIT_OK if report.ok else EXIT_FAILED


COMMANDS = {"convert": _cmd_convert}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING,
        format="zconvert: %(message)s",
    )
    from .errors import ConfigError, ZconvertError

    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        if args.debug:
            raise
        print(f"zconvert: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ZconvertError as exc:
        if args.debug:
            raise
        print(f"zconvert: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(
            "zconvert: interrupted; finished stores are kept, partial ones removed", file=sys.stderr
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
