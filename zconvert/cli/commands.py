"""The `zconvert` command: runs the subcommands parser.py defines and prints results.

Exit status: 0 all converted (or verified), 1 any archive failed (or was refused by a dry
run, or any verify problem, or the run verified or inspected did not finish), 2 usage or
config error, or OUT locked by another run, 130 interrupted (143 terminated), 141 stdout
closed by its reader. With --json every outcome prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from .parser import EXIT_FAILED, EXIT_OK, EXIT_USAGE, build_parser

log = logging.getLogger("zconvert")


def _failure_line(result: Any) -> str:
    where = f"{result.archive}: {result.member}" if result.member else result.archive
    return f"failed: {where}: {result.error}"


def _print_json(document: Any) -> None:
    json.dump(document, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


def _config_from(args: argparse.Namespace) -> Any:
    from ..core.errors import ConfigError
    from ..run.config import build_config
    from .configdoc import flag_for

    local = ("command", "config", "verbose", "debug", "log_file", "json", "dry_run", "quiet")
    overrides = {k: v for k, v in vars(args).items() if k not in local}
    if "inputs" in overrides and not overrides["inputs"]:
        del overrides["inputs"]
    if args.debug:
        overrides["debug"] = True
    try:
        config = build_config(args.config, **overrides)
    except ConfigError as exc:
        if exc.source is None and exc.key in overrides:  # a flag's value: name the flag
            raise ConfigError(exc.key, exc.reason, name=flag_for(exc.key)) from None
        raise
    log.debug("config: %s", config)
    return config


def _cmd_plan(args: argparse.Namespace) -> int:
    from ..run.dryrun import plan_lines, plan_run

    config = _config_from(args)
    planned = plan_run(config)
    if args.json:
        _print_json([p.to_dict() for p in planned])
    else:
        for line in plan_lines(planned, config.output, config.options.refers):
            print(line)
    return EXIT_FAILED if any(p.action == "refuse" for p in planned) else EXIT_OK


def _cmd_convert(args: argparse.Namespace) -> int:
    if args.dry_run:
        return _cmd_plan(args)
    from ..run.convert import run
    from .progress import ProgressBar, summary_lines, want_bar

    config = _config_from(args)
    bar = ProgressBar(want_bar(args.quiet))

    args.partial_results = []  # what --json reports if the run is interrupted

    def on_result(result: Any) -> None:
        args.partial_results.append(result)
        bar.update(result)
        if result.status == "failed":
            log.error("%s", _failure_line(result))
            if result.traceback:
                log.error("%s", result.traceback.rstrip())
        else:
            log.info(
                "%s: %s -> %s (%.2f s, pid %d)",
                result.status,
                result.archive,
                result.store,
                result.seconds,
                result.pid,
            )

    try:
        with bar.logging_redirected():
            report = run(config, on_result, on_plan=bar.start)
    finally:
        bar.close()
    if args.json:
        _print_json(report.to_dict())
    elif not args.quiet:
        for line in summary_lines(report):
            print(line, file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_FAILED


def _cmd_verify(args: argparse.Namespace) -> int:
    from ..run.verify import verify

    if args.workers is not None and args.workers < 1:
        log.error("error: --workers: %s is not a positive number of processes", args.workers)
        return EXIT_USAGE
    problems = verify(args.paths, sources=args.sources, workers=args.workers)
    for line in problems:
        print(line, flush=True)
    print(
        f"zconvert: verify: {len(problems)} problem{'s' if len(problems) != 1 else ''}",
        file=sys.stderr,
    )
    return EXIT_FAILED if problems else EXIT_OK


def _cmd_inspect(args: argparse.Namespace) -> int:
    from ..read.inspect import inspect_path, inspect_store
    from .inspect_text import output_lines, store_lines

    info = inspect_path(args.path)
    # A run that did not finish is shown, and exits 1: `inspect OUT && publish` stops there.
    status = EXIT_FAILED if info["kind"] == "output" and not info["complete"] else EXIT_OK
    if args.json:
        if info["kind"] == "output" and args.arrays:
            info["store_arrays"] = [
                inspect_store(s["store"]) for s in info["stores"] if s["status"] == "converted"
            ]
        _print_json(info)
        return status
    if info["kind"] == "store":
        print("\n".join(store_lines(info)))
        return status
    print("\n".join(output_lines(info)))
    if args.arrays:
        for s in info["stores"]:
            if s["status"] == "converted":
                print()
                print("\n".join(store_lines(inspect_store(s["store"]))))
    return status


def _cmd_config(args: argparse.Namespace) -> int:
    from .configdoc import config_markdown, example_yaml, schema_text

    if args.schema:
        sys.stdout.write(schema_text())
        return EXIT_OK
    if args.example:
        sys.stdout.write(example_yaml())
        return EXIT_OK
    if args.markdown:
        sys.stdout.write(config_markdown())
        return EXIT_OK
    from ..run.config import RunConfig, load_yaml

    RunConfig.from_mapping(load_yaml(args.check), args.check)
    print(f"ok: {args.check}")
    return EXIT_OK


COMMANDS = {
    "convert": _cmd_convert,
    "plan": _cmd_plan,
    "inspect": _cmd_inspect,
    "config": _cmd_config,
    "verify": _cmd_verify,
}


# numpy's OpenBLAS starts a thread per core when numpy loads, and each spins for about 0.1 s
# of CPU before it sleeps: loaded for all.h5 while the last archives convert, those threads
# took 90 ms of CPU from the workers (perf, 60 archives). Nothing the command runs uses BLAS.
SINGLE_THREAD_LIBRARIES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def configure_process() -> None:
    """Settings for a process that is the command's own (not a library caller's): numerical
    libraries loaded later start no thread pools. A value the user set is kept."""
    for name in SINGLE_THREAD_LIBRARIES:
        os.environ.setdefault(name, "1")


def _negative_values_attached(argv: list[str]) -> list[str]:
    """`--shape -1,3` as `--shape=-1,3`: argparse takes a value starting with '-' for a flag
    unless it is a plain negative number."""
    fixed: list[str] = []
    for arg in argv:
        if fixed and fixed[-1] in VALUE_MAY_START_WITH_DASH and arg.startswith("-"):
            fixed[-1] = f"{fixed[-1]}={arg}"
        else:
            fixed.append(arg)
    return fixed


VALUE_MAY_START_WITH_DASH = ("--shape",)


def main(argv: Sequence[str] | None = None) -> int:
    configure_process()
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(_negative_values_attached(argv))
    except SystemExit as exc:  # a usage error (argparse said why on stderr), or --help
        if exc.code == EXIT_USAGE and "--json" in argv:
            _print_json({"ok": False, "error": "usage error (see stderr)", "exit_status": 2})
        raise
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from .logs import configure_logging

    try:
        configure_logging(
            args.verbose, args.debug, args.log_file, quiet=getattr(args, "quiet", False)
        )
    except OSError as exc:
        print(f"zconvert: error: --log-file {args.log_file}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    from ..core.errors import ConfigError, ZconvertError

    if threading.current_thread() is threading.main_thread():
        global _COMMAND_PID
        _COMMAND_PID = os.getpid()
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return COMMANDS[args.command](args)
    except ZconvertError as exc:
        # One line; --debug adds the traceback, and a log file always gets it.
        log.error("error: %s", exc, exc_info=args.debug)
        if not args.debug:
            log.debug("traceback of the error above", exc_info=True)
        return _outcome(args, str(exc), EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILED)
    except KeyboardInterrupt as exc:
        message = (
            "interrupted; finished stores are kept and listed in the manifest, partial ones "
            "removed: run the same command again to resume"
        )
        log.error("%s", message)
        return _outcome(args, message, 143 if isinstance(exc, Terminated) else 130, True)
    except BrokenPipeError:
        # The reader of stdout left (`zconvert inspect OUT --json | head`): nothing more to
        # say, and nothing to flush at exit either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what `cat` or `git log` give when `head` stops reading


def _outcome(args: argparse.Namespace, error: str, status: int, interrupted: bool = False) -> int:
    """With --json, every outcome is one object on stdout, an error or an interruption too
    (with the results so far of an interrupted convert), so that a scheduler can parse it."""
    if getattr(args, "json", False):
        document: dict[str, Any] = {"ok": False, "error": error, "exit_status": status}
        partial = getattr(args, "partial_results", None) if interrupted else None
        if partial is not None:
            document["results"] = [r.to_dict() for r in partial]
            for status_name in ("converted", "skipped", "failed"):
                document[status_name] = sum(r.status == status_name for r in partial)
        try:
            _print_json(document)
            sys.stdout.flush()
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return status


class Terminated(KeyboardInterrupt):
    """SIGTERM (a job scheduler's stop, `kill`): ends a run the way Ctrl-C does."""


_COMMAND_PID = os.getpid()


def _raise_terminated(signum: int, frame: object) -> None:
    if os.getpid() != _COMMAND_PID:  # a forked worker that has not reset it yet: just die
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    raise Terminated()


if __name__ == "__main__":
    sys.exit(main())
