"""The zconvert command as a person or a job scheduler meets it, through real subprocesses:
help, exit codes, dry run, --json, inspect, config check, logging, and the progress bar on a
pseudo-terminal."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from zconvert.run.config import KEYS

from ..conftest import corrupt_crc, float_rows, make_zip
from .test_cli import zconvert

REPO = Path(__file__).resolve().parents[2]
COMMANDS = ["convert", "plan", "inspect", "config"]


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# --- help and exit codes ---------------------------------------------------------------------


def test_top_level_help_lists_every_command_and_exit_codes():
    proc = zconvert("--help")
    assert proc.returncode == 0
    for command in COMMANDS:
        assert f"\n    {command}   " in proc.stdout
    assert "exit status: 0 ok, 1 some archives failed, 2 usage" in proc.stdout
    assert "docs/CONFIG.md" in proc.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples_and_logging_flags(command):
    proc = zconvert(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "examples:" in proc.stdout
    assert f"zconvert {command}" in proc.stdout.split("examples:")[1]
    assert "exit status:" in proc.stdout
    for flag in ("--verbose", "--debug", "--log-file"):
        assert flag in proc.stdout


def test_convert_help_names_a_flag_for_every_config_key():
    text = zconvert("convert", "--help").stdout
    for key in KEYS:
        if key != "inputs":
            assert "--" + key.replace("_", "-") in text, key


def test_no_command_and_unknown_command_exit_2():
    assert zconvert().returncode == 2
    proc = zconvert("frobnicate")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


def test_version():
    proc = zconvert("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("zconvert ")


def test_exit_1_when_an_archive_fails_and_0_otherwise(seed_dir, tmp_path):
    assert zconvert("convert", str(seed_dir), "-o", str(tmp_path / "a")).returncode == 0
    bad = make_zip(seed_dir / "bad.zip", {"blob.bin": float_rows(100)})
    corrupt_crc(bad, "blob.bin")
    assert zconvert("convert", str(seed_dir), "-o", str(tmp_path / "b")).returncode == 1


# --- dry run ---------------------------------------------------------------------------------


@pytest.mark.parametrize("how", [["plan"], ["convert", "--dry-run"]])
def test_dry_run_writes_nothing_and_gives_reasons(seed_dir, tmp_path, how):
    make_zip(seed_dir / "odd.zip", {"odd.bin": b"\0" * 10})  # 10 bytes: not whole rows of 4 x f4
    (seed_dir / "junk.zip").write_bytes(b"this is not a zip")
    before = tree(tmp_path)
    out = tmp_path / "out"
    proc = zconvert(*how, str(seed_dir), "-o", str(out))
    assert proc.returncode == 1, proc.stderr  # some archives would be refused
    assert not out.exists()
    assert tree(tmp_path) == before
    lines = proc.stdout.splitlines()
    converts = [line for line in lines if line.startswith("convert ")]
    refusals = [line for line in lines if line.startswith("refuse ")]
    assert len(converts) == 3
    assert any("odd.zip: odd.bin: size 10 bytes is not a multiple" in r for r in refusals)
    assert any("junk.zip: not a readable ZIP archive" in r for r in refusals)
    assert "would convert 3, skip 0, refuse 2" in lines[-1]


def test_plan_json_and_exit_0_when_all_would_convert(seed_dir, tmp_path):
    proc = zconvert("plan", str(seed_dir), "-o", str(tmp_path / "out"), "--json")
    assert proc.returncode == 0, proc.stderr
    planned = json.loads(proc.stdout)
    assert [p["action"] for p in planned] == ["convert"] * 3
    assert all(p["bytes_out"] == 20_000 * 16 for p in planned)
    assert not (tmp_path / "out").exists()


# --- --json ----------------------------------------------------------------------------------


def test_json_report_parses_and_matches_the_stores(seed_dir, tmp_path):
    out = tmp_path / "out"
    proc = zconvert("convert", str(seed_dir), "-o", str(out), "--json", "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)  # nothing else on stdout
    assert report["ok"] is True and report["converted"] == 3 and report["failed"] == 0
    stores = sorted(r["store"] for r in report["results"])
    assert stores == sorted(str(p) for p in out.glob("*.zarr"))
    assert report["bytes_out"] == 3 * 20_000 * 16
    manifest = json.loads((out / "manifest.json").read_text())
    assert {s["relpath"] for s in manifest["stores"]} == {r["relpath"] for r in report["results"]}


# --- inspect ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "codec", "shown"), [("zarr", "blosc-zstd", "blosc-zstd:3"), ("hdf5", "zstd", "zstd:3")]
)
def test_inspect_store_names_every_array_with_its_codec_and_crc(tmp_path, fmt, codec, shown):
    members = {"a.bin": float_rows(1000), "sub/b.bin": float_rows(300, seed=1)}
    make_zip(tmp_path / "in" / "x.zip", members)
    out = tmp_path / "out"
    proc = zconvert(
        "convert", str(tmp_path / "in"), "-o", str(out), "--format", fmt, "--codec", codec
    )
    assert proc.returncode == 0, proc.stderr
    store = next(p for p in out.iterdir() if p.name != "manifest.json")
    text = zconvert("inspect", str(store))
    assert text.returncode == 0, text.stderr
    rows = {line.split()[0]: line for line in text.stdout.splitlines()[3:]}
    assert set(rows) == {"a", "sub/b"}
    assert "1000x4" in rows["a"] and "300x4" in rows["sub/b"]
    assert shown in rows["a"] and "a.bin" in rows["a"] and "sub/b.bin" in rows["sub/b"]
    info = json.loads(zconvert("inspect", str(store), "--json").stdout)
    manifest = json.loads((out / "manifest.json").read_text())
    recorded = {a["name"]: a for a in manifest["stores"][0]["arrays"]}
    for array in info["arrays"]:
        assert array["crc32"] == recorded[array["name"]]["crc32"]
        assert f"{array['crc32']:08x}" in rows[array["name"]]
        assert array["stored_bytes"] > 0 and array["ratio"] > 0


def test_inspect_output_folder_summarises_the_manifest(seed_dir, tmp_path):
    bad = make_zip(seed_dir / "bad.zip", {"blob.bin": float_rows(100)})
    corrupt_crc(bad, "blob.bin")
    out = tmp_path / "out"
    zconvert("convert", str(seed_dir), "-o", str(out))
    proc = zconvert("inspect", str(out), "--arrays")
    assert proc.returncode == 0, proc.stderr
    assert "3 complete (3 converted, 0 found up to date by a rerun), 1 failed, 0 missing" in (
        proc.stdout
    )
    for name in ("archive_0.zarr", "archive_1.zarr", "archive_2.zarr"):
        assert name in proc.stdout
    assert "bad.zarr" in proc.stdout and "CRC32 mismatch" in proc.stdout
    for i in range(3):
        assert f"blob_{i}.bin" in proc.stdout  # the per-store array tables


def test_inspect_of_nothing_is_one_line_and_exit_1(tmp_path):
    proc = zconvert("inspect", str(tmp_path / "nope"))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"zconvert: error: {tmp_path / 'nope'}: no such store or run folder"
    ]


# --- config ----------------------------------------------------------------------------------


def test_config_example_names_every_key_and_checks_ok(tmp_path):
    proc = zconvert("config", "--example")
    assert proc.returncode == 0
    for key, opt in KEYS.items():
        assert f"\n{key}: " in proc.stdout and opt.help in proc.stdout
    path = tmp_path / "run.yaml"
    path.write_text(proc.stdout)
    check = zconvert("config", "--check", str(path))
    assert check.returncode == 0 and check.stdout.startswith("ok")


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("codec: lz5", "codec"),
        ("workers: many", "workers"),
        ("chunk_rowz: 5", "chunk_rowz"),
        ("shape: [4, -1]", "shape"),
    ],
)
def test_bad_config_gets_one_line_naming_key_and_file(tmp_path, body, key):
    path = tmp_path / "run.yaml"
    path.write_text(f"inputs: [data]\noutput: out\n{body}\n")
    proc = zconvert("config", "--check", str(path))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"zconvert: error: {path}: {key}: ")
    assert proc.stdout == ""


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_config_is_valid(path):
    proc = zconvert("config", "--check", str(path))
    assert proc.returncode == 0, proc.stderr
    # and it names the schema, for editors with a YAML language server
    first = path.read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=../docs/zconvert.schema.json"


def test_config_docs_agree_with_keys():
    from zconvert.cli.configdoc import config_markdown, schema_text

    doc = (REPO / "docs" / "CONFIG.md").read_text()
    assert doc == config_markdown(), "regenerate: zconvert config --markdown > docs/CONFIG.md"
    assert "docs/CONFIG.md" in (REPO / "README.md").read_text()
    schema = (REPO / "docs" / "zconvert.schema.json").read_text()
    assert schema == schema_text(), (
        "regenerate: zconvert config --schema > docs/zconvert.schema.json"
    )
    assert "yaml-language-server: $schema=" in (REPO / "README.md").read_text()


def test_schema_accepts_every_example_and_refuses_what_check_refuses(tmp_path):
    import yaml
    from jsonschema import Draft202012Validator

    proc = zconvert("config", "--schema")
    assert proc.returncode == 0
    validator = Draft202012Validator(json.loads(proc.stdout))
    example = yaml.safe_load(zconvert("config", "--example").stdout)
    assert not list(validator.iter_errors(example))
    for path in (REPO / "configs").glob("*.yaml"):
        assert not list(validator.iter_errors(yaml.safe_load(path.read_text()))), path.name
    for bad in (
        {"inputs": ["d"], "output": "o", "codec": "lz5"},
        {"inputs": ["d"], "output": "o", "chunk_rowz": 5},
        {"inputs": ["d"], "output": "o", "workers": 0},
        {"inputs": ["d"], "output": "o", "contiguous": "yes"},
    ):
        assert list(validator.iter_errors(bad)), bad
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(bad))
        assert zconvert("config", "--check", str(path)).returncode == 2


# --- logging ---------------------------------------------------------------------------------


def test_verbose_and_log_file(seed_dir, tmp_path):
    log = tmp_path / "run.log"
    proc = zconvert(
        "convert", str(seed_dir), "-o", str(tmp_path / "out"), "-v", "--log-file", str(log)
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("zconvert: converted: ") == 3
    text = log.read_text()
    assert text.count(" INFO zconvert: converted: ") == 3
    assert " DEBUG zconvert: config: " in text  # the file gets everything


def test_quiet_run_prints_errors_only(seed_dir, tmp_path):
    proc = zconvert("convert", str(seed_dir), "-o", str(tmp_path / "out"), "--quiet")
    assert proc.returncode == 0 and proc.stderr == "" and proc.stdout == ""


def test_unwritable_log_file_is_a_usage_error(tmp_path):
    proc = zconvert("config", "--example", "--log-file", str(tmp_path / "no" / "dir" / "x.log"))
    assert proc.returncode == 2 and "--log-file" in proc.stderr


# --- progress bar ----------------------------------------------------------------------------


def _run_on_pty(args: list[str]) -> tuple[int, str, str]:
    """Run zconvert with stderr on a pseudo-terminal (80x24) and stdout on a pipe."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "zconvert", *args],
        stdout=subprocess.PIPE,
        stderr=slave,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            proc.kill()
            raise AssertionError("no output on the terminal for 60 s")
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    stdout = proc.stdout.read().decode() if proc.stdout else ""
    proc.wait(timeout=60)
    return proc.returncode, stdout, b"".join(chunks).decode(errors="replace")


