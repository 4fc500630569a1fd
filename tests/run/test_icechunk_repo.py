"""Icechunk repositories of virtual chunks (run/icechunk_repo.py): real ZIP archives of stored
members, kerchunk documents built from their local headers, real repositories in tmp_path."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

icechunk = pytest.importorskip("icechunk")

from zconvert.run.icechunk_repo import (  # noqa: E402  (after the importorskip)
    group_names,
    is_repository,
    open_group,
    write_repository,
)

from .._s3 import S3, s3_fixture, s3_server  # noqa: E402, F401  (fixtures)

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")


# --- kerchunk documents, the way the reference writer makes them -----------------------------


def _data_offset(path: Path, info: zipfile.ZipInfo) -> int:
    """Where a stored member's bytes start: after its local header, name and extra field."""
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        fields = _LOCAL_HEADER.unpack(fh.read(_LOCAL_HEADER.size))
    assert fields[0] == 0x04034B50 and fields[3] == zipfile.ZIP_STORED
    return info.header_offset + _LOCAL_HEADER.size + fields[9] + fields[10]


def _npy_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[int, np.dtype, tuple, bool]:
    """(header length, dtype, shape, fortran_order) of an .npy member."""
    with zf.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        read = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read(fh)
        return fh.tell(), dtype, shape, fortran


def _document(
    path: Path,
    chunks: dict[str, int],
    raw: dict[str, tuple[str, tuple[int, ...]]] | None = None,
    root_attrs: dict[str, Any] | None = None,
    url: str | None = None,
) -> dict[str, Any]:
    """A kerchunk v1 document of an archive: member -> number of chunks (split along the rows,
    or along the last axis of a Fortran-order member); raw members' (dtype, shape) in `raw`."""
    raw = raw or {}
    url = url or str(path.resolve())
    refs: dict[str, Any] = {
        ".zgroup": json.dumps({"zarr_format": 2}),
        ".zattrs": json.dumps(root_attrs or {"source": path.name}),
    }
    with zipfile.ZipFile(path) as zf:
        for member, n in chunks.items():
            info = zf.getinfo(member)
            start = _data_offset(path, info)
            if member.endswith(".npy"):
                header, dtype, shape, fortran = _npy_header(zf, info)
                start += header
            else:
                dtype, shape, fortran = np.dtype(raw[member][0]), raw[member][1], False
            array = member.rsplit(".", 1)[0]
            for parent in Path(array).parents[:-1]:
                refs[f"{parent.as_posix()}/.zgroup"] = json.dumps({"zarr_format": 2})
            axis = len(shape) - 1 if fortran else 0
            chunk_shape = list(shape)
            if shape:
                chunk_shape[axis] = shape[axis] // n if shape[axis] else 0
            refs[f"{array}/.zarray"] = json.dumps(
                {
                    "chunks": chunk_shape,
                    "compressor": None,
                    "dtype": dtype.str,
                    "fill_value": None,
                    "filters": None,
                    "order": "F" if fortran else "C",
                    "shape": list(shape),
                    "zarr_format": 2,
                }
            )
            dims = [f"{Path(array).name}_{i}" for i in range(len(shape))]
            refs[f"{array}/.zattrs"] = json.dumps(
                {"_ARRAY_DIMENSIONS": dims, "member": member, "crc32": info.CRC}
            )
            if shape and not shape[axis]:
                continue  # no rows, no chunks
            size = (info.file_size - (start - _data_offset(path, info))) // max(n, 1)
            for i in range(n if shape else 1):
                index = [0] * len(shape)
                if shape:
                    index[axis] = i
                key = ".".join(map(str, index)) or "0"
                refs[f"{array}/{key}"] = [url, start + i * size, size]
    return {"version": 1, "refs": refs}


