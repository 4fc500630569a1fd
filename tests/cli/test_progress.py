"""The run summary and byte formatting, from real Report and Result records."""

from __future__ import annotations

import io

from zconvert.cli.progress import ProgressBar, summary_lines, want_bar
from zconvert.core.records import ArrayRecord, Result
from zconvert.core.units import human_bytes
from zconvert.run.convert import Report


def _result(status: str, nbytes: int = 0, stored: int = 0) -> Result:
    arrays = (
        (ArrayRecord("a", "a.bin", (nbytes // 16, 4), "<f4", (1, 4), "zstd", 0, nbytes, stored),)
        if status == "converted"
        else ()
    )
    return Result(
        archive=f"/in/{status}.zip",
        store=f"/out/{status}.zarr",
        relpath=f"{status}.zarr",
        status=status,
        format="zarr",
        arrays=arrays,
        bytes_in=nbytes // 2,
        bytes_out=nbytes if status == "converted" else 0,
        error="boom" if status == "failed" else None,
    )


def test_human_bytes():
    assert human_bytes(999) == "999 B"
    assert human_bytes(1_500_000) == "1.5 MB"
    assert human_bytes(2.5e12) == "2.5 TB"


def test_summary_counts_ratio_and_throughput():
    report = Report(
        output="/out",
        results=[
            _result("converted", 4_000_000, 2_000_000),
            _result("skipped"),
            _result("failed"),
        ],
        seconds=2.0,
        manifest="/out/manifest.json",
        inflater="inflate=isal crc32=zlib-ng",
    )
    lines = summary_lines(report)
    assert lines[0] == "zconvert: 1 converted, 1 skipped, 1 failed in 2.00 s -> /out"
    text = "\n".join(lines)
    assert "1 already up to date" in text
    assert "4.0 MB of arrays as 2.0 MB stored (ratio 2.00)" in text
    assert "2.0 MB/s" in text
    assert "  libraries   inflate isal, crc32 zlib-ng" in lines
    assert "1 archive (one line each above); exit status 1" in text


def test_no_bar_on_a_pipe_or_when_quiet():
    assert want_bar(False, io.StringIO()) is False
    assert want_bar(True) is False
    stream = io.StringIO()
    bar = ProgressBar(enabled=False, stream=stream)
    bar.start([])
    bar.update(_result("converted", 16, 16))
    bar.close()
    assert stream.getvalue() == "" and bar.bytes_out == 16


def test_tqdm_is_not_imported_without_a_bar(seed_dir, tmp_path):
    import subprocess
    import sys

    code = (
        "import sys; from zconvert.cli.commands import main; "
        f"rc = main(['convert', {str(seed_dir)!r}, '-o', {str(tmp_path / 'out')!r}, "
        "'--executor', 'serial']); "
        "assert rc == 0, rc; assert 'tqdm' not in sys.modules, 'tqdm imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
