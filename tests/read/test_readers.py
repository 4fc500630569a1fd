"""Readers: open by path, memory-map, StoreRefs across processes, the run-wide view, and
independent implementations (xarray, dask, tensorstore, the HDF5 tools) reading our stores."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import re
import shutil
import subprocess
import sys
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest

import zconvert
from zconvert.sinks.codecs import PRESETS

from ..conftest import float_rows, make_zip

# (format, zarr_format, codec, contiguous): the layouts open_memmap can map.
MAPPABLE = [("zarr", 3, "none", True), ("zarr", 2, "none", True), ("hdf5", 3, "none", False)]
ZARR_LAYOUTS = [
    (zarr_format, codec, contiguous)
    for zarr_format in (3, 2)
    for codec, contiguous in [
        ("none", True),
        ("none", False),
        ("blosc-lz4", False),
        ("zstd", False),
    ]
]


def _convert(tmp_path: Path, members: dict, fmt: str, zarr_format=3, codec="none", **kw) -> Path:
    """Archive `members` into in/a.zip and convert it; returns the store path."""
    make_zip(tmp_path / "in" / "a.zip", members)
    out = tmp_path / "out"
    report = zconvert.convert(
        tmp_path / "in",
        out,
        format=fmt,
        zarr_format=zarr_format,
        codec=codec,
        chunk_rows=1000,
        slab_bytes=3 * 1000 * 16,  # several slabs per array, also for the one-chunk layout
        executor="serial",
        **kw,
    )
    assert report.ok, report.failed
    return Path(report.results[0].store)


def _mapped_files() -> set[str]:
    with open("/proc/self/maps") as f:
        return {line.split(maxsplit=5)[5].strip() for line in f if len(line.split()) >= 6}


# -- StoreRef ------------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [10, 300_000])
def test_storeref_pickle_is_small_whatever_the_array_size(tmp_path, rows):
    store = _convert(tmp_path, {"blob.bin": float_rows(rows)}, "zarr", codec="blosc-lz4")
    (ref,) = zconvert.refs(tmp_path / "out")
    blob = pickle.dumps(ref)
    assert len(blob) < 512
    assert pickle.loads(blob) == ref == zconvert.StoreRef(store, "blob")
    assert os.path.isabs(ref.store)


def column_sums(ref: zconvert.StoreRef) -> tuple[int, list[float]]:
    """Runs in a worker process: reopen the store by path, return only a few numbers."""
    try:
        array = ref.memmap()
    except zconvert.StoreError:
        array = ref.read()
    return os.getpid(), array.sum(axis=0, dtype=np.float64).tolist()


@pytest.mark.parametrize(
    ("fmt", "zarr_format", "codec", "contiguous"), [*MAPPABLE, ("zarr", 3, "blosc-lz4", False)]
)
def test_storerefs_round_trip_through_a_process_pool(tmp_path, fmt, zarr_format, codec, contiguous):
    members = {f"blob_{i}.bin": float_rows(5000 + i, seed=i) for i in range(4)}
    _convert(tmp_path, members, fmt, zarr_format, codec, contiguous=contiguous)
    refs = zconvert.refs(tmp_path / "out")
    assert [r.name for r in refs] == [f"blob_{i}" for i in range(4)]
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(column_sums, refs))
    assert all(pid != os.getpid() for pid, _ in results)
    for (_, sums), data in zip(results, members.values(), strict=True):
        np.testing.assert_allclose(sums, data.sum(axis=0, dtype=np.float64), rtol=1e-12)


def test_storeref_read_returns_a_slice(tmp_path):
    data = float_rows(4000)
    store = _convert(tmp_path, {"blob.bin": data}, "hdf5", codec="zstd")
    ref = zconvert.StoreRef(store)  # the only array, found by the reader
    np.testing.assert_array_equal(ref.read(np.s_[10:20, 1]), data[10:20, 1])
    np.testing.assert_array_equal(ref.read(), data)


def test_refs_follow_the_manifest_and_survive_moving_the_run_folder(tmp_path):
    for name in ("b", "a", "c"):
        make_zip(tmp_path / "in" / f"{name}.zip", {"x.bin": float_rows(10), "y.bin": float_rows(7)})
    zconvert.convert(tmp_path / "in", tmp_path / "out", executor="serial", codec="none")
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "out", moved)
    refs = zconvert.refs(moved)
    assert [(Path(r.store).name, r.name) for r in refs] == [
        (f"{s}.zarr", n) for s in ("a", "b", "c") for n in ("x", "y")
    ]
    assert refs[1].read().shape == (7, 4)


def test_refs_of_a_folder_without_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(zconvert.StoreError, match=r"no manifest\.json"):
        zconvert.refs(tmp_path)


def test_a_reader_is_not_blocked_by_a_writer_holding_the_file(tmp_path):
    data = float_rows(3000)
    store = _convert(tmp_path, {"blob.bin": data}, "hdf5")
    child = (
        "import sys, zconvert; r = zconvert.StoreRef(sys.argv[1], 'blob'); "
        "print(float(r.read()[5, 2]), float(r.memmap()[5, 2]))"
    )
    with h5py.File(store, "r+"):  # default locking: an exclusive lock on the file
        proc = subprocess.run(
            [sys.executable, "-c", child, str(store)], capture_output=True, text=True, timeout=120
        )
    assert proc.returncode == 0, proc.stderr
    assert [float(v) for v in proc.stdout.split()] == [float(data[5, 2])] * 2


# -- open_memmap ---------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "zarr_format", "codec", "contiguous"), MAPPABLE)
def test_open_memmap_maps_the_store_file_itself(tmp_path, fmt, zarr_format, codec, contiguous):
    data = float_rows(10_007)  # several slabs, not a multiple of anything
    store = _convert(tmp_path, {"blob.bin": data}, fmt, zarr_format, codec, contiguous=contiguous)
    mm = zconvert.open_memmap(store, "blob")
    assert isinstance(mm, np.memmap)
    assert not mm.flags.writeable
    np.testing.assert_array_equal(mm, data)
    expected_file = {
        ("zarr", 3): store / "blob" / "c" / "0" / "0",
        ("zarr", 2): store / "blob" / "0.0",
    }.get((fmt, zarr_format), store)
    assert Path(mm.filename) == expected_file
    assert str(expected_file) in _mapped_files()
    # Not a copy: a change made through a second, writable mapping of the file shows through.
    writer = np.memmap(mm.filename, dtype=mm.dtype, mode="r+", offset=mm.offset, shape=mm.shape)
    writer[17, 3] = -42.0
    writer.flush()
    assert mm[17, 3] == -42.0
    del writer


def test_open_memmap_of_a_contiguous_zarr_with_two_arrays_and_nesting(tmp_path):
    a, b = float_rows(2500, seed=1), float_rows(3, seed=2)
    store = _convert(tmp_path, {"a.bin": a, "sub/b.bin": b}, "zarr", 3, "none", contiguous=True)
    np.testing.assert_array_equal(zconvert.open_memmap(store, "a"), a)
    np.testing.assert_array_equal(zconvert.open_memmap(store, "sub/b"), b)
    arr = zconvert.open(store, "a")
    assert arr.chunks == arr.shape and arr.metadata.codecs[0].__class__.__name__ == "BytesCodec"


@pytest.mark.parametrize(("fmt", "zarr_format", "codec", "contiguous"), MAPPABLE)
def test_open_memmap_of_big_endian_blobs(tmp_path, fmt, zarr_format, codec, contiguous):
    data = float_rows(2500).astype(">f4")  # Zarr 3 stores it little-endian: the map must say so
    store = _convert(
        tmp_path, {"blob.bin": data}, fmt, zarr_format, codec, contiguous=contiguous, dtype=">f4"
    )
    mm = zconvert.open_memmap(store)
    np.testing.assert_array_equal(mm, data)
    np.testing.assert_array_equal(zconvert.StoreRef(store, "blob").read(), data)


@pytest.mark.parametrize(
    ("fmt", "zarr_format", "codec", "why"),
    [
        ("zarr", 3, "blosc-lz4", "chunks"),
        ("zarr", 2, "zstd", "compressed"),
        ("zarr", 3, "none", "chunks"),  # uncompressed but chunked: not one file
        ("hdf5", 3, "zstd", "chunked"),
        ("hdf5", 3, "blosc-lz4", "chunked"),
    ],
)
def test_open_memmap_refuses_compressed_or_chunked_stores(tmp_path, fmt, zarr_format, codec, why):
    store = _convert(tmp_path, {"blob.bin": float_rows(5000)}, fmt, zarr_format, codec)
    with pytest.raises(zconvert.StoreError) as info:
        zconvert.open_memmap(store)
    message = str(info.value)
    assert why in message and str(store) in message and "'blob'" in message
    assert "--codec none --contiguous" in message and "--codec none for HDF5" in message


@pytest.mark.parametrize(
    ("fmt", "zarr_format", "codec", "contiguous"),
    [*MAPPABLE, ("zarr", 3, "blosc-lz4", False), ("hdf5", 3, "zstd", False)],
)
def test_open_memmap_of_a_0_row_array_is_empty_whatever_the_layout(
    tmp_path, fmt, zarr_format, codec, contiguous
):
    """A 0-row array has no bytes (HDF5: no storage offset; Zarr: no chunk file): nothing to
    map and nothing to convert differently, so it maps to an empty array, not an error."""
    data = float_rows(100)
    members = {"blob.bin": data, "empty.bin": b""}
    store = _convert(tmp_path, members, fmt, zarr_format, codec, contiguous=contiguous)
    mm = zconvert.open_memmap(store, "empty")
    assert isinstance(mm, np.memmap) and mm.shape == (0, 4) and mm.dtype == np.float32
    assert not mm.flags.writeable and mm.filename is None
    assert zconvert.StoreRef(store, "empty").memmap().shape == (0, 4)
    if codec == "none":  # beside it, the store's other array still maps
        np.testing.assert_array_equal(zconvert.open_memmap(store, "blob"), data)


def test_contiguous_needs_codec_none(tmp_path):
    make_zip(tmp_path / "in" / "a.zip", {"blob.bin": float_rows(10)})
    with pytest.raises(zconvert.ConfigError, match="contiguous: needs codec none"):
        zconvert.convert(tmp_path / "in", tmp_path / "out", contiguous=True)


def test_contiguous_flag_on_the_command_line(tmp_path):
    from zconvert.cli.commands import main

    data = float_rows(1234)
    make_zip(tmp_path / "in" / "a.zip", {"blob.bin": data})
    argv = ["convert", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--executor", "serial"]
    assert main([*argv, "--codec", "none", "--contiguous"]) == 0
    np.testing.assert_array_equal(zconvert.open_memmap(tmp_path / "out" / "a.zarr"), data)
    assert main([*argv, "--contiguous"]) == 2  # blosc-lz4 by default: refused up front


MEMORY_CHILD = r"""
import sys, zconvert
import zconvert.run.worker, zconvert.sinks.zarr  # imports count toward the baseline

