"""ISA-L called directly (inflate into the caller's buffer): same bytes, same errors."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from zconvert.core.errors import ArchiveError
from zconvert.zipread import direct_inflate
from zconvert.zipread.archive import MemberReader
from zconvert.zipread.members import list_members, open_archive

from ..conftest import float_rows, make_zip


def _read(path, piece: int) -> tuple[MemberReader, bytes]:  # type: ignore[no-untyped-def]
    fileobj, zf = open_archive(str(path))
    with fileobj, zf:
        (member,) = list_members(str(path), zf)
        reader = MemberReader(str(path), fileobj, zf, member)
        out = bytearray(member.file_size + piece)
        n = 0
        while got := reader.readinto(memoryview(out)[n : n + piece]):
            n += got
        reader.verify_end()
        reader.close()
    return reader, bytes(out[:n])


def test_isal_is_called_directly_here() -> None:
    # isal is a core dependency, so a plain install takes the direct path.
    assert direct_inflate.available()


@pytest.mark.parametrize("piece", [1, 4093, 1 << 20])
def test_direct_inflate_gives_the_bytes_and_crc(tmp_path, piece) -> None:  # type: ignore[no-untyped-def]
    data = np.concatenate([float_rows(50_000), np.zeros((20_000, 4), "<f4")]).tobytes()
    path = make_zip(tmp_path / "a.zip", {"blob.bin": np.frombuffer(data, "<f4")})
    reader, raw = _read(path, piece)
    assert reader._direct is not None
    assert raw == data


def test_decompress_path_when_isal_cannot_be_called_directly(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(direct_inflate, "_checked", False)
    data = float_rows(30_000)
    path = make_zip(tmp_path / "a.zip", {"blob.bin": data})
    reader, raw = _read(path, 1 << 16)
    assert reader._direct is None and reader._raw is not None
    assert raw == data.tobytes()


def test_self_test_refuses_another_struct_layout(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert direct_inflate._self_test()
    monkeypatch.setattr(direct_inflate, "_CRC", direct_inflate._CRC + 4)
    assert not direct_inflate._self_test()


def _deflated(tmp_path):  # type: ignore[no-untyped-def]
    path = make_zip(tmp_path / "a.zip", {"blob.bin": float_rows(100_000)})
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("blob.bin")
        start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    return path, bytearray(path.read_bytes()), start, info.compress_size


def test_invalid_block_is_a_corrupt_member(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path, blob, start, _ = _deflated(tmp_path)
    blob[start] = 0xFF  # BFINAL=1, BTYPE=11: a reserved block type
    path.write_bytes(bytes(blob))
    with pytest.raises(ArchiveError, match="corrupt deflate data"):
        _read(path, 1 << 20)


def test_deflate_stream_cut_short_is_reported(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path, blob, start, size = _deflated(tmp_path)
    # Keep the directory's sizes but zero the stream's second half: ISA-L reads stored or
    # garbage blocks there, or runs out: each ends as a clean ArchiveError, never a crash.
    blob[start + size // 2 : start + size] = bytes(size - size // 2)
    path.write_bytes(bytes(blob))
    with pytest.raises(ArchiveError):
        _read(path, 1 << 20)
