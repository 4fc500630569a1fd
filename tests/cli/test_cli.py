"""The zconvert command through a real subprocess: exit codes, one-line errors, YAML runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ..conftest import corrupt_crc, float_rows, make_zip


def zconvert(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zconvert", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_convert_exits_0_and_writes_stores(seed_dir, tmp_path):
    proc = zconvert("convert", str(seed_dir), "-o", str(tmp_path / "out"), "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert "3 converted, 0 skipped, 0 failed" in proc.stderr
    assert (tmp_path / "out" / "archive_0.zarr" / "zarr.json").is_file()


def test_shard_rows_flag_converts_end_to_end(tmp_path):
    import numpy as np
    import zarr

    data = float_rows(150_000)  # two shards of 64,000 rows and a partial third
    make_zip(tmp_path / "in" / "a.zip", {"blob.bin": data})
    out = tmp_path / "out"
    proc = zconvert(
        "convert",
        str(tmp_path / "in"),
        "-o",
        str(out),
        "--chunk-rows",
        "1000",
        "--shard-rows",
        "64000",
    )
    assert proc.returncode == 0, proc.stderr
    array = zarr.open_array(out / "a.zarr" / "blob", mode="r")
    assert (array.chunks, array.shards) == ((1000, 4), (64000, 4))
    assert sorted(p.name for p in (out / "a.zarr" / "blob" / "c").iterdir()) == ["0", "1", "2"]
    np.testing.assert_array_equal(array[:], data)
    assert zconvert("verify", str(out)).returncode == 0
    inspect = zconvert("inspect", str(out / "a.zarr"))
    assert "1000x4 in shards of 64000x4" in inspect.stdout, inspect.stdout


def test_one_bad_archive_gives_one_line_and_exit_1(seed_dir, tmp_path):
    bad = make_zip(seed_dir / "bad.zip", {"blob.bin": float_rows(100)})
    corrupt_crc(bad, "blob.bin")
    proc = zconvert("convert", str(seed_dir), "-o", str(tmp_path / "out"), "--workers", "2")
    assert proc.returncode == 1
    failures = [line for line in proc.stderr.splitlines() if "failed:" in line]
    assert failures == [
        f"zconvert: failed: {bad}: blob.bin: CRC32 mismatch: data gives "
        f"{failures[0].split('data gives ')[1].split(',')[0]}, archive records "
        f"{failures[0].split('archive records ')[1].split(';')[0]}; the archive is corrupt"
    ]
    assert "Traceback" not in proc.stderr
    assert "3 converted, 0 skipped, 1 failed" in proc.stderr


def test_debug_shows_the_traceback(seed_dir, tmp_path):
    bad = make_zip(seed_dir / "bad.zip", {"blob.bin": float_rows(100)})
    corrupt_crc(bad, "blob.bin")
    proc = zconvert("convert", str(bad), "-o", str(tmp_path / "out"), "--debug")
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr


def test_usage_errors_exit_2(tmp_path):
    assert zconvert("convert", "-o", str(tmp_path)).returncode == 2  # no inputs
    proc = zconvert("convert", str(tmp_path / "missing"), "-o", str(tmp_path / "o"))
    assert proc.returncode == 2 and "missing does not exist" in proc.stderr
    proc = zconvert("convert", str(tmp_path), "-o", str(tmp_path / "o"), "--codec", "snappy")
    assert proc.returncode == 2 and "codec" in proc.stderr
    assert zconvert("convert", str(tmp_path), "-o", "o", "--format", "netcdf").returncode == 2


def test_yaml_run_with_flag_override(seed_dir, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"inputs: [{seed_dir}]\noutput: {tmp_path / 'out'}\nformat: hdf5\ncodec: zstd\nworkers: 2\n"
    )
    proc = zconvert("convert", "--config", str(cfg), "--codec", "none")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert {a["codec"] for s in doc["stores"] for a in s["arrays"]} == {"none"}
    assert all(s["relpath"].endswith(".h5") for s in doc["stores"])


def test_unknown_yaml_key_is_named_with_the_file(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("inputs: [x]\noutput: out\nchunk_row: 5\n")
    proc = zconvert("convert", "--config", str(cfg))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(cfg) in lines[0] and "chunk_row" in lines[0] and "unknown key" in lines[0]


def test_wrong_yaml_values_are_named(tmp_path):
    cfg = tmp_path / "run.yaml"
    for body, key in [
        ("chunk_rows: -5", "chunk_rows"),
        ("shape: [-1, 0]", "shape"),
        ("workers: two", "workers"),
        ("zarr_format: 4", "zarr_format"),
        ("dtype: banana", "dtype"),
    ]:
        cfg.write_text(f"inputs: [x]\noutput: out\n{body}\n")
        proc = zconvert("convert", "--config", str(cfg))
        assert proc.returncode == 2, body
        assert f"{cfg}: {key}:" in proc.stderr, proc.stderr


def test_version_names_the_inflater():
    proc = zconvert("--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith("zconvert ") and "inflate=" in proc.stdout
