"""Hostile and broken archives: each fails alone with one clear line naming archive and member,
nothing at its final path, nothing outside OUT, and the good archive next to it converted."""

from __future__ import annotations

import random
import struct
import subprocess
import sys
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zconvert

from ..conftest import corrupt_crc, float_rows, make_zip

GOOD = float_rows(3000, seed=7)

# Field offsets in the local header (after "PK\3\4") and the central directory entry.
_LOCAL = {"flags": 6, "method": 8, "crc": 14, "csize": 18, "usize": 22}
_CENTRAL = {"flags": 8, "method": 10, "crc": 16, "csize": 20, "usize": 24}
_FMT = {"flags": "<H", "method": "<H", "crc": "<I", "csize": "<I", "usize": "<I"}


def patch_member(path: Path, member: str, **fields: int) -> None:
    """Rewrite header fields of `member` in its local header and central directory entry."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    blob = bytearray(path.read_bytes())
    for key, value in fields.items():
        struct.pack_into(_FMT[key], blob, info.header_offset + _LOCAL[key], value)
    pos = 0
    while (pos := blob.find(b"PK\x01\x02", pos)) >= 0:
        name_len = struct.unpack_from("<H", blob, pos + 28)[0]
        if blob[pos + 46 : pos + 46 + name_len].decode() == member:
            for key, value in fields.items():
                struct.pack_into(_FMT[key], blob, pos + _CENTRAL[key], value)
        pos += 4
    path.write_bytes(bytes(blob))


def duplicate_central_entry(path: Path, member: str, new_name: str) -> None:
    """Add a second central-directory entry pointing at `member`'s data: an overlapping bomb."""
    blob = bytearray(path.read_bytes())
    eocd = blob.rfind(b"PK\x05\x06")
    count, cd_size, cd_offset = struct.unpack_from("<HIL", blob, eocd + 10)
    cd = blob[cd_offset : cd_offset + cd_size]
    pos = cd.find(b"PK\x01\x02")
    name_len, extra_len, comment_len = struct.unpack_from("<3H", cd, pos + 28)
    entry = bytearray(cd[pos : pos + 46 + name_len + extra_len + comment_len])
    assert entry[46 : 46 + name_len].decode() == member
    encoded = new_name.encode()
    struct.pack_into("<H", entry, 28, len(encoded))
    entry[46 : 46 + name_len] = encoded
    new_cd = cd + entry
    tail = bytearray(blob[eocd:])
    struct.pack_into("<HHIL", tail, 8, count + 1, count + 1, len(new_cd), cd_offset)
    path.write_bytes(bytes(blob[:cd_offset] + new_cd + tail))


def to_zip64(path: Path) -> None:
    """Rewrite the central directory as a >4 GiB tool would: every size and offset in a ZIP64
    extra field (the 32-bit fields saturated), then ZIP64 end records."""
    blob = bytearray(path.read_bytes())
    eocd = blob.rfind(b"PK\x05\x06")
    count, cd_size, cd_offset = struct.unpack_from("<HIL", blob, eocd + 10)
    cd, new_cd, pos = blob[cd_offset : cd_offset + cd_size], bytearray(), 0
    for _ in range(count):
        name_len, extra_len, comment_len = struct.unpack_from("<3H", cd, pos + 28)
        csize, usize = struct.unpack_from("<II", cd, pos + 20)
        offset = struct.unpack_from("<I", cd, pos + 42)[0]
        entry = bytearray(cd[pos : pos + 46 + name_len + extra_len + comment_len])
        extra = struct.pack("<HHQQQ", 1, 24, usize, csize, offset)
        struct.pack_into("<II", entry, 20, 0xFFFFFFFF, 0xFFFFFFFF)
        struct.pack_into("<I", entry, 42, 0xFFFFFFFF)
        struct.pack_into("<H", entry, 30, extra_len + len(extra))
        at = 46 + name_len + extra_len
        new_cd += entry[:at] + extra + entry[at:]
        pos += 46 + name_len + extra_len + comment_len
    eocd64_at = cd_offset + len(new_cd)
    eocd64 = struct.pack(
        "<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, len(new_cd), cd_offset
    )
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, eocd64_at, 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    path.write_bytes(bytes(blob[:cd_offset] + new_cd + eocd64 + locator + end))


