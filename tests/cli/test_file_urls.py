"""A file:// URL the user gives is the local path it names, for every command and reader."""

from __future__ import annotations

import json

import numpy as np
import pytest

import zconvert
from zconvert.core.errors import ConfigError

from ..conftest import float_rows, make_zip
from .test_cli import zconvert as run_cli


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_convert_to_a_file_url_writes_the_local_folder(tmp_path, fmt):
    data = float_rows(500)
    make_zip(tmp_path / "in" / "a.zip", {"d.bin": data})
    out = tmp_path / "out"
    proc = run_cli("convert", str(tmp_path / "in"), "-o", out.as_uri(), "--format", fmt)
    assert proc.returncode == 0, proc.stderr
    assert "1 converted, 0 skipped, 0 failed" in proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    [entry] = manifest["stores"]
    assert entry["status"] == "converted" and entry["store"] == str(out / entry["relpath"])
    np.testing.assert_array_equal(zconvert.open(out / entry["relpath"], "d")[:], data)


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_file_urls_name_local_paths_for_every_command_and_reader(tmp_path, fmt):
    data = float_rows(500)
    make_zip(tmp_path / "in put" / "a.zip", {"d.bin": data})
    out = tmp_path / "out"
    in_url = (tmp_path / "in put").as_uri()  # file:///.../in%20put
    same = ("-o", out.as_uri(), "--format", fmt, "--codec", "none")
    proc = run_cli("convert", in_url, *same)
    assert proc.returncode == 0, proc.stderr
    [entry] = json.loads((out / "manifest.json").read_text())["stores"]
    assert entry["archive"] == str(tmp_path / "in put" / "a.zip")  # a local path, not a URL
    store = out / entry["relpath"]

    # the same run again, said either way, is up to date
    again = run_cli("plan", str(tmp_path / "in put"), *same)
    assert again.returncode == 0 and "would convert 0, skip 1" in again.stdout, again.stdout
    info = json.loads(run_cli("inspect", out.as_uri(), "--json").stdout)
    assert info["output"] == str(out) and info["counts"]["converted"] == 1
    verified = run_cli("verify", out.as_uri(), store.as_uri())
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # and the readers take the URLs too
    np.testing.assert_array_equal(zconvert.open(store.as_uri(), "d")[:], data)
    np.testing.assert_array_equal(zconvert.open_memmap(store.as_uri(), "d"), data)
    assert [r.store for r in zconvert.refs(out.as_uri())] == [str(store)]
    assert zconvert.open_all(out.as_uri()).shape == data.shape


def test_file_url_of_another_host_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="another host"):
        zconvert.convert(tmp_path, "file://server/share/out")
    assert not (tmp_path / "server").exists()
