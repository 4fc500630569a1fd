"""Stores that other readers open as they are: HDF5 as netCDF-4 (h5netcdf, netCDF4) with the
Zarr stores' dimension names, compressed HDF5 through hdf5plugin, and Zarr with consolidated
metadata (zarr-python, xarray, tensorstore) that is written last, locally and on object
storage."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr

import zconvert
from zconvert.core.convert_options import ConvertOptions
from zconvert.sinks import ArraySpec, open_sink
from zconvert.sinks.hdf5 import MAX_SCALED_ARRAYS, netcdf_dimensions
from zconvert.sinks.layout import ARRAYS_ATTR, hdf5_arrays, is_netcdf_dimension
from zconvert.stores.opened import read_store_metadata

from .._s3 import S3, s3_fixture, s3_server  # noqa: F401  (fixtures)
from ..conftest import float_rows, make_zip

xr = pytest.importorskip("xarray")

ENGINES = ["h5netcdf", "netcdf4"]
# (zarr_format, shard_rows): Zarr 3, Zarr 2 and sharded Zarr 3.
ZARR_KINDS = [(3, None), (2, None), (3, 48)]


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _members() -> dict[str, bytes | np.ndarray]:
    """Arrays of several ranks and row counts, one of them in a group."""
    return {
        "a.bin": float_rows(30, seed=1),
        "b.bin": float_rows(50, seed=2),
        "sub/c.bin": float_rows(30, seed=3),
        "cube.npy": _npy(np.arange(60, dtype="<f8").reshape(5, 3, 4)),
        "line.npy": _npy(np.arange(7, dtype="<i4")),
        "fortran.npy": _npy(np.asfortranarray(float_rows(6, seed=4))),
    }


def _convert(tmp_path: Path, members: dict, fmt: str, **options) -> Path:
    """Archive `members` into in/a.zip (once) and convert it into out-FORMAT; returns the
    store path."""
    if not (tmp_path / "in" / "a.zip").exists():
        make_zip(tmp_path / "in" / "a.zip", members)
    report = zconvert.convert(
        tmp_path / "in",
        tmp_path / f"out-{fmt}",
        format=fmt,
        chunk_rows=16,
        executor="serial",
        **options,
    )
    assert report.ok, report.failed
    return Path(report.results[0].store)


def _dims(ds) -> dict[str, tuple[str, ...]]:
    return {name: ds[name].dims for name in ds.data_vars}


def _open_netcdf(store: Path, engine: str, group: str | None = None, **kwargs):
    """xarray's netCDF reading of an HDF5 store (h5netcdf is a test dependency; netCDF4, the
    netCDF-C library, is optional)."""
    pytest.importorskip({"h5netcdf": "h5netcdf", "netcdf4": "netCDF4"}[engine])
    return xr.open_dataset(store, engine=engine, group=group, **kwargs)


# -- HDF5 as netCDF-4 -----------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["none", "blosc-lz4", "zstd"])
@pytest.mark.parametrize("engine", ENGINES)
def test_hdf5_opens_as_netcdf_with_the_zarr_dimension_names(tmp_path, engine, codec):
    import hdf5plugin  # noqa: F401  (the filters of compressed stores)

    members = _members()
    h5 = _convert(tmp_path, members, "hdf5", codec=codec)
    zstore = _convert(tmp_path, members, "zarr", codec=codec)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no phony_dim warning, nor any other
        for group in (None, "sub"):
            with (
                _open_netcdf(h5, engine, group) as ds,
                xr.open_zarr(zstore, group=group) as zds,
            ):
                assert _dims(ds) == _dims(zds)
                assert not any(d.startswith("phony_dim") for d in ds.dims)
                assert dict(ds.sizes) == dict(zds.sizes)
                for name in ds.data_vars:
                    np.testing.assert_array_equal(ds[name].values, zds[name].values)
    with xr.open_zarr(zstore) as zds:
        dims = _dims(zds)
    # rows of different lengths are different dimensions; equal lengths share one
    assert dims["a"] == ("a_row", "column") and dims["b"] == ("b_row", "column")
    assert dims["fortran"] == ("fortran_row", "column")
    assert dims["cube"] == ("cube_row", "dim_1", "dim_2")
    assert dims["line"] == ("line_row",)


def test_hdf5_arrays_of_one_length_share_row_and_column(tmp_path):
    members = {"a.bin": float_rows(20, seed=1), "sub/b.bin": float_rows(20, seed=2)}
    h5 = _convert(tmp_path, members, "hdf5", codec="none")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with _open_netcdf(h5, "h5netcdf") as ds:
            assert ds["a"].dims == ("row", "column") and dict(ds.sizes) == {"row": 20, "column": 4}
        with _open_netcdf(h5, "h5netcdf", "sub") as ds:
            assert ds["b"].dims == ("row", "column")  # the root's dimensions, as in netCDF-4
    with h5py.File(h5, "r") as f:
        assert [d.label for d in f["a"].dims] == ["row", "column"]  # labels kept
        assert f["a"].attrs["_ARRAY_DIMENSIONS"].tolist() == ["row", "column"]
        assert is_netcdf_dimension(f["row"]) and not is_netcdf_dimension(f["a"])
        assert f["row"].id.get_storage_size() == 0  # a scale holds no data


def test_dimension_scales_are_not_arrays_to_our_readers(tmp_path):
    members = _members()
    h5 = _convert(tmp_path, members, "hdf5", codec="none")
    zstore = _convert(tmp_path, members, "zarr", codec="none")
    names = ["a", "b", "cube", "fortran", "line", "sub/c"]
    assert zconvert.array_names(h5) == zconvert.array_names(zstore) == names
    with h5py.File(h5, "r") as f:
        assert [name for name, _ in hdf5_arrays(f)] == names
        assert "a_row" in f and "column" in f  # the scales are there, beside the arrays
    mapped = zconvert.open_memmap(h5, "a")  # contiguous datasets stay mappable
    np.testing.assert_array_equal(mapped, members["a.bin"])
    single = _convert(tmp_path / "one", {"blob.bin": float_rows(9)}, "hdf5", codec="none")
    assert zconvert.array_names(single) == ["blob"]
    np.testing.assert_array_equal(zconvert.open_memmap(single), float_rows(9))  # no name=


def test_a_dimension_named_like_an_array_gets_no_scale(tmp_path):
    members = {"row.bin": float_rows(10, seed=1), "b.bin": float_rows(10, seed=2)}
    h5 = _convert(tmp_path, members, "hdf5", codec="none")
    assert zconvert.array_names(h5) == ["b", "row"]
    with h5py.File(h5, "r") as f:
        assert [len(d) for d in f["b"].dims] == [0, 0]  # all axes scaled, or none
        assert is_netcdf_dimension(f["column"]) and not is_netcdf_dimension(f["row"])
    with _open_netcdf(h5, "h5netcdf", phony_dims="sort") as ds:
        np.testing.assert_array_equal(ds["row"].values, members["row.bin"])


def test_netcdf_dimension_rule():
    arrays = [(("row", "column"), (5, 4)), (("x_row", "column"), (6, 4)), ((), ())]
    assert netcdf_dimensions(arrays, {"a"}) == {"row": 5, "column": 4, "x_row": 6}
    assert netcdf_dimensions(arrays, {"column"}) == {"row": 5, "x_row": 6}
    # a name given two lengths (never by the worker) is no netCDF dimension
    assert netcdf_dimensions([(("row",), (5,)), (("row",), (6,))], set()) == {}


@pytest.mark.parametrize("n", [MAX_SCALED_ARRAYS, MAX_SCALED_ARRAYS + 1])
def test_a_store_of_many_arrays_keeps_their_attributes_at_its_root(tmp_path, n):
    """h5netcdf names dimensions through their scales, which HDF5 resolves by searching the
    file (1,000 arrays: 8 s), and reads every attribute of every array one at a time. Past
    MAX_SCALED_ARRAYS a store has no scales and no attributes on its datasets: readers see
    phony dimensions, and zconvert's readers find each array's attributes in the root's table."""
    members = {f"m{i:04d}.bin": np.full((2, 4), i, dtype="<f4") for i in range(n)}
    store = _convert(tmp_path, members, "hdf5")  # the default codec
    many = n > MAX_SCALED_ARRAYS
    last = f"m{n - 1:04d}"
    with h5py.File(store, "r") as f:
        assert ("column" in f) is not many and ("row" in f) is not many
        assert (ARRAYS_ATTR in f.attrs) is many
        dset = f[last]
        assert [len(dim) for dim in dset.dims] == ([0, 0] if many else [1, 1])
        assert len(dset.attrs) == (0 if many else 10), dict(dset.attrs)  # labels, scales too
        assert dset[0, 0] == n - 1
        assert len(hdf5_arrays(f)) == n  # our readers list the arrays either way
    root, arrays = read_store_metadata(str(store))
    assert ARRAYS_ATTR not in root
    attrs = arrays[-1].attrs
    assert attrs["member"] == f"{last}.bin" and attrs["source_archive"] == root["source_archive"]
    assert attrs["crc32"] == zlib.crc32(members[f"{last}.bin"].tobytes())
    assert attrs["_ARRAY_DIMENSIONS"] == ["row", "column"]
    assert zconvert.verify(store.parent, sources=True) == []
    with xr.open_dataset(store, engine="h5netcdf", phony_dims="sort") as ds:
        assert len(ds.data_vars) == n
        dims = ds[last].dims
        assert all(d.startswith("phony_dim") for d in dims) if many else dims == ("row", "column")
        assert int(ds[last][0, 0]) == n - 1


