"""The Zarr sink writes the format itself: its documents and chunks must be what zarr-python
and tensorstore read, and its metadata what zarr-python itself would write."""

from __future__ import annotations

import json
import re

import numcodecs
import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

import zconvert
from zconvert.sinks.codecs import PRESETS

from ..conftest import float_rows, make_zip

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
        fill_value=0 if zarr_format == 3 else None,  # Zarr 2: none, or xarray masks zeros
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


# --- sharding (Zarr 3 sharding_indexed) -------------------------------------------------------

_NO_CHUNK = 2**64 - 1


def _sharded(tmp_path, members, **options):
    make_zip(tmp_path / "in" / "a.zip", members)
    report = zconvert.convert(
        tmp_path / "in",
        tmp_path / "out",
        chunk_rows=100,
        shard_rows=1000,
        executor="serial",
        **options,
    )
    assert report.ok, report.failed
    return tmp_path / "out" / "a.zarr", report


@pytest.mark.parametrize("codec", list(PRESETS))
@pytest.mark.parametrize(
    ("rows", "shards"),
    [(2500, 1000), (450, 500)],  # a partial edge shard; an array shorter than one shard
    ids=["edge-shard", "short-array"],
)
def test_sharded_metadata_and_shards_match_zarr_python(tmp_path, codec, rows, shards):
    data = float_rows(rows)
    store, _ = _sharded(tmp_path, {"blob.bin": data}, codec=codec)
    ours = store / "blob"
    # A shorter array's shard is clamped to the whole chunks that cover it (450 -> 500 rows).
    theirs = zarr.create_array(
        tmp_path / "ref",
        shape=data.shape,
        chunks=(100, 4),
        shards=(shards, 4),
        dtype="<f4",
        compressors=ZARR_API_COMPRESSORS[3][codec],
        fill_value=0,
        dimension_names=("row", "column"),
    )
    theirs[:] = data
    ref = tmp_path / "ref"
    assert _metadata(ours, 3) == _metadata(ref, 3)
    ours_files = sorted(p.relative_to(ours).as_posix() for p in ours.rglob("c/**/*") if p.is_file())
    ref_files = sorted(p.relative_to(ref).as_posix() for p in ref.rglob("c/**/*") if p.is_file())
    assert ours_files == ref_files == [f"c/{i}/0" for i in range(-(-rows // shards))]
    # zarr-python 3.1 lays inner chunks out in C order as we do: the files are identical, but
    # for the time of writing each gzip stream records in its header (a second apart, when
    # the two writes straddle one).
    for name in ours_files:
        mine, theirs_ = (_gzip_time_cleared((d / name).read_bytes()) for d in (ours, ref))
        assert mine == theirs_, name
    np.testing.assert_array_equal(zarr.open_array(ours, mode="r")[:], data)


def _gzip_time_cleared(blob: bytes) -> bytes:
    """`blob` with the MTIME field of every gzip header in it (RFC 1952: bytes 4-7 after the
    magic, method 8 and the flags) set to zero."""
    return _GZIP_HEADER.sub(lambda m: m.group(1) + bytes(4), blob)


_GZIP_HEADER = re.compile(rb"(\x1f\x8b\x08.)....", re.DOTALL)


def test_shard_over_a_write_piece_is_written_in_pieces_and_matches_zarr_python(tmp_path):
    from zconvert.sinks.zarr import SHARD_PIECE_BYTES

    data = float_rows(140_000)  # a 2 MiB shard, then a partial one
    make_zip(tmp_path / "in" / "a.zip", {"blob.bin": data})
    report = zconvert.convert(
        tmp_path / "in",
        tmp_path / "out",
        codec="none",
        chunk_rows=1000,
        shard_rows=131_000,
        executor="serial",
    )
    assert report.ok, report.failed
    ours = tmp_path / "out" / "a.zarr" / "blob"
    assert (ours / "c" / "0" / "0").stat().st_size > SHARD_PIECE_BYTES
    theirs = zarr.create_array(
        tmp_path / "ref",
        shape=data.shape,
        chunks=(1000, 4),
        shards=(131_000, 4),
        dtype="<f4",
        compressors=None,
        fill_value=0,
        dimension_names=("row", "column"),
    )
    theirs[:] = data
    for name in ("c/0/0", "c/1/0"):
        assert (ours / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name


def test_shard_index_lists_chunks_in_order_and_none_past_the_end(tmp_path):
    import google_crc32c

    data = float_rows(2550)
    store, _ = _sharded(tmp_path, {"blob.bin": data}, codec="blosc-lz4")
    blob = (store / "blob" / "c" / "2" / "0").read_bytes()  # rows 2000-2549 of a 1000-row shard
    index_bytes, crc = blob[-(10 * 16 + 4) : -4], blob[-4:]
    assert int.from_bytes(crc, "little") == google_crc32c.value(index_bytes)
    index = np.frombuffer(index_bytes, dtype="<u8").reshape(10, 2)
    # Six inner chunks hold rows (the sixth padded), four lie wholly past the end.
    assert (index[6:] == _NO_CHUNK).all()
    offsets, lengths = index[:6, 0], index[:6, 1]
    assert offsets[0] == 0 and (offsets[1:] == offsets[:-1] + lengths[:-1]).all()
    assert offsets[-1] + lengths[-1] == len(blob) - (10 * 16 + 4)
    codec = PRESETS["blosc-lz4"].numcodecs_codec()
    for i, (offset, length) in enumerate(index[:6]):
        chunk = np.frombuffer(codec.decode(blob[offset : offset + length]), "<f4").reshape(100, 4)
        expected = np.zeros((100, 4), "<f4")
        part = data[2000 + 100 * i : 2100 + 100 * i]
        expected[: len(part)] = part  # the edge chunk padded with the fill value
        np.testing.assert_array_equal(chunk, expected)


@pytest.mark.parametrize("codec", ["none", "blosc-lz4", "zstd"])
def test_sharded_round_trip_through_zarr_and_tensorstore(tmp_path, codec):
    ts = pytest.importorskip("tensorstore")
    members = {
        "long.bin": float_rows(2345, seed=1),  # two full shards and a partial one
        "d/short.bin": float_rows(450, seed=2),  # shorter than one shard
        "tiny.bin": float_rows(7, seed=3),  # shorter than one chunk
    }
    # A slab smaller than a shard: the worker still hands the sink whole shards.
    store, report = _sharded(tmp_path, members, codec=codec, slab_bytes=4096)
    for member, data in members.items():
        name = member.removesuffix(".bin")
        np.testing.assert_array_equal(zconvert.open(store, name)[:], data)
        spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(store / name)}}
        np.testing.assert_array_equal(ts.open(spec).result().read().result(), data)
    records = {a.name: a for a in report.results[0].arrays}
    assert records["long"].chunks == (100, 4) and records["long"].shards == (1000, 4)
    assert records["tiny"].chunks == (7, 4) and records["tiny"].shards == (7, 4)
    assert zconvert.verify(tmp_path / "out") == []
