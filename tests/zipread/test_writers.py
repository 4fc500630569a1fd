"""Archives from every ZIP writer in common use convert exactly, through the real CLI.

Each writer (Info-ZIP zip, 7-Zip, libarchive's bsdtar, the JDK's jar, Python's zipfile, and
Finder and Explorer as emulated with zipfile) archives the same two files from disk; the
stores must hold exactly their bytes, as float32 arrays of the right shape, and the manifest
must list the operating-system metadata that was skipped. tests/_writers.py says how each
writer is run. CI installs the tools (scripts/install_system_deps.sh), so there a missing
tool fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import zconvert

from .._writers import UNFIXED_OFFSETS, WRITERS, Writer, archive_features, write_sources

FORMATS = {"zarr": ".zarr", "hdf5": ".h5"}


def require_tool(name: str) -> str:
    """The path of an external program; a missing one fails under CI (which installs it)."""
    path = shutil.which(name)
    if path is None:
        why = f"{name} is not installed (scripts/install_system_deps.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sources")
    write_sources(folder)
    return folder


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory, sources: Path):
    """Build each writer's archive once for the module (a JVM start costs half a second)."""
    folder = tmp_path_factory.mktemp("archives")
    built: dict[str, Path] = {}

    def archive_for(writer: Writer) -> Path:
        tools = {name: require_tool(name) for name in writer.tools}
        if writer.id not in built:
            archive = folder / writer.archive_name()
            writer.build(sources, archive, tools)
            built[writer.id] = archive
        return built[writer.id]

    return archive_for


def convert(archive: Path, out: Path, fmt: str) -> subprocess.CompletedProcess[str]:
    """The real CLI, as users run it on one archive named on the command line."""
    args = ["convert", str(archive), "-o", str(out), "--format", fmt, "--workers", "1"]
    return subprocess.run(
        [sys.executable, "-m", "zconvert", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def the_store_result(out: Path) -> dict:
    stores = json.loads((out / "manifest.json").read_text())["stores"]
    assert len(stores) == 1, stores
    return stores[0]


def assert_store_holds_exactly(store: Path, arrays: dict[str, str], sources: Path) -> None:
    """The store's arrays are exactly `arrays`, each equal to its source file's bytes."""
    assert sorted(zconvert.array_names(store)) == sorted(arrays)
    for name, source in arrays.items():
        expected = np.fromfile(sources / source, dtype="<f4").reshape(-1, 4)
        array = zconvert.open(store, name)
        try:
            values = np.asarray(array[...])
        finally:
            h5file = getattr(array, "file", None)
            if h5file is not None:
                h5file.close()
        assert values.dtype == np.float32, name
        assert values.shape == expected.shape, name
        np.testing.assert_array_equal(values, expected, err_msg=name)
        assert values.tobytes() == (sources / source).read_bytes(), name


@pytest.mark.parametrize("writer", WRITERS, ids=lambda w: w.id)
def test_writer_makes_the_archive_variant_it_stands_for(writer, archives):
    """Each case really exercises its variant (descriptors, ZIP64, method 9, prefix, ...)."""
    archive = archives(writer)
    assert writer.features <= archive_features(archive)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("writer", WRITERS, ids=lambda w: w.id)
def test_writer_archive_converts_exactly(writer, fmt, archives, sources, tmp_path):
    archive = archives(writer)
    out = tmp_path / "out"
    proc = convert(archive, out, fmt)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    result = the_store_result(out)
    assert result["status"] == "converted", result
    assert result["relpath"] == archive.stem + FORMATS[fmt]
    store = out / result["relpath"]
    assert store.exists()
    assert sorted(a["name"] for a in result["arrays"]) == sorted(writer.arrays)
    skipped = result.get("skipped_members", [])
    assert {s["member"] for s in skipped if not s["member"].endswith("/")} == writer.skipped
    assert all(isinstance(s["reason"], str) and s["reason"] for s in skipped), skipped
    assert_store_holds_exactly(store, dict(writer.arrays), sources)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("writer", UNFIXED_OFFSETS, ids=lambda w: w.id)
def test_prefix_without_fixed_offsets_converts_exactly_or_is_refused_in_one_line(
    writer, fmt, archives, sources, tmp_path
):
    """Bytes prepended without `zip -A`: zipfile finds the members anyway; zconvert must give
    the exact data or one clear error line and no store, never other data (the members
    the recorded offsets point at, for an old zip in front)."""
    archive = archives(writer)
    assert writer.features <= archive_features(archive)
    out = tmp_path / "out"
    proc = convert(archive, out, fmt)
    assert "Traceback" not in proc.stderr
    store = out / (archive.stem + FORMATS[fmt])
    if proc.returncode == 0:
        assert_store_holds_exactly(store, dict(writer.arrays), sources)
    else:
        assert proc.returncode == 1, proc.stderr
        failures = [line for line in proc.stderr.splitlines() if "failed:" in line]
        assert len(failures) == 1 and str(archive) in failures[0], proc.stderr
        assert not store.exists()


def _stored_data_members(archive: Path, writer: Writer) -> bool:
    """Whether every member the writer's arrays come from is stored (method 0) as written:
    what --format references can refer to. Info-ZIP and others store incompressible data
    even when asked to deflate, so the archive decides, not the writer's flags."""
    import zipfile

    with zipfile.ZipFile(archive) as zf:
        methods = {
            Path(info.filename).with_suffix("").as_posix(): info.compress_type
            for info in zf.infolist()
            if not info.is_dir()
        }
    return all(methods[name] == zipfile.ZIP_STORED for name in writer.arrays)


@pytest.mark.parametrize("writer", WRITERS + UNFIXED_OFFSETS, ids=lambda w: w.id)
def test_writer_archive_is_referenced_exactly_or_refused_in_one_line(
    writer, archives, sources, tmp_path
):
    """--format references over every writer's archive: stored members are read in place
    exactly as their sources (local headers read, whatever their extra fields, descriptors or
    prefixes); compressed ones fail the archive in one line naming the alternative."""
    archive = archives(writer)
    out = tmp_path / "out"
    proc = convert(archive, out, "references")
    assert "Traceback" not in proc.stderr
    store = out / (archive.stem + ".json")
    if proc.returncode == 0:
        assert_store_holds_exactly(store, dict(writer.arrays), sources)
        return
    assert proc.returncode == 1, proc.stderr
    failures = [line for line in proc.stderr.splitlines() if "failed:" in line]
    assert len(failures) == 1 and str(archive) in failures[0], proc.stderr
    assert not store.exists()
    if writer not in UNFIXED_OFFSETS:  # those may fail on their offsets instead
        assert not _stored_data_members(archive, writer), proc.stderr
        assert "only stored" in failures[0] and "--format zarr" in failures[0], failures[0]