@pytest.mark.parametrize("rows", [128, 129])
def test_an_array_of_one_page_is_stored_contiguous_whatever_the_codec(tmp_path, rows):
    """Compressing 4 KiB or less cannot save a page, and a chunked dataset's index alone takes
    over 2 KiB (and h5netcdf a third more time to open it)."""
    data = float_rows(rows, cols=8)  # 128 rows of 8 float32 are 4 KiB
    store = _convert(tmp_path, {"blob.bin": data}, "hdf5", codec="zstd", shape=(-1, 8))
    with h5py.File(store, "r") as f:
        dset = f["blob"]
        assert (dset.chunks is None) is (rows == 128)
        assert (dset.compression is None and not dset._filters) is (rows == 128)
        np.testing.assert_array_equal(dset[...], data)


def test_compressed_hdf5_needs_import_hdf5plugin_or_its_plugin_path(tmp_path):
    import hdf5plugin

    data = float_rows(1000)  # over a page: compressed
    h5 = _convert(tmp_path, {"blob.bin": data}, "hdf5", codec="blosc-lz4")
    read = f"import h5py; print(h5py.File({str(h5)!r}, 'r')['blob'][...].sum())"
    env = {k: v for k, v in os.environ.items() if k != "HDF5_PLUGIN_PATH"}

    def run(code: str, **extra_env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={**env, **extra_env},
            timeout=60,
        )

    bare = run(read)
    assert bare.returncode != 0 and "OSError" in bare.stderr  # as the README warns
    for done in (
        run("import hdf5plugin; " + read),
        run(read, HDF5_PLUGIN_PATH=hdf5plugin.PLUGIN_PATH),
    ):
        assert done.returncode == 0, done.stderr
        assert np.isclose(float(done.stdout), data.sum(dtype=np.float64), rtol=1e-5)


