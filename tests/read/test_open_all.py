"""open_all() and all.h5: the run as one array per group of arrays that stack, computed on
dask.distributed (the graph holds paths, not handles), and HDF5 stores opened by zconvert and
by h5py or xarray in one process."""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

import zconvert
from zconvert.read.combine import HDF5Rows
from zconvert.stores.folder import ManifestArray, stacking_groups

from ..conftest import float_rows, make_zip

FORMATS = ["hdf5", "zarr"]


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _uniform_run(tmp_path: Path, fmt: str) -> tuple[Path, np.ndarray]:
    """Three archives of one float32 x 4 member, chunked in several chunks per store."""
    datas = [float_rows(700 + 50 * i, seed=i) for i in range(3)]
    for i, data in enumerate(datas):
        make_zip(tmp_path / "in" / f"a{i}.zip", {"blob.bin": data})
    out = tmp_path / f"out-{fmt}"
    codec = "zstd" if fmt == "hdf5" else "blosc-lz4"  # workers load the filters themselves
    report = zconvert.convert(
        tmp_path / "in", out, format=fmt, codec=codec, chunk_rows=300, executor="serial"
    )
    assert report.ok, report.failed
    return out, np.concatenate(datas)


def _mixed_run(tmp_path: Path, fmt: str) -> tuple[Path, np.ndarray, np.ndarray]:
    """Archives each holding `values` (raw float32 x 4) and `time` (an int64 .npy, 1-D)."""
    values = [float_rows(100 + i, seed=i) for i in range(3)]
    times = [np.arange(10 * i, 10 * i + 7 + i, dtype=np.int64) for i in range(3)]
    for i in range(3):
        make_zip(
            tmp_path / "in" / f"a{i}.zip", {"values.bin": values[i], "time.npy": _npy(times[i])}
        )
    out = tmp_path / f"out-{fmt}"
    report = zconvert.convert(tmp_path / "in", out, format=fmt, executor="serial")
    assert report.ok, report.failed
    return out, np.concatenate(values), np.concatenate(times)


# -- dask.distributed ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    """2 worker processes: every task's store is opened in a process other than this one."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            processes=True,
            n_workers=2,
            threads_per_worker=1,
            dashboard_address=None,
            host="127.0.0.1",
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as c,
    ):
        yield c


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.parametrize("fmt", FORMATS)
def test_open_all_computes_on_dask_distributed_worker_processes(tmp_path, fmt, client):
    out, expected = _uniform_run(tmp_path, fmt)
    combined = zconvert.open_all(out)
    assert combined.numblocks[0] > 3  # several tasks per store
    total = client.compute(combined.sum()).result()
    np.testing.assert_allclose(total, expected.sum(dtype=np.float64), rtol=1e-5)
    np.testing.assert_array_equal(client.compute(combined[650:760]).result(), expected[650:760])


@pytest.mark.parametrize("fmt", FORMATS)
def test_open_all_pickles_and_computes_after_unpickling(tmp_path, fmt):
    out, expected = _uniform_run(tmp_path, fmt)
    blob = pickle.dumps(zconvert.open_all(out))
    np.testing.assert_array_equal(pickle.loads(blob).compute(), expected)


def test_hdf5_rows_pickle_as_path_and_name_and_only_given_options():
    rows = HDF5Rows("/out/a.h5", "values", (10, 4), "<f4")
    blob = pickle.dumps(rows)
    assert len(blob) < 200 and b"storage" not in blob
    back = pickle.loads(blob)
    assert (back.store, back.name, back.shape, back.dtype, back.ndim) == (
        "/out/a.h5",
        "values",
        (10, 4),
        np.dtype("<f4"),
        2,
    )
    assert back.storage_options is None
    given = pickle.loads(pickle.dumps(HDF5Rows("s3://b/a.h5", "v", (3,), "<i8", {"anon": True})))
    assert given.storage_options == {"anon": True}


def test_hdf5_reads_close_their_file(tmp_path):
    out, expected = _uniform_run(tmp_path, "hdf5")
    np.testing.assert_array_equal(zconvert.open_all(out).compute(), expected)
    # No handle left open: the stores can be opened for writing (HDF5 refuses while open).
    for store in sorted(out.glob("a*.h5")):
        with h5py.File(store, "r+"):
            pass


# -- one HDF5 store, several readers in one process ------------------------------------------


@pytest.fixture
def hdf5_store(tmp_path) -> tuple[Path, np.ndarray]:
    data = float_rows(500)
    make_zip(tmp_path / "in" / "a.zip", {"d.bin": data})
    report = zconvert.convert(tmp_path / "in", tmp_path / "out", format="hdf5", executor="serial")
    assert report.ok, report.failed
    return tmp_path / "out" / "a.h5", data


