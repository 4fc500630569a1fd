"""A run driven by a scheduler: nothing dropped or overwritten silently, names zconvert keeps
for itself refused, unwritable places refused in one line, and every outcome of `--json`
machine-readable (issue 24)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import zconvert
from zconvert.core.errors import ConfigError

from ..cli.test_cli import zconvert as cli
from ..conftest import float_rows, make_zip
from .test_faults import start_cli


def test_a_symlinked_folder_is_searched_once_and_a_link_loop_is_no_loop(tmp_path):
    make_zip(tmp_path / "real" / "a.zip", {"m.bin": float_rows(10)})
    make_zip(tmp_path / "in" / "b.zip", {"m.bin": float_rows(11)})
    (tmp_path / "in" / "linked").symlink_to(tmp_path / "real", target_is_directory=True)
    (tmp_path / "real" / "up").symlink_to(tmp_path / "in", target_is_directory=True)  # a loop
    report = zconvert.convert(tmp_path / "in", tmp_path / "out")
    assert sorted(r.relpath for r in report.converted) == ["b.zarr", "linked/a.zarr"]


def _without_root_reads() -> list[str]:
    """A command prefix under which a chmod 000 folder cannot be read: none for a user, and
    for root, root less the capabilities that read every folder (setpriv, util-linux)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("root reads every folder, and setpriv is not here to drop that")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def test_a_folder_that_cannot_be_searched_is_refused_not_skipped(tmp_path):
    make_zip(tmp_path / "in" / "a.zip", {"m.bin": float_rows(10)})
    make_zip(tmp_path / "in" / "locked" / "b.zip", {"m.bin": float_rows(10)})
    (tmp_path / "in" / "locked").chmod(0o000)
    try:
        done = subprocess.run(
            [
                *_without_root_reads(),
                sys.executable,
                "-m",
                "zconvert",
                "plan",
                str(tmp_path / "in"),
                "-o",
                str(tmp_path / "out"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        (tmp_path / "in" / "locked").chmod(0o755)
    assert done.returncode == 2, done.stdout + done.stderr
    line = done.stderr.strip()
    assert line.count("\n") == 0 and "locked: cannot be searched (Permission denied)" in line


def test_an_archive_named_all_zip_never_becomes_the_runs_combined_view(tmp_path):
    make_zip(tmp_path / "in" / "all.zip", {"m.bin": float_rows(10)})
    make_zip(tmp_path / "in" / "b.zip", {"m.bin": float_rows(10)})
    with pytest.raises(ConfigError, match=r"all\.zip would be stored as all\.h5"):
        zconvert.convert(tmp_path / "in", tmp_path / "out", format="hdf5")
    assert not (tmp_path / "out").exists()
    done = cli("plan", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--format", "hdf5")
    assert done.returncode == 2 and "rename the archive" in done.stderr
    # A Zarr run has no all.h5: all.zarr is a store like any other.
    report = zconvert.convert(tmp_path / "in", tmp_path / "zarr")
    assert sorted(r.relpath for r in report.converted) == ["all.zarr", "b.zarr"]


def test_an_archive_named_like_a_temporary_is_refused(tmp_path):
    make_zip(tmp_path / "in" / ".x.zarr.zconvert-tmp-1-abcd.zip", {"m.bin": float_rows(10)})
    with pytest.raises(ConfigError, match="a name zconvert gives its temporaries"):
        zconvert.convert(tmp_path / "in" / ".x.zarr.zconvert-tmp-1-abcd.zip", tmp_path / "out")


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_a_name_of_240_characters_converts(tmp_path, fmt):
    """The temporary fits wherever the final name fits (255 bytes)."""
    name = "n" * 236 + ".zip"
    data = float_rows(100)
    make_zip(tmp_path / "in" / name, {"m.bin": data})
    report = zconvert.convert(tmp_path / "in", tmp_path / "out", format=fmt)
    assert report.ok, [r.error for r in report.failed]
    store = tmp_path / "out" / report.converted[0].relpath
    array = zconvert.open(store)
    np.testing.assert_array_equal(array[...], data)
    if fmt == "hdf5":
        array.file.close()


def test_an_output_folder_that_cannot_be_written_is_one_line_exit_2(tmp_path):
    """chattr +i: a folder even root cannot write in."""
    make_zip(tmp_path / "in" / "a.zip", {"m.bin": float_rows(10)})
    out = tmp_path / "out"
    out.mkdir()
    if subprocess.run(["chattr", "+i", str(out)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available on this file system")
    try:
        for command in ("convert", "plan"):
            done = cli(command, str(tmp_path / "in"), "-o", str(out))
            assert done.returncode == 2, (command, done.stderr)
            assert done.stderr.count("\n") == 1 and "permission denied" in done.stderr
            assert "Traceback" not in done.stderr
        done = cli("convert", str(tmp_path / "in"), "-o", str(out / "sub"), "--json")
        assert done.returncode == 2
        assert json.loads(done.stdout) == {
            "ok": False,
            "error": done.stderr.strip().removeprefix("zconvert: error: "),
            "exit_status": 2,
        }
    finally:
        subprocess.run(["chattr", "-i", str(out)], check=False)


def test_json_prints_an_object_for_usage_errors_too(tmp_path):
    done = cli("convert", str(tmp_path / "missing"), "-o", str(tmp_path / "out"), "--json")
    assert done.returncode == 2
    document = json.loads(done.stdout)
    assert document["ok"] is False and document["exit_status"] == 2
    assert "does not exist" in document["error"]
    done = cli("convert", "--chunk-rows", "x", "--json")
    assert done.returncode == 2 and json.loads(done.stdout)["exit_status"] == 2


@pytest.mark.slow
def test_json_on_sigterm_reports_the_results_so_far(tmp_path):
    for i in range(6):
        make_zip(tmp_path / "in" / f"a{i}.zip", {"blob.bin": float_rows(300_000, seed=i)})
    out = tmp_path / "out"
    proc = start_cli(
        str(tmp_path / "in"), "-o", str(out), "--workers", "1", "--codec", "gzip", "--json"
    )
    while proc.poll() is None and len(list(out.glob("*.zarr"))) < 1:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    document = json.loads(stdout)
    assert document["ok"] is False and document["exit_status"] == 143
    assert "interrupted" in document["error"]
    assert document["converted"] == len(document["results"]) < 6


def test_a_reader_that_stops_reading_stdout_ends_no_traceback(tmp_path):
    make_zip(tmp_path / "in" / "a.zip", {"m.bin": float_rows(10)})
    zconvert.convert(tmp_path / "in", tmp_path / "out")
    done = subprocess.run(
        f"{sys.executable} -m zconvert inspect {tmp_path / 'out'} --json --arrays | head -c 10",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert len(done.stdout) == 10 and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("layout", [{"zarr_format": 3}, {"zarr_format": 2}, {"format": "hdf5"}])
def test_npy_members_are_described_as_the_store_holds_them(tmp_path, layout):
    """nbytes is the array's (no .npy header), bytes_out their sum; the member's own size,
    header included, is member_bytes; dtype is what the store gives back."""
    buffer = tmp_path / "x.npy"
    np.save(buffer, np.arange(90, dtype=">i4").reshape(30, 3))
    np.save(tmp_path / "y.npy", np.zeros((30, 3)))
    make_zip(
        tmp_path / "in" / "a.zip",
        {"x.npy": buffer.read_bytes(), "y.npy": (tmp_path / "y.npy").read_bytes()},
    )
    report = zconvert.convert(tmp_path / "in", tmp_path / "out", **layout)
    arrays = {a.name: a for a in report.converted[0].arrays}
    assert (arrays["y"].nbytes, arrays["y"].member_bytes) == (720, 848)
    assert report.bytes_out == 720 + 360
    store = tmp_path / "out" / report.converted[0].relpath
    opened = zconvert.open(store, "x")
    assert arrays["x"].dtype == opened.dtype.str  # '<i4' from Zarr 3, '>i4' otherwise
    if layout.get("format") == "hdf5":
        opened.file.close()
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    entry = manifest["stores"][0]["arrays"]
    assert [(a["nbytes"], a["member_bytes"]) for a in entry] == [(360, 488), (720, 848)]
    assert zconvert.verify(tmp_path / "out") == []


def test_verify_reads_manifests_written_before_member_bytes(tmp_path):
    buffer = tmp_path / "y.npy"
    np.save(buffer, np.zeros((30, 3)))
    make_zip(tmp_path / "in" / "a.zip", {"y.npy": buffer.read_bytes()})
    zconvert.convert(tmp_path / "in", tmp_path / "out")
    path = tmp_path / "out" / "manifest.json"
    text = (
        path.read_text().replace('"nbytes":720', '"nbytes":848').replace(',"member_bytes":848', "")
    )
    assert '"member_bytes"' not in text
    path.write_text(text)
    assert zconvert.verify(tmp_path / "out") == []
