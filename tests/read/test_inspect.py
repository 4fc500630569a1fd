"""`zconvert inspect` on one store: what it reads from the store itself, as text and JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import zconvert

from ..conftest import float_rows, make_zip

# Beside the data: metadata and a document, each skipped with its reason. The document's name
# and its reason both hold ': ', which a 'member: reason' string cannot split back.
NOT_CONVERTED = {
    ".DS_Store": "macOS Finder metadata (.DS_Store)",
    "__MACOSX/._d.bin": "macOS metadata (__MACOSX/ folder)",
    "notes: v2.txt": "not data (.txt: text/document); add --include to convert it",
}


def _store(tmp_path: Path, fmt: str, skipped: int) -> Path:
    members = {"d.bin": float_rows(100)}
    members.update({name: b"x" for name in list(NOT_CONVERTED)[:skipped]})
    make_zip(tmp_path / "in" / "a.zip", members)
    report = zconvert.convert(tmp_path / "in", tmp_path / "out", format=fmt, executor="serial")
    assert report.ok, report.failed
    return Path(report.converted[0].store)


def _inspect(*args: str) -> str:
    """`zconvert inspect` in its own process, as users run it (and so that an exception in
    h5py's attribute iteration cannot leave its lock held in the test process)."""
    proc = subprocess.run(
        [sys.executable, "-m", "zconvert", "inspect", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("skipped", [0, 1, 2, 3])
@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_inspect_store_lists_each_skipped_member_with_its_reason(tmp_path, fmt, skipped):
    store = _store(tmp_path, fmt, skipped)
    expected = [{"member": m, "reason": r} for m, r in list(NOT_CONVERTED.items())[:skipped]]

    assert json.loads(_inspect(str(store), "--json"))["skipped_members"] == expected
    # the same records as the run folder's manifest gives
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["stores"][0]["skipped_members"] == expected

    lines = [line for line in _inspect(str(store)).splitlines() if "skipped" in line]
    assert lines == [f"  skipped member {m['member']}: {m['reason']}" for m in expected]


@pytest.mark.parametrize("skipped", [1, 2])
def test_inspect_reads_hdf5_stores_that_list_skipped_members_as_strings(tmp_path, skipped):
    """Stores written before the [member, reason] pairs hold 'member: reason' strings."""
    import h5py

    store = _store(tmp_path, "hdf5", skipped)
    legacy = [f"{m}: {r}" for m, r in list(NOT_CONVERTED.items())[:skipped]]
    with h5py.File(store, "r+") as f:
        f.attrs["skipped_members"] = legacy
    listed = json.loads(_inspect(str(store), "--json"))["skipped_members"]
    assert [f"{m['member']}: {m['reason']}" for m in listed] == legacy
