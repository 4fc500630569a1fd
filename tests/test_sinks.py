"""The Zarr sink writes the format itself: its documents and chunks must be what zarr-python
and tensorstore read, and its metadata what zarr-python itself would write."""

from __future__ import annotations

import json

import numcodecs
import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

import zconvert
from zconvert.codecs import PRESETS

from .conftest import float_rows, make_zip

ZARR_API_COMPRESSORS = {
    3: {
        "none": None,
        "blosc-lz4": [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")],
        "blosc-zstd": [BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")],
        "zstd": [ZstdCodec(level=3)],
        "gzip": [GzipCodec(level=5)],
    },
    2: {
        "none": None,
        "blosc-lz4": numcodecs.Blosc(cname="lz4", clevel=5, shuffle=1),
        "blosc-zstd": numcodecs.Blosc(cname="zstd", clevel=3, shuffle=1),
        "zstd": numcodecs.Zstd(level=3),
        "gzip": numcodecs.GZip(level=5),
    },
}


def _metadata(path, zarr_format):
    name = "zarr.json" if zarr_format == 3 else ".zarray"
    doc = json.loads((path / name).read_text())
    doc.pop("attributes", None)
    if zarr_format == 2 and doc["compressor"]:
        doc["compressor"].pop("checksum", None)  # numcodecs adds it; tensorstore rejects it
    return doc


@pytest.mark.parametrize("codec", list(PRESETS))
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_metadata_and_chunks_match_zarr_python(tmp_path, zarr_format, codec):
    data = float_rows(2500)
    make_zip(tmp_path / "in" / "a.zip", {"blob.bin": data})
    zconvert.convert(
        tmp_path / "in",
        tmp_path / "out",
        zarr_format=zarr_format,
        codec=codec,
        chunk_rows=1000,
        executor="serial",
    )
    ours = tmp_path / "out" / "a.zarr" / "blob"
    kwargs = {"dimension_names": ("row", "column")} if zarr_format == 3 else {"filters": None}
    theirs = zarr.create_array(
        tmp_path / "ref",
        shape=data.shape,
        chunks=(1000, 4),
        dtype="<f4",
        compressors=ZARR_API_COMPRESSORS[zarr_format][codec],
        fill_value=0,
        zarr_format=zarr_format,
        **kwargs,
    )
    theirs[:] = data
    assert _metadata(ours, zarr_format) == _metadata(tmp_path / "ref", zarr_format)
    ours_files = sorted(p.relative_to(ours).as_posix() for p in ours.rglob("*") if p.is_file())
    ref_files = sorted(
        p.relative_to(tmp_path / "ref").as_posix()
        for p in (tmp_path / "ref").rglob("*")
        if p.is_file()
    )
    assert [f for f in ours_files if f != ".zattrs"] == [f for f in ref_files if f != ".zattrs"]
    np.testing.assert_array_equal(zarr.open_array(ours, mode="r")[:], data)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_tensorstore_reads_every_codec(tmp_path, zarr_format):
    ts = pytest.importorskip("tensorstore")
    data = float_rows(2345)
    make_zip(tmp_path / "in" / "a.zip", {"x/blob.bin": data})
    for codec in PRESETS:
        out = tmp_path / codec
        report = zconvert.convert(
            tmp_path / "in",
            out,
            zarr_format=zarr_format,
            codec=codec,
            chunk_rows=1000,
            executor="serial",
        )
        assert report.ok
        driver = "zarr3" if zarr_format == 3 else "zarr"
        spec = {
            "driver": driver,
            "kvstore": {"driver": "file", "path": str(out / "a.zarr" / "x" / "blob")},
        }
        np.testing.assert_array_equal(ts.open(spec).result().read().result(), data)


def test_big_endian_and_integer_dtypes_round_trip(tmp_path):
    for dtype in (">f8", "<i2", "u1", "<c8"):
        data = (np.arange(3000 * 3) % 120).astype(dtype).reshape(-1, 3)
        make_zip(tmp_path / dtype / "a.zip", {"blob.bin": data})
        for zarr_format in (2, 3):
            report = zconvert.convert(
                tmp_path / dtype,
                tmp_path / f"out{zarr_format}{dtype}",
                dtype=dtype,
                shape="-1,3",
                zarr_format=zarr_format,
                chunk_rows=700,
                executor="serial",
            )
            assert report.ok, report.failed
            arr = zarr.open_array(report.results[0].store + "/blob", mode="r")
            np.testing.assert_array_equal(arr[:], data)
