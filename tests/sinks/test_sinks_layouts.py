"""Sinks write arrays streamed along their last axis (Fortran-ordered .npy members), 0-d arrays
and every supported dtype: each store holds C-order data that zarr, tensorstore and h5py read
back equal to the source, in every format and codec.

Arrays are streamed as the worker streams them: along the last axis, each slab the transpose
of a reused C-contiguous buffer, whole chunks at a time unless the sink takes any run.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr

import zconvert
from zconvert import sinks
from zconvert.core.convert_options import ConvertOptions
from zconvert.sinks import ArraySpec, open_sink
from zconvert.sinks.codecs import PRESETS

CODECS = list(PRESETS)
# (id, format, zarr_format, sharded)
FORMATS = [
    ("zarr2", "zarr", 2, False),
    ("zarr3", "zarr", 3, False),
    ("zarr3-sharded", "zarr", 3, True),
    ("hdf5", "hdf5", 3, False),
]
FORMAT_IDS = [f[0] for f in FORMATS]
DTYPES = ["<f4", ">f8", "<i2", ">i4", "|u1", "|i1", "<c8", "|b1"]


def _sample(shape: tuple[int, ...], dtype: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind == "c":
        return (rng.random(shape) + 1j * rng.random(shape)).astype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return (rng.random(shape) * 1e3 - 500).astype(dtype)


def _store_path(tmp_path: Path, fmt: str) -> Path:
    return tmp_path / ("a.h5" if fmt == "hdf5" else "a.zarr")


def _write(
    tmp_path: Path,
    fmt: str,
    zarr_format: int,
    codec: str,
    data: np.ndarray,
    *,
    chunk_len: int | None = None,
    inner_len: int | None = None,
    axis: int | None = None,
    run: int = 97,
    name: str = "sub/x",
    store: Path | str | None = None,
) -> Path | str:
    """Stream `data` into a new store; along the last axis for a Fortran-ordered array."""
    store = store or _store_path(tmp_path, fmt)
    if axis is None:
        axis = data.ndim - 1 if data.ndim and not data.flags.c_contiguous else 0
    shape = data.shape
    length = shape[axis] if shape else 1
    chunk_len = chunk_len or length
    chunks = tuple(chunk_len if i == axis else n for i, n in enumerate(shape))
    inner = None
    if inner_len is not None:
        inner = tuple(inner_len if i == axis else n for i, n in enumerate(shape))
    options = ConvertOptions(format=fmt, zarr_format=zarr_format, codec=codec)
    sink = open_sink(str(store), options, {"source": "test"})
    try:
        names = tuple(f"dim_{i}" for i in range(data.ndim))
        spec = ArraySpec(name, shape, data.dtype.str, chunks, names, {"k": 1}, inner, axis)
        handle = sink.add_array(spec)
        if data.ndim == 0:
            sink.write_slab(handle, 0, data.copy())
        else:
            step = run if sink.partial_writes(handle) else chunk_len * 2
            _stream(sink, handle, data, axis, step)
        sink.finish_array(handle)
        sink.commit()
    except BaseException:
        sink.abort()
        raise
    return store


def _stream(sink, handle, data: np.ndarray, axis: int, step: int) -> None:
    """Slabs of `step` along `axis` from one reused buffer, as the worker hands them."""
    if axis == 0:
        source = data
        buffer = np.empty((step, *data.shape[1:]), data.dtype)
        for start in range(0, data.shape[0], step):
            n = min(step, data.shape[0] - start)
            buffer[:n] = source[start : start + n]
            sink.write_slab(handle, start, buffer[:n])
            buffer[:n] = 0  # a sink holding on to the buffer would see this
        return
    assert axis == data.ndim - 1
    source_t = data.T  # C-contiguous: the bytes of the Fortran array as they arrive
    assert source_t.flags.c_contiguous
    buffer_t = np.empty((step, *source_t.shape[1:]), data.dtype)
    for start in range(0, data.shape[axis], step):
        n = min(step, data.shape[axis] - start)
        buffer_t[:n] = source_t[start : start + n]
        slab = buffer_t[:n].T
        sink.write_slab(handle, start, slab)
        buffer_t[:n] = 0


def _read(store: Path | str, fmt: str, name: str = "sub/x") -> np.ndarray:
    if fmt == "hdf5":
        import hdf5plugin  # noqa: F401 - the Blosc and Zstd filters

        with h5py.File(store, "r") as f:
            dset = f[name]
            return dset[()]
    return zarr.open_array(str(store), path=name, mode="r")[()]


def _expected_dtype(dtype: np.dtype, fmt: str, zarr_format: int) -> np.dtype:
    """What the reader reports: h5py and Zarr 2 keep the byte order, zarr-python reads Zarr 3
    in native order."""
    if fmt == "zarr" and zarr_format == 3:
        return dtype.newbyteorder("=")
    return dtype


def _assert_reads_back(store, fmt: str, zarr_format: int, data: np.ndarray) -> None:
    got = _read(store, fmt)
    assert got.shape == data.shape
    assert got.dtype == _expected_dtype(data.dtype, fmt, zarr_format)
    assert np.array_equal(got, data)


def _tensorstore(store: Path, zarr_format: int, name: str = "sub/x") -> np.ndarray:
    ts = pytest.importorskip("tensorstore")
    spec = {
        "driver": "zarr3" if zarr_format == 3 else "zarr",
        "kvstore": {"driver": "file", "path": str(store / name)},
    }
    return ts.open(spec).result().read().result()


def _chunk_files(array_dir: Path) -> list[str]:
    names = (".zarray", ".zattrs", "zarr.json")
    return sorted(
        p.relative_to(array_dir).as_posix()
        for p in array_dir.rglob("*")
        if p.is_file() and p.name not in names
    )


# --- Fortran-ordered arrays, streamed along the last axis ----------------------------------------


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize(("fid", "fmt", "zarr_format", "sharded"), FORMATS, ids=FORMAT_IDS)
def test_fortran_3d_streamed_along_last_axis_reads_back_in_c_order(
    tmp_path, fid, fmt, zarr_format, sharded, codec
):
    data = np.asfortranarray(np.random.default_rng(1).random((5, 7, 1003)))
    kwargs = {"chunk_len": 300, "inner_len": 100} if sharded else {"chunk_len": 100}
    store = _write(tmp_path, fmt, zarr_format, codec, data, **kwargs)
    _assert_reads_back(store, fmt, zarr_format, data)
    if fmt == "hdf5":
        with h5py.File(store, "r") as f:
            expected = None if codec == "none" else (5, 7, 100)
            assert f["sub/x"].chunks == expected
        return
    # Chunk keys carry the chunk index on the last axis; every chunk (shard) is stored.
    grid = 300 if sharded else 100
    keys = [f"c/0/0/{i}" if zarr_format == 3 else f"0.0.{i}" for i in range(-(-1003 // grid))]
    assert _chunk_files(store / "sub" / "x") == sorted(keys)
    meta = (store / "sub" / "x" / ("zarr.json" if zarr_format == 3 else ".zarray")).read_text()
    assert "transpose" not in meta and '"order": "F"' not in meta
    assert np.array_equal(_tensorstore(store, zarr_format), data)


@pytest.mark.parametrize("codec", ["none", "blosc-lz4", "zstd", "gzip"])
@pytest.mark.parametrize(("fid", "fmt", "zarr_format", "sharded"), FORMATS, ids=FORMAT_IDS)
def test_fortran_2d_with_an_edge_chunk(tmp_path, fid, fmt, zarr_format, sharded, codec):
    data = np.asfortranarray(_sample((37, 250), "<f8", seed=2))  # 250 = 3 x 64 + 58
    kwargs = {"chunk_len": 128, "inner_len": 64} if sharded else {"chunk_len": 64}
    store = _write(tmp_path, fmt, zarr_format, codec, data, **kwargs)
    _assert_reads_back(store, fmt, zarr_format, data)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_contiguous_zarr_fortran_array_is_one_c_order_file_that_maps(tmp_path, zarr_format):
    data = np.asfortranarray(_sample((5, 7, 1003), "<f8", seed=3))
    store = _write(tmp_path, "zarr", zarr_format, "none", data, run=97)  # runs cross no page
    files = _chunk_files(store / "sub" / "x")
    assert files == ["c/0/0/0" if zarr_format == 3 else "0.0.0"]
    raw = (store / "sub" / "x" / files[0]).read_bytes()
    assert raw == np.ascontiguousarray(data).tobytes()
    mapped = zconvert.open_memmap(store, "sub/x")
    assert mapped.dtype == data.dtype and np.array_equal(mapped, data)
    _assert_reads_back(store, "zarr", zarr_format, data)
    assert np.array_equal(_tensorstore(store, zarr_format), data)


def test_hdf5_codec_none_fortran_array_stays_contiguous_and_maps(tmp_path):
    data = np.asfortranarray(_sample((5, 7, 1003), "<f8", seed=4))
    store = _write(tmp_path, "hdf5", 3, "none", data, run=97)
    with h5py.File(store, "r") as f:
        assert f["sub/x"].chunks is None
    mapped = zconvert.open_memmap(store, "sub/x")
    assert mapped.dtype == data.dtype and np.array_equal(mapped, data)


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_mapped_writes_in_windows_smaller_than_a_leading_index(tmp_path, monkeypatch, fmt):
    # A window below one index of axes 0 and 1: the map walks them an index at a time.
    monkeypatch.setattr(sinks, "MAP_WINDOW_BYTES", 64)
    data = np.asfortranarray(_sample((3, 4, 5, 61), ">i4", seed=5))
    store = _write(tmp_path, fmt, 3, "none", data, run=7)
    assert np.array_equal(zconvert.open_memmap(store, "sub/x"), data)


# --- 0-d arrays ------------------------------------------------------------------------------


# Every codec, and Zarr's contiguous layout (codec none, one chunk), in every format.
ZERO_D_CASES = [
    pytest.param(*f, codec, id=f"{f[0]}-{codec}")
    for f in FORMATS
    for codec in [*CODECS, *(["contiguous"] if f[1] == "zarr" and not f[3] else [])]
]


@pytest.mark.parametrize("dtype", ["<f8", "|b1"])
@pytest.mark.parametrize(("fid", "fmt", "zarr_format", "sharded", "codec"), ZERO_D_CASES)
def test_zero_d_array_round_trips(tmp_path, fid, fmt, zarr_format, sharded, codec, dtype):
    data = np.array(2.5 if dtype == "<f8" else True, dtype=dtype)
    kwargs = {"inner_len": 1} if sharded else {}  # a 0-d array is never sharded
    store = _write(tmp_path, fmt, zarr_format, codec.replace("contiguous", "none"), data, **kwargs)
    got = _read(store, fmt)
    assert got.shape == () and got.dtype == data.dtype and got == data
    if fmt == "zarr":
        assert _chunk_files(store / "sub" / "x") == ["c" if zarr_format == 3 else "0"]
        if zarr_format == 3 and sharded:
            doc = json.loads((store / "sub" / "x" / "zarr.json").read_text())
            assert "sharding_indexed" not in json.dumps(doc["codecs"])


@pytest.mark.parametrize("dtype", ["<f8", "|b1", ">i4"])
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zero_d_and_bool_metadata_match_zarr_python(tmp_path, zarr_format, dtype):
    data = np.array(7, dtype=dtype)
    store = _write(tmp_path, "zarr", zarr_format, "blosc-lz4", data)
    kwargs = {"dimension_names": ()} if zarr_format == 3 else {"filters": None}
    from zarr.codecs import BloscCodec

    compressors = (
        [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")]
        if zarr_format == 3
        else PRESETS["blosc-lz4"].numcodecs_codec()
    )
    ref = zarr.create_array(
        tmp_path / "ref",
        shape=(),
        chunks=(),
        dtype=dtype,
        compressors=compressors,
        fill_value=0 if zarr_format == 3 else None,  # Zarr 2: none, or xarray masks zeros
        zarr_format=zarr_format,
        **kwargs,
    )
    ref[()] = data
    name = "zarr.json" if zarr_format == 3 else ".zarray"
    ours = json.loads((store / "sub" / "x" / name).read_text())
    theirs = json.loads((tmp_path / "ref" / name).read_text())
    for doc in (ours, theirs):
        doc.pop("attributes", None)
        if zarr_format == 2 and doc["compressor"]:
            doc["compressor"].pop("checksum", None)
        if zarr_format == 3:
            # Byte order: ours is the source's (zarr-python stores little-endian), and a 1-byte
            # type's bytes codec has an empty configuration (zarr-python omits it).
            doc["codecs"][0].pop("configuration", None)
    assert ours == theirs
    assert _chunk_files(store / "sub" / "x") == _chunk_files(tmp_path / "ref")


# --- dtypes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("fid", "fmt", "zarr_format", "sharded"), FORMATS, ids=FORMAT_IDS)
def test_dtype_round_trips_along_rows(tmp_path, fid, fmt, zarr_format, sharded, dtype, codec):
    data = _sample((300, 3) if dtype == ">f8" else (301,), dtype, seed=6)
    kwargs = {"chunk_len": 100, "inner_len": 50} if sharded else {"chunk_len": 64}
    store = _write(tmp_path, fmt, zarr_format, codec, data, axis=0, **kwargs)
    _assert_reads_back(store, fmt, zarr_format, data)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_dtypes_keep_byte_order_on_disk_and_tensorstore_reads_them(tmp_path, zarr_format, dtype):
    data = np.asfortranarray(_sample((3, 130), dtype, seed=7))
    store = _write(tmp_path, "zarr", zarr_format, "blosc-zstd", data, chunk_len=50)
    array_dir = store / "sub" / "x"
    if zarr_format == 2:
        assert json.loads((array_dir / ".zarray").read_text())["dtype"] == np.dtype(dtype).str
    elif np.dtype(dtype).itemsize > 1:
        bytes_codec = json.loads((array_dir / "zarr.json").read_text())["codecs"][0]
        endian = "big" if dtype.startswith(">") else "little"
        assert bytes_codec == {"name": "bytes", "configuration": {"endian": endian}}
    assert np.array_equal(_tensorstore(store, zarr_format), data)


def test_hdf5_keeps_dtypes_exactly(tmp_path):
    for dtype in DTYPES:
        data = np.asfortranarray(_sample((4, 90), dtype, seed=8))
        store = _write(tmp_path / dtype, "hdf5", 3, "zstd", data, chunk_len=40)
        with h5py.File(store, "r") as f:
            assert f["sub/x"].dtype == np.dtype(dtype)
            assert np.array_equal(f["sub/x"][()], data)


# --- URL sinks ---------------------------------------------------------------------------------


@pytest.fixture
def memory_url():
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    root = f"memory://zconvert-layouts/{uuid.uuid4().hex}"  # no glob characters
    yield root
    if fs.exists(root):
        fs.rm(root, recursive=True)


@pytest.mark.parametrize(("fid", "fmt", "zarr_format", "sharded"), FORMATS, ids=FORMAT_IDS)
def test_url_sinks_write_fortran_zero_d_and_big_endian(
    tmp_path, memory_url, fid, fmt, zarr_format, sharded
):
    import fsspec

    cases = {
        "fortran": (np.asfortranarray(_sample((5, 7, 203), "<f8", seed=9)), 50, None),
        "scalar": (np.array(True), None, None),
        "big": (_sample((130, 3), ">f8", seed=10), 50, 0),
    }
    for case, (data, chunk_len, axis) in cases.items():
        url = f"{memory_url}/{case}" + (".h5" if fmt == "hdf5" else ".zarr")
        kwargs = {"chunk_len": chunk_len, "axis": axis, "store": url}
        if sharded and data.ndim:
            kwargs.update(chunk_len=100, inner_len=50)
        _write(tmp_path, fmt, zarr_format, "blosc-lz4", data, **kwargs)
        if fmt == "hdf5":
            local = tmp_path / f"{case}.h5"
            fsspec.filesystem("memory").get(url, str(local))
            got = _read(local, fmt)
        else:
            store = zarr.storage.FsspecStore.from_url(url, read_only=True)
            got = zarr.open_array(store, path="sub/x", mode="r")[()]
        assert got.shape == data.shape, case
        assert np.array_equal(got, data), case
        expected = _expected_dtype(data.dtype, fmt, zarr_format)
        assert got.dtype == expected, case


# --- the contract --------------------------------------------------------------------------------


def test_array_spec_refuses_chunks_split_across_the_slab_axis():
    with pytest.raises(ValueError, match="every axis but axis 1"):
        ArraySpec("x", (5, 100), "<f8", (2, 10), ("a", "b"), {}, axis=1)
    with pytest.raises(ValueError, match="do not fit"):
        ArraySpec("x", (5, 100), "<f8", (5, 10), ("a", "b"), {}, axis=2)
    ArraySpec("x", (), "<f8", (), (), {})  # a 0-d array: axis 0, no chunk axes
