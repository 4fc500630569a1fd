"""Member names as their writer meant them: UTF-8 flagged or not, Info-ZIP's Unicode Path extra
field, Windows' CP437. Info-ZIP on Linux writes UTF-8 bytes without the UTF-8 flag, which
Python's zipfile reads as CP437 ('café.bin' became an array named 'caf├⌐')."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import zconvert

from ..conftest import float_rows
from .test_writers import require_tool

CAFE = float_rows(300, seed=11)
DONNEES = float_rows(200, seed=12)
UTF8_FLAG = 0x800


def raw_name_zip(path: Path, entries: list[tuple[bytes, bytes, bytes]]) -> Path:
    """An archive whose names are exactly the given bytes, the UTF-8 flag unset, as Info-ZIP and
    old Windows tools write them: entries of (name bytes, data, central and local extra field).
    zipfile writes each under an ASCII stand-in of the same length, then the bytes replace it."""
    stand_ins = [str(i).rjust(len(raw), "#").encode() for i, (raw, _, _) in enumerate(entries)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for stand_in, (_, data, extra) in zip(stand_ins, entries, strict=True):
            info = zipfile.ZipInfo(stand_in.decode(), (2024, 3, 1, 12, 0, 0))
            info.extra = extra
            zf.writestr(info, data)
    blob = path.read_bytes()
    for stand_in, (raw, _, _) in zip(stand_ins, entries, strict=True):
        assert blob.count(stand_in) == 2, stand_in  # its local header and central entry
        blob = blob.replace(stand_in, raw)
    path.write_bytes(blob)
    return path


def unicode_path_field(name: str, for_raw: bytes) -> bytes:
    """Info-ZIP's Unicode Path extra field (0x7075): version 1, the CRC32 of the header name it
    stands for, the UTF-8 name."""
    utf8 = name.encode()
    return struct.pack("<HHBL", 0x7075, 5 + len(utf8), 1, zlib.crc32(for_raw)) + utf8


def convert_one(archive: Path, out: Path, fmt: str = "zarr") -> Path:
    report = zconvert.convert(archive, out, format=fmt, executor="serial")
    assert report.ok, [r.error for r in report.failed]
    (result,) = report.converted
    return Path(result.store)


def arrays_of(store: Path) -> dict[str, np.ndarray]:
    return {n: np.asarray(zconvert.open(store, n)[...]) for n in zconvert.array_names(store)}


def raw_names(archive: Path) -> dict[bytes, int]:
    """Each member's name bytes as written, with its flag bits (zipfile decoded unflagged names
    as CP437, which encodes back to the same bytes)."""
    with zipfile.ZipFile(archive) as zf:
        return {
            i.orig_filename.encode("utf-8" if i.flag_bits & UTF8_FLAG else "cp437"): i.flag_bits
            for i in zf.infolist()
        }


# --- Info-ZIP in a UTF-8 locale: UTF-8 bytes, no flag ---------------------------------------


def _sources(folder: Path) -> Path:
    (folder / "données").mkdir(parents=True)
    CAFE.tofile(folder / "café.bin")
    DONNEES.tofile(folder / "données" / "x.bin")
    return folder


def info_zip(src: Path, archive: Path) -> None:
    """`zip -r a.zip café.bin données/` as a Linux user runs it."""
    subprocess.run(
        [require_tool("zip"), "-q", "-r", str(archive), "café.bin", "données"],
        cwd=src,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
        check=True,
        timeout=60,
    )


def by_hand(src: Path, archive: Path) -> None:
    """The same name bytes, for machines without Info-ZIP."""
    raw_name_zip(
        archive,
        [
            ("café.bin".encode(), (src / "café.bin").read_bytes(), b""),
            ("données/x.bin".encode(), (src / "données/x.bin").read_bytes(), b""),
        ],
    )


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
@pytest.mark.parametrize("build", [info_zip, by_hand], ids=["info-zip", "by-hand"])
def test_unflagged_utf8_names_keep_their_accents(
    tmp_path: Path, build: Callable[[Path, Path], None], fmt: str
) -> None:
    archive = tmp_path / "in" / "a.zip"
    archive.parent.mkdir()
    build(_sources(tmp_path / "src"), archive)
    files = {raw: f & UTF8_FLAG for raw, f in raw_names(archive).items() if not raw.endswith(b"/")}
    assert files == {"café.bin".encode(): 0, "données/x.bin".encode(): 0}  # UTF-8, unflagged
    out = tmp_path / "out"
    store = convert_one(archive, out, fmt)
    arrays = arrays_of(store)
    assert sorted(arrays) == ["café", "données/x"]
    np.testing.assert_array_equal(arrays["café"], CAFE)
    np.testing.assert_array_equal(arrays["données/x"], DONNEES)
    (entry,) = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["stores"]
    assert sorted(a["member"] for a in entry["arrays"]) == ["café.bin", "données/x.bin"]
    # the rerun (resume) and verify read the archive's names the same way
    rerun = zconvert.convert(archive, out, format=fmt, executor="serial")
    assert [r.status for r in rerun.results] == ["skipped"]
    assert zconvert.verify(out, sources=True, workers=1) == []


def test_open_memmap_of_an_archive_finds_a_member_by_its_meant_name(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    by_hand(_sources(tmp_path / "src"), archive)
    np.testing.assert_array_equal(zconvert.open_memmap(archive, "café"), CAFE)
    np.testing.assert_array_equal(zconvert.open_memmap(archive, "données/x.bin"), DONNEES)


# --- Info-ZIP's Unicode Path extra field -------------------------------------------------------


def test_unicode_path_field_names_the_member_when_its_crc_is_the_header_names(
    tmp_path: Path,
) -> None:
    """The header holds a stand-in (what a tool in another locale wrote); the field, whose
    CRC32 is that stand-in's, holds the real name. A stale field (its CRC32 another name's,
    left by a tool that renamed the member) is ignored."""
    archive = raw_name_zip(
        tmp_path / "in" / "a.zip",
        [
            (b"caf_.bin", CAFE.tobytes(), unicode_path_field("café.bin", b"caf_.bin")),
            (b"old.bin", DONNEES.tobytes(), unicode_path_field("renamed.bin", b"older.bin")),
        ],
    )
    arrays = arrays_of(convert_one(archive, tmp_path / "out"))
    assert sorted(arrays) == ["café", "old"]
    np.testing.assert_array_equal(arrays["café"], CAFE)
    np.testing.assert_array_equal(arrays["old"], DONNEES)


# --- what already read right must stay right ---------------------------------------------------


def test_windows_cp437_name_that_is_not_utf8_reads_as_cp437(tmp_path: Path) -> None:
    raw = "Müller.bin".encode("cp437")  # b"M\x81ller.bin": not valid UTF-8
    archive = raw_name_zip(tmp_path / "in" / "a.zip", [(raw, CAFE.tobytes(), b"")])
    arrays = arrays_of(convert_one(archive, tmp_path / "out"))
    assert list(arrays) == ["Müller"]


def test_python_written_names_carry_the_utf8_flag_and_read_as_written(tmp_path: Path) -> None:
    archive = tmp_path / "in" / "a.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("Müller/café.bin", CAFE.tobytes())
    assert raw_names(archive) == {"Müller/café.bin".encode(): UTF8_FLAG}
    arrays = arrays_of(convert_one(archive, tmp_path / "out"))
    assert list(arrays) == ["Müller/café"]
