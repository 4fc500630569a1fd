"""One Zarr writer, two places: the same archives converted to a local folder and to S3 (a real
moto server) give stores whose every key holds the same bytes, chunks and metadata alike."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

import zconvert

from .._s3 import S3, s3_fixture, s3_server  # noqa: F401  (fixtures)
from ..conftest import float_rows, make_zip

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

CASES = {
    "zarr3-blosc": {},
    "zarr3-none": {"codec": "none"},
    "zarr2-blosc": {"zarr_format": 2},
    "zarr2-none": {"zarr_format": 2, "codec": "none"},
    "zarr3-big-endian": {"dtype": ">f4"},
    "zarr2-big-endian": {"zarr_format": 2, "dtype": ">f4"},
    "zarr3-sharded": {"shard_rows": 1000},
    "zarr3-sharded-none": {"shard_rows": 1000, "codec": "none"},
    # one chunk per array, written a few runs at a time: mapped or pieced into one file
    # locally, gathered in memory and stored whole on S3
    "zarr3-contiguous": {"codec": "none", "contiguous": True, "slab_bytes": 4096},
    "zarr2-contiguous": {"zarr_format": 2, "codec": "none", "contiguous": True, "slab_bytes": 4096},
}


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _archive(folder: Path) -> dict[str, np.ndarray]:
    """One archive of raw and .npy members (Fortran-ordered ones, one slab along the last
    axis or several, and a 0-d one); returns each member's bytes as written, by array name."""
    rng = np.random.default_rng(7)
    members: dict[str, Any] = {
        "blob.bin": float_rows(2500),
        "sub/nested.bin": float_rows(130, seed=1),
        "cols.npy": np.asfortranarray(rng.random((300, 7))),
        "wide.npy": np.asfortranarray(rng.random((50, 260)).astype("<f4")),
        "scalar.npy": np.array(3.5),
    }
    make_zip(
        folder / "a.zip",
        {k: _npy(v) if k.endswith(".npy") else v for k, v in members.items()},
    )
    return {name.rsplit(".", 1)[0]: data for name, data in members.items()}


def _local_keys(out: Path) -> dict[str, bytes]:
    return {
        path.relative_to(out).as_posix(): path.read_bytes()
        for path in sorted(out.rglob("*"))
        if path.is_file() and path.name != "manifest.json"
    }


def _s3_keys(s3: S3, prefix: str) -> dict[str, bytes]:
    fs = s3.fs()
    paths = [p for p in s3.keys(prefix) if not p.endswith("/manifest.json")]
    start = len(f"{s3.bucket}/{prefix}/")
    return {path[start:]: data for path, data in fs.cat(paths).items()}


@pytest.mark.parametrize("options", CASES.values(), ids=CASES.keys())
def test_local_and_s3_stores_are_byte_identical(tmp_path, s3, options):
    expected = _archive(tmp_path / "in")
    run = dict(chunk_rows=100, executor="serial", **options)
    # the same input folder: the stores' attributes (source_archive, its mtime) are the same
    local = zconvert.convert(tmp_path / "in", tmp_path / "out", **run)
    remote = zconvert.convert(
        tmp_path / "in", s3.url("out"), storage_options=s3.storage_options, **run
    )
    assert local.ok and remote.ok, (local.failed, remote.failed)
    ours, theirs = _local_keys(tmp_path / "out"), _s3_keys(s3, "out")
    assert sorted(ours) == sorted(theirs)
    assert "a.zarr/blob/zarr.json" in ours or "a.zarr/blob/.zarray" in ours
    assert [key for key in ours if ours[key] != theirs[key]] == []
    assert [a.stored_bytes for r in local.results for a in r.arrays] == [
        a.stored_bytes for r in remote.results for a in r.arrays
    ]

    store = zarr.storage.FsspecStore.from_url(
        s3.url("out/a.zarr"), storage_options=s3.storage_options, read_only=True
    )
    group = zarr.open_group(store, mode="r")
    for name, data in expected.items():
        if name in ("blob", "sub/nested"):  # raw: the bytes read as the run's dtype
            data = np.frombuffer(data.tobytes(), options.get("dtype", "<f4")).reshape(-1, 4)
        np.testing.assert_array_equal(group[name][...], data)
