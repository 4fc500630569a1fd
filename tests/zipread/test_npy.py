""".npy members and .npz inputs: read through their header, never unpickled, refused when
their header is truncated or lies."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import zconvert
from tests.conftest import make_zip

RNG = np.random.default_rng(14)
ARRAYS = {
    "values": RNG.random((1000, 4), dtype=np.float32),
    "counts": np.arange(-300, 477, dtype=np.int16),
    "cube": np.asfortranarray(RNG.random((5, 7, 303))),
    "big_endian": RNG.random((100, 3)).astype(">f8"),
    "scalar": np.float64(3.25),
    "flags": RNG.random(50) > 0.5,
}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zconvert", *args], capture_output=True, text=True, timeout=120
    )


def _store(out: Path, stem: str, fmt: str) -> Path:
    return out / f"{stem}.{'h5' if fmt == 'hdf5' else 'zarr'}"


def _read(store: Path, name: str) -> np.ndarray:
    array = zconvert.open(store, name)
    try:
        return np.asarray(array[()] if array.shape == () else array[...])
    finally:
        getattr(array, "file", None) and array.file.close()


def _npy_bytes(array: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asanyarray(array), version=version)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def npz_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("npz")
    np.savez(folder / "plain.npz", **ARRAYS)
    np.savez_compressed(folder / "packed.npz", **ARRAYS)
    return folder


@pytest.mark.parametrize(
    ("fmt", "zarr_format", "codec"),
    [
        ("zarr", 3, "blosc-lz4"),
        ("zarr", 3, "none"),
        ("zarr", 2, "zstd"),
        ("zarr", 2, "none"),
        ("hdf5", 3, "none"),
        ("hdf5", 3, "blosc-zstd"),
        ("hdf5", 3, "gzip"),
    ],
)
def test_npz_arrays_read_back_as_np_load_gives_them(npz_files, tmp_path, fmt, zarr_format, codec):
    out = tmp_path / "out"
    report = zconvert.convert(
        npz_files, out, format=fmt, zarr_format=zarr_format, codec=codec, workers=1
    )
    assert [r.status for r in report.results] == ["converted", "converted"]
    for stem in ("plain", "packed"):
        store = _store(out, stem, fmt)
        assert zconvert.array_names(store) == sorted(ARRAYS)
        with np.load(npz_files / f"{stem}.npz") as expected:
            for name in ARRAYS:
                got, want = _read(store, name), expected[name]
                assert got.shape == want.shape, name
                assert np.array_equal(got, want), name
                # Zarr 3 keeps byte order in its bytes codec; zarr-python hands back native.
                assert got.dtype.newbyteorder("=") == want.dtype.newbyteorder("="), name
                if not (fmt == "zarr" and zarr_format == 3):
                    assert got.dtype == want.dtype, name
    assert zconvert.verify(out, sources=True) == []


def test_npy_header_versions_1_2_and_3_read_alike(tmp_path):
    array = RNG.random((64, 3)).astype("<f8")
    make_zip(
        tmp_path / "v.zip",
        {f"v{major}.npy": _npy_bytes(array, (major, 0)) for major in (1, 2, 3)},
    )
    zconvert.convert(tmp_path / "v.zip", tmp_path / "out", workers=1)
    for major in (1, 2, 3):
        assert np.array_equal(_read(tmp_path / "out" / "v.zarr", f"v{major}"), array)


def test_raw_and_npy_members_of_one_archive_each_follow_their_own_layout(tmp_path):
    raw = RNG.random((200, 4), dtype=np.float32)
    stamps = np.arange(200, dtype="<i8")
    make_zip(tmp_path / "mixed.zip", {"raw.bin": raw, "stamps.npy": _npy_bytes(stamps)})
    zconvert.convert(tmp_path / "mixed.zip", tmp_path / "out", workers=1)
    store = tmp_path / "out" / "mixed.zarr"
    assert np.array_equal(_read(store, "raw"), raw)
    got = _read(store, "stamps")
    assert got.dtype == np.int64 and np.array_equal(got, stamps)


def test_object_array_is_refused_and_its_pickle_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = np.empty(1, dtype=object)
    evil[0] = Evil()
    buffer = io.BytesIO()
    np.save(buffer, evil, allow_pickle=True)
    assert b"pwned" in buffer.getvalue()  # the pickle really would create the file
    make_zip(
        tmp_path / "evil.npz", {"good.npy": _npy_bytes(np.ones(4)), "evil.npy": buffer.getvalue()}
    )
    proc = _cli("convert", str(tmp_path / "evil.npz"), "-o", str(tmp_path / "out"))
    assert proc.returncode == 1
    assert not marker.exists()
    lines = [line for line in proc.stderr.splitlines() if "failed:" in line]
    assert len(lines) == 1, proc.stderr
    assert "evil.npz: evil.npy:" in lines[0] and "Python objects" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "evil.zarr").exists()
    # plan refuses it too, and reading its header there runs nothing either
    plan = _cli("plan", str(tmp_path / "evil.npz"), "-o", str(tmp_path / "out"))
    assert plan.returncode == 1 and "Python objects" in plan.stdout
    assert not marker.exists()


def _with_dict(npy: bytes, text: bytes) -> bytes:
    """A version 1 .npy with its header dict replaced by `text`, padded to the same length."""
    end = npy.index(b"\n") + 1
    return npy[:10] + text.ljust(end - 11) + b"\n" + npy[end:]


def _header_cases() -> dict[str, tuple[bytes, str]]:
    good = _npy_bytes(RNG.random((1000, 4), dtype=np.float32))
    header_end = good.index(b"\n") + 1
    lying = good.replace(b"(1000, 4)", b"(1002, 4)")
    short_claim = good.replace(b"(1000, 4)", b"(999, 4) ")
    return {
        "truncated_prefix": (good[:9], "truncated"),
        "truncated_dict": (good[: header_end - 20], "truncated"),
        "declares_more_data": (lying, "declares 16032 bytes of data"),
        "declares_less_data": (short_claim, "declares 15984 bytes of data"),
        "not_a_dict": (_with_dict(good, b"[1, 2, 3]"), "must hold exactly the keys"),
        "code_not_literal": (
            _with_dict(good, b"{'descr': print('x'), 'shape': (1000, 4)}"),
            "not a Python literal",
        ),
        "unknown_version": (good[:6] + b"\x07\x00" + good[8:], "version 7.0"),
        "structured": (_npy_bytes(np.zeros(3, dtype=[("a", "<f4"), ("b", "<i2")])), "structured"),
        "strings": (_npy_bytes(np.array(["ab", "cd"])), "only bool, integer, float and complex"),
    }


@pytest.mark.parametrize("case", sorted(_header_cases()))
@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_bad_npy_header_fails_that_archive_with_one_line(tmp_path, case, compression):
    blob, expected = _header_cases()[case]
    make_zip(tmp_path / "in" / "bad.npz", {"x.npy": blob}, compression=compression)
    make_zip(tmp_path / "in" / "good.npz", {"x.npy": _npy_bytes(np.ones((3, 4)))})
    proc = _cli("convert", str(tmp_path / "in"), "-o", str(tmp_path / "out"))
    assert proc.returncode == 1
    failed = [line for line in proc.stderr.splitlines() if "failed:" in line]
    assert len(failed) == 1 and "bad.npz: x.npy:" in failed[0], proc.stderr
    assert expected in failed[0], failed[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "bad.zarr").exists()
    assert (tmp_path / "out" / "good.zarr").exists()


def test_member_named_npy_without_the_magic_is_refused_not_read_as_raw(tmp_path):
    make_zip(tmp_path / "a.zip", {"x.npy": RNG.random((10, 4), dtype=np.float32)})
    proc = _cli("convert", str(tmp_path / "a.zip"), "-o", str(tmp_path / "out"))
    assert proc.returncode == 1 and "does not start with the .npy magic" in proc.stderr


def test_zip_inside_a_zip_is_refused_not_read_as_raw(tmp_path):
    inner = tmp_path / "inner.npz"
    np.savez(inner, x=np.ones((4, 4), dtype=np.float32))
    make_zip(tmp_path / "outer.zip", {"inner.dat": inner.read_bytes()[:32]})
    proc = _cli("convert", str(tmp_path / "outer.zip"), "-o", str(tmp_path / "out"))
    assert proc.returncode == 1 and "is itself a ZIP archive" in proc.stderr


def test_members_rule_contradicting_a_npy_header_is_refused(tmp_path):
    np.savez(tmp_path / "a.npz", values=np.ones((8, 4), dtype=np.float32))
    rules = json.dumps([{"match": "values*", "dtype": "<f8"}])
    proc = _cli("convert", str(tmp_path / "a.npz"), "-o", str(tmp_path / "out"), "--members", rules)
    assert proc.returncode == 1
    assert "members[0] rule 'values*' says dtype <f8 (header: <f4)" in proc.stderr
    agreeing = json.dumps([{"match": "values*", "dtype": "<f4", "shape": [-1, 4]}])
    proc = _cli(
        "convert", str(tmp_path / "a.npz"), "-o", str(tmp_path / "ok"), "--members", agreeing
    )
    assert proc.returncode == 0, proc.stderr


def test_npz_rerun_is_skipped_and_verifies(tmp_path, npz_files):
    out = tmp_path / "out"
    zconvert.convert(npz_files / "packed.npz", out, format="hdf5", workers=1)
    again = zconvert.convert(npz_files / "packed.npz", out, format="hdf5", workers=1)
    assert [r.status for r in again.results] == ["skipped"]
    assert zconvert.verify(out) == []


def test_store_from_a_npz_converted_before_npy_support_is_redone(tmp_path, npz_files):
    """A store written by a zconvert that took .npy headers for data (no member_format
    attribute) must not count as up to date."""
    import zarr

    out = tmp_path / "out"
    zconvert.convert(npz_files / "plain.npz", out, workers=1)
    store = out / "plain.zarr"
    for name in ARRAYS:
        array = zarr.open_array(store, path=name, mode="r+")
        attrs = dict(array.attrs)
        attrs.pop("member_format")
        array.attrs.clear()
        array.attrs.update(attrs)
    zarr.consolidate_metadata(store)  # what zarr reads the arrays' attributes from
    # and its manifest, like every manifest of that time, records no options digest or ctime
    document = json.loads((out / "manifest.json").read_text())
    for entry in document["stores"]:
        del entry["options_id"], entry["source_ctime_ns"]
    (out / "manifest.json").write_text(json.dumps(document))
    again = zconvert.convert(npz_files / "plain.npz", out, workers=1)
    assert [r.status for r in again.results] == ["converted"]