# --- the archives ------------------------------------------------------------------------------


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _npy(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _sources(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "values.bin": rng.random((4000, 4), dtype=np.float32),  # C order, 8 chunks
        "big.npy": rng.integers(-(2**31), 2**31 - 1, (100, 3)).astype(">i4"),
        "fortran.npy": np.asfortranarray(rng.random((6, 10))),  # <f8, 5 column chunks
        "scalar.npy": np.array(2.5),
        "sub/x.npy": np.arange(12, dtype="|u1"),
        "sub/deeper/flags.npy": rng.random(16) > 0.5,
        "cplx.npy": (rng.random((8, 2)) + 1j * rng.random((8, 2))).astype("<c8"),
        "empty.npy": np.zeros((0, 4), dtype="<f4"),
    }


_CHUNKS = {
    "values.bin": 8,
    "big.npy": 4,
    "fortran.npy": 5,
    "scalar.npy": 1,
    "sub/x.npy": 3,
    "sub/deeper/flags.npy": 2,
    "cplx.npy": 2,
    "empty.npy": 1,
}


def _archive(path: Path, seed: int = 0) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """An archive of every kind of member, and its kerchunk document."""
    sources = _sources(seed)
    members = {
        name: (arr.tobytes() if name.endswith(".bin") else _npy(arr))
        for name, arr in sources.items()
    }
    _zip(path, members)
    doc = _document(path, _CHUNKS, raw={"values.bin": ("<f4", (4000, 4))})
    return doc, sources


def _same_bytes(read: np.ndarray, source: np.ndarray) -> bool:
    """Byte for byte, in the source's dtype (byte order included) and C order."""
    assert read.shape == source.shape
    return read.astype(source.dtype).tobytes(order="C") == source.tobytes(order="C")


def _history(repo: Path) -> list[Any]:
    storage = icechunk.local_filesystem_storage(str(repo))
    return list(icechunk.Repository.open(storage).ancestry(branch="main"))


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)


# --- tests ---------------------------------------------------------------------------------------


def test_arrays_read_back_byte_for_byte(tmp_path: Path) -> None:
    zip_path = tmp_path / "in" / "a.zip"
    doc, sources = _archive(zip_path)
    repo = tmp_path / "repo"
    snapshot = write_repository(
        str(repo), {"a": doc}, [], "first", {str(zip_path): _mtime(zip_path)}
    )
    assert snapshot and _history(repo)[0].message == "first"
    assert is_repository(str(repo)) and group_names(str(repo)) == ["a"]

    group = open_group(str(repo), "a")
    assert group.attrs.asdict() == {"source": "a.zip"}
    for member, source in sources.items():
        array = group[member.rsplit(".", 1)[0]]
        assert _same_bytes(array[...], source), member
        names = tuple(f"{array.basename}_{i}" for i in range(source.ndim))
        assert (array.metadata.dimension_names or ()) == names
        assert array.attrs["member"] == member and "_ARRAY_DIMENSIONS" not in array.attrs
        assert array.compressors == ()
    # Byte order and memory order are in the codecs, not in a copy.
    assert group["big"].metadata.to_dict()["codecs"][-1]["configuration"]["endian"] == "big"
    assert group["fortran"].metadata.to_dict()["codecs"][0] == {
        "name": "transpose",
        "configuration": {"order": (1, 0)},
    }
    assert group["values"].chunks == (500, 4) and group["fortran"].chunks == (6, 2)
    # Every chunk is a reference into the archive, none a copy.
    session = group.store.session
    for i in range(8):
        assert session.chunk_type("/a/values", [i, 0]) == icechunk.ChunkType.VIRTUAL
    assert session.chunk_type("/a/scalar", []) == icechunk.ChunkType.VIRTUAL
    assert not (repo / "chunks").exists()