# -- Zarr with consolidated metadata ---------------------------------------------------------


def _zarr_kwargs(shard_rows: int | None) -> dict:
    return {"shard_rows": shard_rows} if shard_rows else {}


def _read_with_tensorstore(store: Path, name: str, zarr_format: int) -> np.ndarray:
    ts = pytest.importorskip("tensorstore")
    spec = {
        "driver": "zarr3" if zarr_format == 3 else "zarr",
        "kvstore": {"driver": "file", "path": str(store / name)},
    }
    return ts.open(spec, read=True, open=True).result().read().result()


@pytest.mark.parametrize(("zarr_format", "shard_rows"), ZARR_KINDS)
def test_zarr_opens_consolidated_without_warnings(tmp_path, zarr_format, shard_rows):
    members = _members()
    store = _convert(tmp_path, members, "zarr", zarr_format=zarr_format, **_zarr_kwargs(shard_rows))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        group = zarr.open_group(store, mode="r", use_consolidated=True)
        with xr.open_zarr(store) as ds:
            np.testing.assert_array_equal(ds["a"].values, members["a.bin"])
            np.testing.assert_array_equal(ds["fortran"].values, float_rows(6, seed=4))
        with xr.open_zarr(store, group="sub") as ds:
            np.testing.assert_array_equal(ds["c"].values, members["sub/c.bin"])
    assert group.metadata.consolidated_metadata is not None
    listed = zarr.open_group(store, mode="r", use_consolidated=False)
    consolidated = dict(group.members(max_depth=None))
    assert sorted(consolidated) == sorted(n for n, _ in listed.members(max_depth=None))
    for name, node in listed.members(max_depth=None):
        if isinstance(node, zarr.Array):  # the same documents as the arrays' own
            assert consolidated[name].metadata == node.metadata
            assert consolidated[name].shards == node.shards
    assert zconvert.array_names(store) == ["a", "b", "cube", "fortran", "line", "sub/c"]
    tensorstore_view = _read_with_tensorstore(store, "b", zarr_format)
    np.testing.assert_array_equal(tensorstore_view, members["b.bin"])


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_zarr_root_document_is_written_last(tmp_path, monkeypatch, zarr_format):
    options = ConvertOptions(format="zarr", zarr_format=zarr_format, codec="none")
    sink = open_sink(str(tmp_path / "s.zarr"), options, {"k": 1})
    written: list[str] = []
    original = sink.place.write_bytes

    def record(key: str, data: bytes) -> None:
        written.append(key)
        original(key, data)

    monkeypatch.setattr(sink.place, "write_bytes", record)
    handle = sink.add_array(ArraySpec("sub/a", (4, 4), "<f4", (2, 4), ("row", "column"), {}))
    sink.write_slab(handle, 0, float_rows(4))
    sink.finish_array(handle)
    # before commit the temporary folder is no store: no metadata document yet
    assert not written
    assert not {"zarr.json", ".zgroup", ".zmetadata"} & set(os.listdir(sink.place.root))
    sink.commit()
    root = [key for key in written if "/" not in key]
    assert root == (["zarr.json"] if zarr_format == 3 else [".zattrs", ".zmetadata", ".zgroup"])
    assert written[-1] == root[-1]


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_zarr_without_its_root_document_is_no_store(tmp_path, zarr_format):
    store = _convert(tmp_path, {"a.bin": float_rows(10)}, "zarr", zarr_format=zarr_format)
    # what an interrupted commit leaves: everything but the document written last
    os.unlink(store / ("zarr.json" if zarr_format == 3 else ".zgroup"))
    with pytest.raises(zconvert.StoreError, match="not a Zarr store"):
        zconvert.array_names(store)
    with pytest.raises(FileNotFoundError):
        zarr.open_group(store, mode="r", use_consolidated=True)
    with pytest.raises((FileNotFoundError, ValueError)):
        xr.open_zarr(store)


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_zarr_url_sink_consolidates_and_puts_the_root_document_last(tmp_path, zarr_format):
    url = f"memory://interop-{zarr_format}-{tmp_path.name}/s.zarr"
    options = ConvertOptions(format="zarr", zarr_format=zarr_format, codec="blosc-lz4")
    sink = open_sink(url, options, {"k": 1}, {})
    puts: list[str] = []
    batches: list[list[str]] = []  # the keys of each batch of PUTs sent together
    inner_write, inner_flush = sink.place.write_bytes, sink.place.flush

    def record(key: str, data: bytes) -> None:  # every PUT, chunks' and documents'
        puts.append(key)
        inner_write(key, data)

    def record_flush() -> None:
        batches.append([k.rsplit("s.zarr/", 1)[1] for k in sink.place._pending])
        inner_flush()

    sink.place.write_bytes, sink.place.flush = record, record_flush
    data = float_rows(40)
    for name in ("a", "sub/b"):
        handle = sink.add_array(ArraySpec(name, (40, 4), "<f4", (16, 4), ("row", "column"), {}))
        sink.write_slab(handle, 0, data)
        sink.finish_array(handle)
    assert not any(key.rsplit("/", 1)[-1] in {"zarr.json", ".zgroup"} for key in puts)
    sink.commit()
    last = "zarr.json" if zarr_format == 3 else ".zgroup"
    assert puts[-1] == last and puts.count(last) == 1
    # The root document goes alone, after every other key is stored: never in flight with them.
    assert batches[-1] == [last] and sum(len(b) for b in batches) == len(puts)
    if zarr_format == 2:
        assert puts[-3:] == [".zattrs", ".zmetadata", ".zgroup"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        group = zarr.open_group(url, mode="r", use_consolidated=True)
        assert group.attrs["k"] == 1
        with xr.open_zarr(url, group="sub") as ds:
            np.testing.assert_array_equal(ds["b"].values, data)
    assert sorted(dict(group.members(max_depth=None))) == ["a", "sub", "sub/b"]


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.parametrize("zarr_format", [3, 2])
def test_zarr_on_s3_opens_in_one_read_without_warnings(tmp_path, s3: S3, zarr_format):
    data = float_rows(300)
    make_zip(tmp_path / "in" / "a.zip", {"blob.bin": data, "sub/b.bin": data[:7]})
    out = s3.url(f"out{zarr_format}")
    report = zconvert.convert(
        tmp_path / "in",
        out,
        zarr_format=zarr_format,
        storage_options=s3.storage_options,
        executor="serial",
    )
    assert report.ok, report.failed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", ResourceWarning)  # s3fs's sockets, not ours
        with xr.open_zarr(f"{out}/a.zarr", storage_options=s3.storage_options) as ds:
            np.testing.assert_array_equal(ds["blob"].values, data)
        with xr.open_zarr(f"{out}/a.zarr", group="sub", storage_options=s3.storage_options) as ds:
            np.testing.assert_array_equal(ds["b"].values, data[:7])


def test_local_and_url_zarr_consolidate_alike(tmp_path):
    """One writer, in a folder and on object storage: both consolidate to what zarr-python
    reads back as the same arrays."""
    options = ConvertOptions(format="zarr", zarr_format=3, codec="none")
    stores = {}
    for where in (str(tmp_path / "s.zarr"), f"memory://alike-{tmp_path.name}/s.zarr"):
        sink = open_sink(where, options, {"k": 1}, {})
        handle = sink.add_array(ArraySpec("sub/a", (8, 4), "<f4", (4, 4), ("row", "column"), {}))
        sink.write_slab(handle, 0, float_rows(8))
        sink.finish_array(handle)
        sink.commit()
        stores[where] = zarr.open_group(where, mode="r", use_consolidated=True)
    local, url = stores.values()
    assert local["sub/a"].metadata == url["sub/a"].metadata
    root = json.loads((tmp_path / "s.zarr" / "zarr.json").read_text())
    assert list(root["consolidated_metadata"]["metadata"]) == ["sub", "sub/a"]


@pytest.mark.parametrize("codec", ["blosc-lz4", "zstd"])
def test_hdf5_after_import_netcdf4_uses_hdf5plugins_filters(tmp_path, codec):
    """netCDF4 sets HDF5_PLUGIN_PATH to plugins built against its own HDF5 library on import;
    with h5py's, those failed every compressed dataset ("error during user callback")."""
    pytest.importorskip("netCDF4")
    make_zip(tmp_path / "in" / "a.zip", {"blob.bin": float_rows(1000)})
    code = (
        "import sys, netCDF4, numpy as np, zconvert\n"
        "report = zconvert.convert(sys.argv[1], sys.argv[2], format='hdf5', codec=sys.argv[3])\n"
        "assert report.ok, [r.error for r in report.failed]\n"
        "assert zconvert.verify(sys.argv[2]) == []\n"
        "print(float(np.asarray(zconvert.open(sys.argv[2] + '/a.h5')[...]).sum()))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "HDF5_PLUGIN_PATH"}
    args = [str(tmp_path / "in"), str(tmp_path / "out"), codec]
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert np.isclose(float(proc.stdout), float_rows(1000).sum(dtype=np.float64), rtol=1e-5)