def test_zconvert_open_then_h5py_in_one_process(hdf5_store):
    store, data = hdf5_store
    dset = zconvert.open(store, "d")
    try:
        with h5py.File(store, "r") as f:
            np.testing.assert_array_equal(f["d"][...], data)
        np.testing.assert_array_equal(dset[...], data)
    finally:
        dset.file.close()


def test_h5py_then_zconvert_open_in_one_process(hdf5_store):
    store, data = hdf5_store
    with h5py.File(store, "r") as f:
        dset = zconvert.open(store, "d")
        try:
            np.testing.assert_array_equal(dset[...], f["d"][...])
        finally:
            dset.file.close()
        assert zconvert.array_names(store) == ["d"]
        np.testing.assert_array_equal(zconvert.StoreRef(store, "d").read(), data)


def test_zconvert_open_beside_a_handle_opened_without_locking(hdf5_store):
    store, data = hdf5_store
    with h5py.File(store, "r", locking=False):  # as zconvert itself used to open stores
        np.testing.assert_array_equal(zconvert.StoreRef(store, "d").read(), data)


def test_zconvert_open_beside_xarray_h5netcdf_and_all_h5(hdf5_store):
    xr = pytest.importorskip("xarray")
    pytest.importorskip("h5netcdf")
    store, data = hdf5_store
    dset = zconvert.open(store, "d")
    try:
        with xr.open_dataset(store, engine="h5netcdf") as ds:
            np.testing.assert_array_equal(ds["d"].values, data)
        with h5py.File(store.parent / "all.h5", "r") as f:  # opens the store as its source
            np.testing.assert_array_equal(f["all"][...], data)
        np.testing.assert_array_equal(zconvert.open_all(store.parent).compute(), data)
    finally:
        dset.file.close()


# -- runs of several kinds of arrays --------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_mixed_arrays_open_all_lists_the_groups_and_asks_for_name(tmp_path, fmt):
    out, _, _ = _mixed_run(tmp_path, fmt)
    with pytest.raises(zconvert.StoreError) as caught:
        zconvert.open_all(out)
    message = str(caught.value)
    assert "differ in dtype or row shape, 2 groups" in message
    assert "float32 x [4] (3 arrays: values)" in message
    assert "int64 x [] (3 arrays: time)" in message
    assert "pass name=" in message and "name='values'" in message
    with pytest.raises(
        zconvert.StoreError, match="no array of the run is named 'nope'; its arrays: values, time"
    ):
        zconvert.open_all(out, name="nope")


@pytest.mark.parametrize("fmt", FORMATS)
def test_open_all_name_picks_the_arrays_that_stack(tmp_path, fmt):
    out, values, times = _mixed_run(tmp_path, fmt)
    picked = zconvert.open_all(out, name="values")
    assert picked.dtype == np.float32 and picked.shape == values.shape
    np.testing.assert_array_equal(picked.compute(), values)
    np.testing.assert_array_equal(zconvert.open_all(out, name="time").compute(), times)
    np.testing.assert_array_equal(zconvert.open_all(out, name="v*").compute(), values)  # a glob
    with pytest.raises(zconvert.StoreError, match="differ in dtype or row shape"):
        zconvert.open_all(out, name="*")


def test_all_h5_holds_one_dataset_per_group(tmp_path):
    out, values, times = _mixed_run(tmp_path, "hdf5")
    with h5py.File(out / "all.h5", "r") as f:
        assert sorted(f) == ["time", "values"]
        np.testing.assert_array_equal(f["values"][...], values)
        np.testing.assert_array_equal(f["time"][...], times)
        assert list(f["time"].attrs["sources"]) == ["a0.h5:time", "a1.h5:time", "a2.h5:time"]
        assert list(f["values"].attrs["source_rows"]) == [100, 101, 102]
        assert list(f["values"].attrs["_ARRAY_DIMENSIONS"]) == ["values_row", "values_column"]


def _arrays(*specs: tuple[str, tuple[int, ...], str]) -> list[ManifestArray]:
    return [ManifestArray(f"s{i}.h5", n, s, d) for i, (n, s, d) in enumerate(specs)]


def test_groups_are_named_after_their_arrays_else_their_kind():
    groups = stacking_groups(
        _arrays(
            ("values", (5, 4), "<f4"),
            ("values", (3, 2), "<f4"),  # a second `values`: both named by their kind too
            ("a", (5,), "<i8"),
            ("b", (2,), "<i8"),  # several names: the kind alone
            ("scalar", (), "<f8"),  # no rows: in no group
        )
    )
    assert [(g.name, len(g.arrays)) for g in groups] == [
        ("values_float32_x4", 1),
        ("values_float32_x2", 1),
        ("int64", 2),
    ]
    assert stacking_groups(_arrays(("x", (1, 3, 2), "<u2")))[0].name == "x"
    assert (
        stacking_groups(_arrays(("x", (1, 3, 2), "<u2"), ("y", (1, 3, 2), "<u2")))[0].name
        == "uint16_x3x2"
    )