def hwm_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

base = hwm_mb()
report = zconvert.convert(sys.argv[1], sys.argv[2], executor="serial", codec="none",
                          contiguous=True, zarr_format=int(sys.argv[3]))
assert report.ok, report.failed
print(base, hwm_mb())
"""


@pytest.mark.slow
@pytest.mark.parametrize("zarr_format", [3, 2])
def test_contiguous_zarr_streams_in_bounded_memory(tmp_path, zarr_format):
    path = tmp_path / "big.zip"
    piece = float_rows(1 << 20)  # 16 MiB
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("blob.bin", "w") as member:
            for i in range(8):  # 128 MiB, one chunk
                member.write((piece + np.float32(i)).tobytes())
    proc = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, str(path), str(tmp_path / "out"), str(zarr_format)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    base, peak = map(float, proc.stdout.split())
    assert peak - base < 60, (base, peak)  # 8 MiB slabs; writing through zarr would hold 128 MiB
    mm = zconvert.open_memmap(tmp_path / "out" / "big.zarr")
    assert mm.shape == (8 << 20, 4)
    np.testing.assert_array_equal(mm[(7 << 20) + 5], piece[5] + np.float32(7))


# -- the run-wide view ----------------------------------------------------------------------


def _run_of_three(
    tmp_path: Path, fmt: str, codec: str, **options: object
) -> tuple[Path, np.ndarray]:
    datas = [float_rows(1000 + 7 * i, seed=i) for i in range(3)]
    for i, data in enumerate(datas):
        make_zip(tmp_path / "in" / f"a{i}.zip", {"blob.bin": data})
    out = tmp_path / "out"
    report = zconvert.convert(
        tmp_path / "in",
        out,
        format=fmt,
        codec=codec,
        chunk_rows=300,
        executor="serial",
        **options,
    )
    assert report.ok, report.failed
    return out, np.concatenate(datas)


@pytest.mark.parametrize(
    ("fmt", "codec"), [("zarr", "blosc-lz4"), ("hdf5", "none"), ("hdf5", "zstd")]
)
def test_open_all_concatenates_the_run_lazily(tmp_path, fmt, codec):
    import dask.array as da

    out, expected = _run_of_three(tmp_path, fmt, codec)
    combined = zconvert.open_all(out)
    assert isinstance(combined, da.Array)
    assert combined.shape == expected.shape and combined.dtype == expected.dtype
    np.testing.assert_array_equal(combined[995:1010].compute(), expected[995:1010])
    np.testing.assert_array_equal(combined.compute(), expected)
    assert (out / "all.h5").exists() == (fmt == "hdf5")


def test_sharded_run_reads_through_refs_and_open_all_a_shard_per_task(tmp_path):
    out, expected = _run_of_three(tmp_path, "zarr", "blosc-lz4", shard_rows=600)
    refs = zconvert.refs(out)
    np.testing.assert_array_equal(np.concatenate([r.read() for r in refs]), expected)
    assert refs[0].open().shards == (600, 4)
    combined = zconvert.open_all(out)
    assert combined.chunks[0][:2] == (600, 400)  # 1000 rows: a shard, then the edge shard
    np.testing.assert_array_equal(combined.compute(), expected)


def _hdf5_tool_env() -> dict[str, str]:
    import hdf5plugin

    return {**os.environ, "HDF5_PLUGIN_PATH": hdf5plugin.PLUGIN_PATH}


def _h5dump_values(path: Path, dataset: str, start: int, count: int, cols: int) -> np.ndarray:
    """Values as h5dump prints them, with enough digits to round-trip float32."""
    proc = subprocess.run(
        ["h5dump", "-A", "0", "-y", "-w", "0", "-m", "%.9g", "-d", dataset,
         "-s", f"{start},0", "-c", f"{count},{cols}", str(path)],
        capture_output=True, text=True, timeout=120, env=_hdf5_tool_env(), cwd="/",
    )  # fmt: skip
    assert proc.returncode == 0 and "ERROR" not in proc.stdout + proc.stderr, proc.stderr
    block = proc.stdout.split("DATA {", 1)[1].split("}", 1)[0]
    return np.array([float(v) for v in re.findall(r"[-+0-9.eE]+|nan", block)], dtype=np.float32)


@pytest.mark.skipif(shutil.which("h5dump") is None, reason="hdf5-tools not installed")
@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_all_h5_is_one_dataset_for_the_hdf5_tools_after_moving_the_folder(tmp_path, codec):
    out, expected = _run_of_three(tmp_path, "hdf5", codec)
    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    shutil.move(out, moved)
    listing = subprocess.run(
        ["h5ls", str(moved / "all.h5")], capture_output=True, text=True, timeout=60
    ).stdout
    assert "all" in listing and "{3021, 4}" in listing
    values = _h5dump_values(moved / "all.h5", "/all", 995, 20, 4)
    np.testing.assert_array_equal(values.reshape(20, 4), expected[995:1015])
    with h5py.File(moved / "all.h5", "r", locking=False) as f:
        np.testing.assert_array_equal(f["all"][...], expected)


def test_mixed_row_shapes_give_all_h5_a_dataset_per_group_and_open_all_says_why(tmp_path):
    out = tmp_path / "out"
    make_zip(tmp_path / "in" / "four.zip", {"four.bin": float_rows(10)})
    zconvert.convert(tmp_path / "in", out, format="hdf5", executor="serial")
    assert (out / "all.h5").exists()
    make_zip(tmp_path / "in" / "two.zip", {"two.bin": float_rows(10, cols=2)})
    report = zconvert.convert(
        tmp_path / "in",
        out,
        format="hdf5",
        executor="serial",
        members=[{"match": "two.bin", "shape": [-1, 2]}],
    )
    # One virtual dataset per group of arrays that stack, named after the arrays.
    assert report.combined == str(out / "all.h5") and report.combined_note is None
    with h5py.File(out / "all.h5", "r") as f:
        assert sorted(f) == ["four", "two"]
        assert f["four"].shape == (10, 4) and f["two"].shape == (10, 2)
    with pytest.raises(zconvert.StoreError, match="differ in dtype or row shape"):
        zconvert.open_all(out)
    assert zconvert.open_all(out, name="two").shape == (10, 2)


# -- independent readers --------------------------------------------------------------------


def _read_with_xarray(store: Path, name: str, zarr_format: int) -> np.ndarray:
    xr = pytest.importorskip("xarray")
    ds = xr.open_zarr(store, consolidated=False, zarr_format=zarr_format)
    assert ds[name].dims == ("row", "column")  # dimension names xarray understands
    return ds[name].values


def _read_with_dask(store: Path, name: str, zarr_format: int) -> np.ndarray:
    da = pytest.importorskip("dask.array")
    return da.from_zarr(str(store), component=name).compute()


def _read_with_tensorstore(store: Path, name: str, zarr_format: int) -> np.ndarray:
    ts = pytest.importorskip("tensorstore")  # a separate Zarr implementation (C++)
    spec = {
        "driver": "zarr3" if zarr_format == 3 else "zarr",
        "kvstore": {"driver": "file", "path": str(store / name)},
    }
    return ts.open(spec, read=True, open=True).result().read().result()


@pytest.mark.parametrize("read", [_read_with_xarray, _read_with_dask, _read_with_tensorstore])
@pytest.mark.parametrize(("zarr_format", "codec", "contiguous"), ZARR_LAYOUTS)
def test_independent_readers_agree_on_our_zarr(tmp_path, read, zarr_format, codec, contiguous):
    a, b = float_rows(2100, seed=1), float_rows(2100, seed=2)
    store = _convert(
        tmp_path, {"a.bin": a, "b.bin": b}, "zarr", zarr_format, codec, contiguous=contiguous
    )
    np.testing.assert_array_equal(read(store, "a", zarr_format), a)
    np.testing.assert_array_equal(read(store, "b", zarr_format), b)


@pytest.mark.skipif(shutil.which("h5dump") is None, reason="hdf5-tools not installed")
@pytest.mark.parametrize("codec", list(PRESETS))
def test_hdf5_tools_read_our_hdf5(tmp_path, codec):
    data = float_rows(2100)
    store = _convert(tmp_path, {"blob.bin": data, "sub/b.bin": data[:5]}, "hdf5", codec=codec)
    listing = subprocess.run(
        ["h5ls", "-r", str(store)], capture_output=True, text=True, timeout=60
    ).stdout
    assert re.search(r"/blob\s+Dataset \{2100, 4\}", listing), listing
    assert re.search(r"/sub/b\s+Dataset \{5, 4\}", listing), listing
    values = _h5dump_values(store, "/blob", 1990, 30, 4)
    np.testing.assert_array_equal(values.reshape(30, 4), data[1990:2020])