def test_progress_bar_and_summary_on_a_terminal(seed_dir, tmp_path):
    code, stdout, terminal = _run_on_pty(["convert", str(seed_dir), "-o", str(tmp_path / "out")])
    assert code == 0, terminal
    assert stdout == ""
    assert "100%|" in terminal and "3/3 archives" in terminal
    assert "MB/s" in terminal or "kB/s" in terminal
    assert "\r" in terminal  # redrawn in place
    assert "3 converted, 0 skipped, 0 failed" in terminal
    assert "ratio" in terminal and "throughput" in terminal


def test_no_bar_without_a_terminal_or_with_quiet(seed_dir, tmp_path):
    proc = zconvert("convert", str(seed_dir), "-o", str(tmp_path / "a"))
    assert proc.returncode == 0
    assert "%|" not in proc.stderr and "\r" not in proc.stderr and "archives [" not in proc.stderr
    assert "3 converted, 0 skipped, 0 failed" in proc.stderr
    code, _, terminal = _run_on_pty(["convert", str(seed_dir), "-o", str(tmp_path / "b"), "-q"])
    assert code == 0 and "%|" not in terminal and "converted" not in terminal


def test_debug_adds_the_traceback_but_keeps_the_exit_status(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("inputs: [data]\noutput: out\ncodec: lz5\n")
    proc = zconvert("config", "--check", str(path), "--debug")
    assert proc.returncode == 2
    assert f"zconvert: error: {path}: codec: " in proc.stderr and "Traceback" in proc.stderr
