"""--format icechunk end to end: a run's reference files and, at OUT, an Icechunk repository
of one group per archive, committed once per run, naming what changed; nothing when nothing
did. Real archives, real repositories, a reader in a fresh process with the README's lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import zconvert
from zconvert.core.errors import ConfigError

from .._s3 import s3_fixture, s3_server  # noqa: F401  (fixtures)
from ..conftest import float_rows, make_zip

pytest.importorskip("icechunk")
pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

# What a reader writes (README, "References instead of copies"), with OUT and a group.
_README_READER = """
import json, sys
import icechunk as ic
import xarray as xr
import zarr

out, group = sys.argv[1], sys.argv[2]
repo = ic.Repository.open(ic.local_filesystem_storage(out))
containers = repo.config.virtual_chunk_containers or {}
repo = repo.reopen(
    authorize_virtual_chunk_access=ic.containers_credentials({p: None for p in containers})
)
session = repo.readonly_session(branch="main")
ds = xr.open_zarr(session.store, group=group, consolidated=False)
values = zarr.open_group(session.store, path=group, mode="r")["values"][...]
print(json.dumps({"values": values.tolist(), "vars": sorted(ds.data_vars)}))
"""


def _stored(path: Path, members: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, array in members.items():
            zf.writestr(name, array.tobytes())
    return path


def _history(out: Path) -> list[str]:
    import icechunk as ic

    repo = ic.Repository.open(ic.local_filesystem_storage(str(out)))
    return [s.message for s in repo.ancestry(branch="main")]


def _read(out: Path, group: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _README_READER, str(out), group],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])  # Icechunk logs warnings to stdout


def test_a_run_commits_once_and_a_rerun_commits_only_what_changed(tmp_path):
    a, b = float_rows(300), float_rows(200, seed=1)
    _stored(tmp_path / "in" / "a.zip", {"values.bin": a})
    _stored(tmp_path / "in" / "nested" / "b.zip", {"values.bin": b})
    out = tmp_path / "out"
    report = zconvert.convert(tmp_path / "in", out, format="icechunk", chunk_rows=64)
    assert report.ok and len(report.converted) == 2
    assert report.snapshot is not None and report.to_dict()["snapshot"] == report.snapshot
    history = _history(out)
    assert len(history) == 2 and "2 converted (a, nested/b)" in history[0]
    assert _read(out, "a")["values"] == a.tolist()
    assert _read(out, "nested/b")["vars"] == ["values"]
    # the reference files are a references run's: every reader of them works too
    np.testing.assert_array_equal(zconvert.open(out / "a.json", "values")[...], a)

    again = zconvert.convert(tmp_path / "in", out, format="icechunk", chunk_rows=64)
    assert len(_history(out)) == 2 and again.snapshot is None  # nothing changed: no commit

    changed = a + 1
    _stored(tmp_path / "in" / "a.zip", {"values.bin": changed})
    os.utime(tmp_path / "in" / "a.zip", ns=(0, 4_000_000_000_000_000_000))  # a later mtime
    rerun = zconvert.convert(tmp_path / "in", out, format="icechunk", chunk_rows=64)
    assert [Path(r.store).name for r in rerun.converted] == ["a.json"]
    history = _history(out)
    assert len(history) == 3 and "1 converted (a)" in history[0]
    assert _read(out, "a")["values"] == changed.tolist()

    (tmp_path / "in" / "nested" / "b.zip").unlink()
    zconvert.convert(tmp_path / "in", out, format="icechunk", chunk_rows=64, prune=True)
    history = _history(out)
    assert len(history) == 4 and "1 removed (nested/b)" in history[0]
    assert zconvert.verify(out) == []


def test_an_archive_that_cannot_be_referenced_has_no_group(tmp_path):
    _stored(tmp_path / "in" / "a.zip", {"values.bin": float_rows(10)})
    make_zip(tmp_path / "in" / "deflated.zip", {"values.bin": float_rows(10)})
    report = zconvert.convert(tmp_path / "in", tmp_path / "out", format="icechunk")
    assert [Path(r.archive).name for r in report.failed] == ["deflated.zip"]
    assert "--format zarr" in report.failed[0].error
    from zconvert.run.icechunk_repo import group_names

    assert group_names(str(tmp_path / "out")) == ["a"]


@pytest.mark.parametrize(
    "names",
    [["a.zip", "a/b.zip"], ["refs/a.zip"], ["snapshots/x/a.zip"]],
)
def test_names_the_repository_needs_are_refused(tmp_path, names):
    for name in names:
        _stored(tmp_path / "in" / name, {"values.bin": float_rows(4)})
    with pytest.raises(ConfigError) as err:
        zconvert.convert(tmp_path / "in", tmp_path / "out", format="icechunk")
    assert "--format references" in str(err.value) or "rename" in str(err.value)
    assert not (tmp_path / "out" / "refs").exists()


def test_archives_and_repository_on_s3(tmp_path, s3):
    """np.savez archives on S3, the run's reference files and repository on S3 too: the
    repository is created beside the reference files, and reads the archives in place."""
    from zconvert.run.icechunk_repo import group_names, open_group

    np.savez(tmp_path / "a.npz", values=np.arange(40.0).reshape(10, 4))
    s3.upload(tmp_path / "a.npz", "in/a.npz")
    out = s3.url("out")
    options = s3.storage_options
    report = zconvert.convert(s3.url("in"), out, format="icechunk", storage_options=options)
    assert report.ok, report.failed
    assert group_names(out, options) == ["a"]
    values = open_group(out, "a", options)["values"][...]
    np.testing.assert_array_equal(values, np.arange(40.0).reshape(10, 4))
    again = zconvert.convert(s3.url("in"), out, format="icechunk", storage_options=options)
    assert len(again.skipped) == 1
    assert not any("zconvert-tmp" in key for key in s3.keys("out"))


def test_a_repository_lost_or_behind_is_made_good_by_a_rerun(tmp_path):
    """The repository is derived from the reference files on every run: one deleted (or a
    run that died before committing) is written again by a rerun that converts nothing."""
    import shutil

    from zconvert.run.icechunk_repo import group_names
    from zconvert.run.icechunk_run import REPOSITORY_NAMES

    _stored(tmp_path / "in" / "a.zip", {"values.bin": float_rows(10)})
    out = tmp_path / "out"
    assert zconvert.convert(tmp_path / "in", out, format="icechunk").ok
    for name in REPOSITORY_NAMES:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    rerun = zconvert.convert(tmp_path / "in", out, format="icechunk")
    assert not rerun.converted and rerun.snapshot is not None
    assert group_names(str(out)) == ["a"]
    assert _read(out, "a")["values"] == float_rows(10).tolist()