def zeros_member(path: Path, name: str, nbytes: int) -> Path:
    """A real deflated member of `nbytes` zeros, written in pieces (never all in memory)."""
    piece = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open(name, "w", force_zip64=nbytes > (1 << 31)) as f:
            for start in range(0, nbytes, len(piece)):
                f.write(piece[: min(len(piece), nbytes - start)])
    return path


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def convert_next_to_good(tmp_path: Path, build, fmt: str = "zarr", **options):  # type: ignore[no-untyped-def]
    """Convert a good archive and a hostile one together; check everything but the bad line."""
    inp = tmp_path / "in"
    make_zip(inp / "good.zip", {"blob.bin": GOOD})
    bad = inp / "bad.zip"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicates we make on purpose
        build(bad)
    before = _files(tmp_path)
    out = tmp_path / "out"
    report = zconvert.convert(inp, out, format=fmt, executor="serial", **options)
    created = _files(tmp_path) - before
    assert all(out in p.parents or p == out for p in created), "wrote outside OUT"
    by_name = {Path(r.archive).name: r for r in report.results}
    assert by_name["good.zip"].status == "converted", by_name["good.zip"].error
    suffix = ".zarr" if fmt == "zarr" else ".h5"
    np.testing.assert_array_equal(zconvert.open(out / f"good{suffix}")[...], GOOD)
    result = by_name["bad.zip"]
    if result.status == "failed":
        assert result.archive == str(bad)
        assert result.error and "\n" not in result.error and result.traceback is None
        assert not (out / f"bad{suffix}").exists()
        extra = ["all.h5"] if fmt == "hdf5" else []  # the run's virtual dataset
        assert sorted(p.name for p in out.iterdir()) == sorted(
            [f"good{suffix}", "manifest.json", *extra]
        )
    assert zconvert.verify(out) == []
    return result


def _not_zip(p: Path) -> None:
    p.write_bytes(random.Random(1).randbytes(5000))