def test_fresh_process_and_xarray(tmp_path: Path) -> None:
    zip_path = tmp_path / "in" / "a.zip"
    doc, sources = _archive(zip_path)
    repo = tmp_path / "repo"
    write_repository(str(repo), {"a": doc}, [], "w")

    # A reader with nothing but the repository's path.
    code = textwrap.dedent(
        f"""
        import numpy as np
        from zconvert.run.icechunk_repo import open_group
        group = open_group({str(repo)!r}, "a")
        print(float(np.asarray(group["values"][:], dtype=np.float64).sum()))
        print(int(group["big"][:].astype(np.int64).sum()))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert float(out[0]) == float(sources["values.bin"].astype(np.float64).sum())
    assert int(out[1]) == int(sources["big.npy"].astype(np.int64).sum())

    xr = pytest.importorskip("xarray")
    group = open_group(str(repo), "a")
    ds = xr.open_zarr(group.store, consolidated=False, group="a")
    assert ds.attrs == {"source": "a.zip"}
    np.testing.assert_array_equal(ds["values"].values, sources["values.bin"])
    np.testing.assert_array_equal(ds["fortran"].values, sources["fortran.npy"])
    assert ds["values"].dims == ("values_0", "values_1") and ds["scalar"].values == 2.5
    assert ds["big"].attrs["member"] == "big.npy"


def test_identical_write_makes_no_commit(tmp_path: Path) -> None:
    zip_path = tmp_path / "in" / "a.zip"
    doc, _ = _archive(zip_path)
    repo = str(tmp_path / "repo")
    modified = {str(zip_path): _mtime(zip_path)}
    assert write_repository(repo, {"a": doc}, [], "w", modified)
    before = len(_history(Path(repo)))
    assert write_repository(repo, {"a": json.loads(json.dumps(doc))}, [], "again", modified) is None
    assert write_repository(repo, {}, [], "nothing") is None
    assert write_repository(repo, {}, ["never-written"], "no such group") is None
    assert len(_history(Path(repo))) == before
    # A new checksum time is a change: the group is written again.
    later = {str(zip_path): datetime(2030, 1, 1, tzinfo=UTC)}
    assert write_repository(repo, {"a": doc}, [], "new time", later)
    assert len(_history(Path(repo))) == before + 1


def test_replace_and_remove_in_one_commit(tmp_path: Path) -> None:
    repo = str(tmp_path / "repo")
    doc_a, _ = _archive(tmp_path / "in" / "a.zip", seed=1)
    doc_b, sources_b = _archive(tmp_path / "in" / "b.zip", seed=2)
    write_repository(repo, {"a": doc_a, "b": doc_b}, [], "both")
    assert group_names(repo) == ["a", "b"]
    before = len(_history(Path(repo)))

    # b replaced by a document of one member only: the other members must go.
    small = _zip(tmp_path / "in" / "b2.zip", {"values.bin": sources_b["values.bin"].tobytes()})
    doc_b2 = _document(small, {"values.bin": 4}, raw={"values.bin": ("<f4", (4000, 4))})
    assert write_repository(repo, {"b": doc_b2}, ["a"], "drop a, replace b")
    history = _history(Path(repo))
    assert len(history) == before + 1 and history[0].message == "drop a, replace b"
    assert group_names(repo) == ["b"]
    group = open_group(repo, "b")
    assert sorted(group.array_keys()) == ["values"] and "sub" not in group
    assert _same_bytes(group["values"][:], sources_b["values.bin"])
    assert group["values"].chunks == (1000, 4)


def test_remove_every_group_then_write_again(tmp_path: Path) -> None:
    repo = str(tmp_path / "repo")
    doc, sources = _archive(tmp_path / "in" / "a.zip")
    write_repository(repo, {"a": doc}, [], "w")
    assert write_repository(repo, {}, ["a"], "empty") and group_names(repo) == []
    assert write_repository(repo, {"a": doc}, [], "back") and group_names(repo) == ["a"]
    assert _same_bytes(open_group(repo, "a")["sub/x"][:], sources["sub/x.npy"])


def test_changed_archive_is_refused(tmp_path: Path) -> None:
    zip_path = tmp_path / "in" / "a.zip"
    doc, sources = _archive(zip_path)
    # A sub-second mtime, as local filesystems have: Icechunk keeps whole seconds.
    os.utime(zip_path, ns=(1_700_000_000_250_000_000,) * 2)
    repo = str(tmp_path / "repo")
    write_repository(repo, {"a": doc}, [], "w", {str(zip_path): _mtime(zip_path)})
    assert _same_bytes(open_group(repo, "a")["values"][:], sources["values.bin"])

    # The same layout, other values, written in place later: no chunk may be served.
    _archive(zip_path, seed=9)
    os.utime(zip_path, (1_700_000_100, 1_700_000_100))
    with pytest.raises(icechunk.IcechunkError, match="checksum of the object"):
        open_group(repo, "a")["values"][:]


def test_containers_are_declared_in_the_repository(tmp_path: Path) -> None:
    zip_path = tmp_path / "in" / "a.zip"
    doc, _ = _archive(zip_path)
    repo = tmp_path / "repo"
    write_repository(str(repo), {"a": doc}, [], "w")
    storage = icechunk.local_filesystem_storage(str(repo))
    config = icechunk.Repository.fetch_config(storage)
    top = zip_path.resolve().parts[1]
    assert set(config.virtual_chunk_containers) == {f"file:///{top}/"}
    # Without authorising them a reader gets no bytes.
    session = icechunk.Repository.open(storage).readonly_session(branch="main")
    import zarr

    with pytest.raises(icechunk.IcechunkError, match="authorize"):
        zarr.open_group(session.store, path="a", mode="r")["values"][:]


def test_is_repository(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    assert not is_repository(str(missing)) and not missing.exists()
    (tmp_path / "plain").mkdir()
    assert not is_repository(str(tmp_path / "plain"))
    assert not is_repository(str(_zip(tmp_path / "x.zip", {"a": b"1"})))


def test_rejects_unusable_documents(tmp_path: Path) -> None:
    zip_path = tmp_path / "in" / "a.zip"
    doc, _ = _archive(zip_path)
    with pytest.raises(ValueError, match="both written and removed"):
        write_repository(str(tmp_path / "r"), {"a": doc}, ["a"], "w")
    compressed = json.loads(json.dumps(doc))
    meta = json.loads(compressed["refs"]["values/.zarray"])
    compressed["refs"]["values/.zarray"] = json.dumps({**meta, "compressor": {"id": "zlib"}})
    with pytest.raises(ValueError, match="compressed"):
        write_repository(str(tmp_path / "r"), {"a": compressed}, [], "w")


def test_s3_archives_and_repository(tmp_path: Path, s3: S3) -> None:
    local = tmp_path / "a.zip"
    _, sources = _archive(local)
    url = s3.upload(local, "in/a.zip")
    doc = _document(local, _CHUNKS, raw={"values.bin": ("<f4", (4000, 4))}, url=url)
    info = s3.fs().info(url)
    repo = s3.url("repo")
    opts = s3.storage_options
    assert not is_repository(repo, opts)
    assert write_repository(repo, {"a": doc}, [], "w", {url: info["LastModified"]}, opts)
    assert is_repository(repo, opts) and group_names(repo, opts) == ["a"]
    assert (
        write_repository(repo, {"a": doc}, [], "again", {url: info["LastModified"]}, opts) is None
    )

    group = open_group(repo, "a", opts)
    for member, source in sources.items():
        assert _same_bytes(group[member.rsplit(".", 1)[0]][...], source), member
    containers = group.store.session.config.virtual_chunk_containers
    assert set(containers) == {f"s3://{s3.bucket}/"}

    # Rewritten in place a second later (S3 keeps whole seconds): refused.
    time.sleep(max(0.0, info["LastModified"].timestamp() + 1.05 - time.time()))
    _archive(local, seed=9)
    s3.upload(local, "in/a.zip")
    with pytest.raises(icechunk.IcechunkError, match="checksum of the object"):
        open_group(repo, "a", opts)["values"][:]