def _truncated(p: Path) -> None:
    make_zip(p, {"blob.bin": GOOD})
    p.write_bytes(p.read_bytes()[: p.stat().st_size * 6 // 10])


def _empty(p: Path) -> None:
    zipfile.ZipFile(p, "w").close()


def _dirs_only(p: Path) -> None:
    with zipfile.ZipFile(p, "w") as zf:
        zf.mkdir("folder")


def _encrypted(p: Path) -> None:
    make_zip(p, {"blob.bin": GOOD})
    patch_member(p, "blob.bin", flags=0x1)


def _method_99(p: Path) -> None:
    make_zip(p, {"blob.bin": GOOD})
    patch_member(p, "blob.bin", method=99)


def _crc_deflated(p: Path) -> None:
    make_zip(p, {"blob.bin": GOOD})
    corrupt_crc(p, "blob.bin")


def _crc_stored(p: Path) -> None:
    make_zip(p, {"blob.bin": GOOD}, compression=zipfile.ZIP_STORED)
    corrupt_crc(p, "blob.bin")


def _crc_bzip2(p: Path) -> None:
    make_zip(p, {"blob.bin": GOOD}, compression=zipfile.ZIP_BZIP2)
    corrupt_crc(p, "blob.bin")


def _odd_size(p: Path) -> None:
    make_zip(p, {"blob.bin": b"\0" * 17})


def _declares_less(p: Path) -> None:
    make_zip(p, {"blob.bin": GOOD})
    patch_member(p, "blob.bin", usize=GOOD.nbytes - 16)


def _declares_more(p: Path) -> None:
    make_zip(p, {"blob.bin": GOOD})
    patch_member(p, "blob.bin", usize=GOOD.nbytes + 16)


def _declares_compressed_past_end(p: Path) -> None:
    make_zip(p, {"blob.bin": GOOD})
    with zipfile.ZipFile(p) as zf:
        csize = zf.getinfo("blob.bin").compress_size
    patch_member(p, "blob.bin", csize=csize + 100_000)


def _overlapping_bomb(p: Path) -> None:
    make_zip(p, {"blob.bin": GOOD})
    duplicate_central_entry(p, "blob.bin", "blob2.bin")


def _lying_bomb(p: Path) -> None:
    # 64 MiB of zeros that declares 1,600 bytes: passes the ratio check, stopped while streaming.
    zeros_member(p, "blob.bin", 64 << 20)
    patch_member(p, "blob.bin", usize=1600, crc=zlib.crc32(bytes(1600)))


def _ratio_bomb(p: Path) -> None:
    zeros_member(p, "blob.bin", 300 << 20)  # over the 256 MiB floor; 0.3 MB on disk, 1030:1


def _big(p: Path) -> None:
    make_zip(p, {"blob.bin": float_rows(10_000)})  # 160 kB, over a 100 kB limit


def _names(*names: str):  # type: ignore[no-untyped-def]
    def build(p: Path) -> None:
        with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in names:
                zf.writestr(zipfile.ZipInfo(name), GOOD[:10].tobytes())

    return build


CASES = [
    # id, builder, expected member, words (or phrases) in the error, extra options
    ("not_a_zip", _not_zip, None, "not a readable ZIP", {}),
    ("truncated", _truncated, None, "not a readable ZIP", {}),
    ("empty", _empty, None, "no data members", {}),
    ("directories_only", _dirs_only, None, "no data members", {}),
    ("encrypted", _encrypted, "blob.bin", "encrypted", {}),
    ("method_99", _method_99, "blob.bin", "unsupported compression method 99", {}),
    ("crc_deflated", _crc_deflated, "blob.bin", "CRC32 mismatch", {}),
    ("crc_stored", _crc_stored, "blob.bin", "CRC", {}),
    ("crc_bzip2", _crc_bzip2, "blob.bin", "CRC", {}),
    (
        "size_not_a_record",
        _odd_size,
        "blob.bin",
        ("not a multiple of the record size 16", "--dtype", "--shape"),
        {},
    ),
    ("declares_fewer_bytes", _declares_less, "blob.bin", "more or other than", {}),
    ("declares_more_bytes", _declares_more, "blob.bin", "but the archive declares", {}),
    ("data_past_the_end", _declares_compressed_past_end, "blob.bin", "overlaps", {}),
    ("overlapping_bomb", _overlapping_bomb, "blob.bin", "overlaps", {}),
    ("bomb_lying_about_size", _lying_bomb, "blob.bin", "more or other than", {}),
    ("dot_dot", _names("../evil.bin"), "../evil.bin", "'..'", {}),
    ("dot_dot_inside", _names("a/../../evil.bin"), "a/../../evil.bin", "'..'", {}),
    ("absolute", _names("/etc/evil.bin"), "/etc/evil.bin", "absolute path", {}),
    ("drive_letter", _names("C:/evil.bin"), "C:/evil.bin", "absolute path", {}),
    ("backslash", _names("a\\..\\evil.bin"), "a\\..\\evil.bin", "backslash", {}),
    ("duplicate", _names("x.bin", "x.bin"), "x.bin", "duplicate", {}),
    ("same_after_extension", _names("x.bin", "x.dat"), "x.dat", "clashes with 'x.bin'", {}),
    ("same_but_case", _names("X.bin", "x.bin"), "x.bin", "clashes with 'X.bin'", {}),
    ("array_and_folder", _names("x.bin", "x/y.bin"), "x/y.bin", "to be a folder", {}),
    ("reserved_name", _names("__evil.bin"), "__evil.bin", "reserved", {}),
    ("control_character", _names("a\x01.bin"), "a\x01.bin", "control characters", {}),
    ("rows_not_as_declared", _names("x.bin"), "x.bin", "not the 3000", {"shape": (3000, 4)}),
    ("over_max_member_bytes", _big, "blob.bin", "max_member_bytes", {"max_member_bytes": 100_000}),
]


@pytest.mark.parametrize(
    ("build", "member", "words", "options"),
    [pytest.param(*c[1:], id=c[0]) for c in CASES],
)
def test_hostile_archive_fails_alone_with_one_clear_line(tmp_path, build, member, words, options):
    result = convert_next_to_good(tmp_path, build, **options)
    assert result.status == "failed"
    assert result.member == member
    for phrase in [words] if isinstance(words, str) else words:
        assert phrase in result.error


@pytest.mark.slow
def test_bomb_by_ratio_is_refused_before_inflating(tmp_path):
    result = convert_next_to_good(tmp_path, _ratio_bomb)
    assert result.status == "failed" and result.member == "blob.bin"
    assert "max_ratio=1000" in result.error and "decompression bomb" in result.error


@pytest.mark.slow
def test_ratio_limit_is_configurable(tmp_path):
    result = convert_next_to_good(tmp_path, _ratio_bomb, max_ratio=2000.0)
    assert result.status == "converted"


def test_explicit_ratio_limit_applies_to_small_members_too(tmp_path):
    result = convert_next_to_good(
        tmp_path, lambda p: zeros_member(p, "blob.bin", 2 << 20), max_ratio=50.0
    )
    assert result.status == "failed" and result.member == "blob.bin"
    assert "max_ratio=50" in result.error


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_hostile_archive_in_hdf5_too(tmp_path, fmt):
    result = convert_next_to_good(tmp_path, _declares_less, fmt=fmt)
    assert result.status == "failed" and "more or other than" in result.error


def _ordinary(kind: str, rows: int = 2_000_000) -> np.ndarray:
    rng = np.random.default_rng(3)
    if kind == "uniform":
        return rng.random((rows, 4), dtype=np.float32)
    if kind == "smooth":
        return np.cumsum(rng.standard_normal((rows, 4), dtype=np.float32), axis=0)
    if kind == "zero_heavy":
        return np.where(rng.random((rows, 4)) < 0.99, 0, rng.random((rows, 4))).astype(np.float32)
    return np.zeros((rows, 4), np.float32)  # "zeros": deflates about 1030:1


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["uniform", "smooth", "zero_heavy", "zeros"])
def test_default_limits_pass_ordinary_float_data_of_realistic_size(tmp_path, kind):
    data = _ordinary(kind)  # 32 MB, as in the seed data
    make_zip(tmp_path / "in" / "a.zip", {"blob.bin": data})
    report = zconvert.convert(tmp_path / "in", tmp_path / "out", executor="serial", codec="none")
    assert report.ok, report.failed
    assert zconvert.verify(tmp_path / "out") == []


def test_non_ascii_and_space_names_convert(tmp_path):
    names = {"données/température 1.bin": GOOD, "日本/データ.bin": GOOD[:5], "a b/c d.bin": GOOD}
    make_zip(tmp_path / "in" / "ünï code.zip", names)
    report = zconvert.convert(tmp_path / "in", tmp_path / "out", executor="serial")
    assert report.ok, report.failed
    store = tmp_path / "out" / "ünï code.zarr"
    assert zconvert.array_names(store) == sorted(
        ["données/température 1", "日本/データ", "a b/c d"]
    )
    np.testing.assert_array_equal(zconvert.open(store, "日本/データ")[...], GOOD[:5])
    assert zconvert.verify(tmp_path / "out", sources=True) == []


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_zip64_archive_converts(tmp_path, fmt):
    path = tmp_path / "in" / "z64.zip"
    path.parent.mkdir()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("blob.bin", "w", force_zip64=True) as f:  # ZIP64 local header too
            f.write(GOOD.tobytes())
        zf.writestr("stored.bin", GOOD.tobytes(), compress_type=zipfile.ZIP_STORED)
    to_zip64(path)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("blob.bin")
        assert info.extra.startswith(b"\x01\x00") and info.file_size == GOOD.nbytes
    report = zconvert.convert(tmp_path / "in", tmp_path / "out", format=fmt, executor="serial")
    assert report.ok, report.failed
    suffix = ".zarr" if fmt == "zarr" else ".h5"
    for name in ("blob", "stored"):
        arr = zconvert.open(tmp_path / "out" / f"z64{suffix}", name)
        np.testing.assert_array_equal(arr[...], GOOD)
    assert zconvert.verify(tmp_path / "out", sources=True) == []


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_directory_entries_are_skipped_and_empty_members_are_zero_rows(tmp_path, fmt):
    path = tmp_path / "in" / "dirs.zip"
    path.parent.mkdir()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.mkdir("d")
        zf.writestr("d/x.bin", GOOD.tobytes())
        zf.writestr("d/empty.bin", b"")
    report = zconvert.convert(tmp_path / "in", tmp_path / "out", format=fmt, executor="serial")
    assert report.ok, report.failed
    store = report.results[0].store
    assert zconvert.array_names(store) == ["d/empty", "d/x"]
    assert zconvert.open(store, "d/empty").shape == (0, 4)
    assert zconvert.verify(tmp_path / "out", sources=True) == []


def test_cli_prints_one_line_per_hostile_archive_and_no_traceback(tmp_path):
    inp = tmp_path / "in"
    make_zip(inp / "good.zip", {"blob.bin": GOOD})
    builders = [_not_zip, _truncated, _empty, _encrypted, _method_99, _crc_deflated, _lying_bomb]
    builders += [_names("../evil.bin"), _overlapping_bomb, _declares_less]
    for i, build in enumerate(builders):
        build(inp / f"bad_{i}.zip")
    proc = subprocess.run(
        [sys.executable, "-m", "zconvert", "convert", str(inp), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    failed = [line for line in proc.stderr.splitlines() if line.startswith("zconvert: failed: ")]
    assert len(failed) == len(builders), proc.stderr
    assert f"1 converted, 0 skipped, {len(builders)} failed" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.zarr", "manifest.json"]


# --- Property: any corruption of a valid archive ends in verified success or a clean error ---

_ORIGINAL = {"a.bin": float_rows(700, seed=11), "sub/b.bin": float_rows(300, seed=12)}
_METHODS = [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]
_VALID: dict[int, bytes] = {}


def _valid_archive(method: int, tmp: Path) -> bytes:
    if method not in _VALID:
        _VALID[method] = make_zip(tmp / f"valid_{method}.zip", _ORIGINAL, method).read_bytes()
    return _VALID[method]


@st.composite
def corruptions(draw):  # type: ignore[no-untyped-def]
    method = draw(st.sampled_from(_METHODS))
    kind = draw(st.sampled_from(["flip", "flip_headers", "truncate", "splice"]))
    return method, kind, draw(st.randoms(use_true_random=False))


def _corrupt(blob: bytes, kind: str, rnd: random.Random) -> bytes:
    data = bytearray(blob)
    if kind == "truncate":
        return bytes(data[: rnd.randrange(len(data))])
    if kind == "splice":  # drop or duplicate a run of bytes: offsets all shift
        start = rnd.randrange(len(data))
        length = rnd.randrange(1, 200)
        if rnd.random() < 0.5:
            return bytes(data[:start] + data[start + length :])
        return bytes(data[:start] + data[start : start + length] + data[start:])
    # Headers (the first and the last couple of hundred bytes) hold sizes, offsets, CRCs and
    # names, where a single flipped byte does the most interesting damage.
    head = kind == "flip_headers"
    for _ in range(rnd.randrange(1, 6)):
        if head:
            pos = rnd.choice(
                [rnd.randrange(min(80, len(data))), len(data) - 1 - rnd.randrange(250)]
            )
        else:
            pos = rnd.randrange(len(data))
        data[pos] = rnd.randrange(256)
    return bytes(data)


@pytest.mark.slow
@pytest.mark.timeout(900)
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(corruption=corruptions())
def test_corrupted_archive_ends_in_verified_data_or_a_clean_error(tmp_path, corruption):
    import shutil
    import tempfile

    method, kind, rnd = corruption
    blob = _corrupt(_valid_archive(method, tmp_path), kind, rnd)
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    try:
        (work / "in").mkdir()
        (work / "in" / "x.zip").write_bytes(blob)
        out = work / "out"
        report = zconvert.convert(work / "in", out, executor="serial")
        (result,) = report.results
        if result.status == "converted":
            assert zconvert.verify(out, sources=True) == []
            for record in result.arrays:
                if record.member in _ORIGINAL:  # a corrupted name is another member
                    got = zconvert.open(result.store, record.name)[...]
                    np.testing.assert_array_equal(got, _ORIGINAL[record.member])
        else:
            assert result.status == "failed"
            assert result.error and "\n" not in result.error and result.traceback is None
            # Only archive-wide failures go without a member: everything else names it.
            assert result.member is not None or result.error.startswith(
                ("not a readable ZIP archive", "archive holds no data members")
            ), result.error
            assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]
        assert sorted(p.name for p in work.iterdir()) == ["in", "out"]  # nothing outside OUT
    finally:
        shutil.rmtree(work)
