"""How each ZIP writer in common use archives the same two files, for tests/zipread/test_writers.py.

A Writer is plain data: the programs it needs, how to run them, and what the archive must
hold and look like. The `features` it promises are checked on the archive itself, so a tool
that changes what it writes (no data descriptor any more, no ZIP64) fails loudly instead of
leaving a variant untested.
"""

from __future__ import annotations

import io
import struct
import subprocess
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# tool name -> its path, as require_tool found it
Tools = Mapping[str, str]
# (source folder, archive to create, tools) -> None
Build = Callable[[Path, Path, Tools], None]

MEMBERS = ("a.bin", "sub/b.bin")
ARRAYS = {"a": "a.bin", "sub/b": "sub/b.bin"}  # array name -> source file
ARRAYS_FROM_STDIN = {"-": "a.bin"}  # `zip out.zip -` names its one member "-"
# A self-extracting archive is a program followed by a ZIP; any bytes stand in for it.
SFX_STUB = b"MZ" + np.random.default_rng(7).bytes(5000)
APPLEDOUBLE_MAGIC = b"\x00\x05\x16\x07"


@dataclass(frozen=True)
class Writer:
    """One way of writing the archive, and what converting it must give."""

    id: str
    build: Build
    tools: tuple[str, ...] = ()
    suffix: str = ".zip"
    arrays: Mapping[str, str] = field(default_factory=lambda: ARRAYS)
    skipped: frozenset[str] = frozenset()  # metadata members the manifest must list
    features: frozenset[str] = frozenset()  # see archive_features

    def archive_name(self) -> str:
        return self.id + self.suffix


def write_sources(folder: Path, seed: int = 2024) -> None:
    """a.bin (1000 x 4) and sub/b.bin (500 x 4): raw float32 from a seeded generator."""
    rng = np.random.default_rng(seed)
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    rng.random((1000, 4), dtype=np.float32).tofile(folder / "a.bin")
    rng.random((500, 4), dtype=np.float32).tofile(folder / "sub" / "b.bin")


def run(cmd: list[str], cwd: Path, stdin: bytes | None = None) -> bytes:
    """Run a writer; its stdout is a pipe (unseekable), as in `writer | cat > out.zip`."""
    proc = subprocess.run(cmd, cwd=cwd, input=stdin, capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{cmd} exited {proc.returncode}: {proc.stderr.decode(errors='replace')}"
        )
    return proc.stdout


# Info-ZIP zip


def info_zip(*flags: str) -> Build:
    def build(src: Path, archive: Path, tools: Tools) -> None:
        run([tools["zip"], "-q", *flags, str(archive), *MEMBERS], src)

    return build


def info_zip_piped(src: Path, archive: Path, tools: Tools) -> None:
    """`zip - a.bin sub/b.bin | cat > out.zip`: redirected to a file, zip would seek back."""
    archive.write_bytes(run([tools["zip"], "-q", "-", *MEMBERS], src))


def info_zip_from_stdin(src: Path, archive: Path, tools: Tools) -> None:
    """`cat a.bin | zip out.zip -`: one member named "-", of unknown size while written."""
    run([tools["zip"], "-q", str(archive), "-"], src, stdin=(src / "a.bin").read_bytes())


def info_zip_stdin_to_pipe(src: Path, archive: Path, tools: Tools) -> None:
    """`cat a.bin | zip - - | cat > out.zip`: neither size nor output position known."""
    archive.write_bytes(run([tools["zip"], "-q", "-", "-"], src, (src / "a.bin").read_bytes()))


def info_zip_comment(src: Path, archive: Path, tools: Tools) -> None:
    comment = b"Acquired 2024-03-01 on rig 3\nsecond line of the comment\n"
    run([tools["zip"], "-q", "-z", str(archive), *MEMBERS], src, stdin=comment)


def info_zip_folder(src: Path, archive: Path, tools: Tools) -> None:
    """`zip -r out.zip .`: a directory entry "sub/" besides the files."""
    run([tools["zip"], "-q", "-r", str(archive), "."], src)


def info_zip_sfx(fix_offsets: bool) -> Build:
    """A stub program prepended to a finished zip; `zip -A` rewrites the offsets after it."""

    def build(src: Path, archive: Path, tools: Tools) -> None:
        plain = archive.with_name(archive.stem + ".plain.zip")
        run([tools["zip"], "-q", str(plain), *MEMBERS], src)
        archive.write_bytes(SFX_STUB + plain.read_bytes())
        plain.unlink()
        if fix_offsets:
            run([tools["zip"], "-q", "-A", str(archive)], src)

    return build


def info_zip_behind_other_zip(src: Path, archive: Path, tools: Tools) -> None:
    """`cat old.zip new.zip > out.zip`, both stored with the same names and sizes: new.zip's
    offsets, not fixed, land on old.zip's members, valid headers of other data."""
    old_src = archive.with_name(archive.stem + ".old")
    write_sources(old_src, seed=1)
    old, new = archive.with_name("old.zip"), archive.with_name("new.zip")
    run([tools["zip"], "-q", "-0", str(old), *MEMBERS], old_src)
    run([tools["zip"], "-q", "-0", str(new), *MEMBERS], src)
    archive.write_bytes(old.read_bytes() + new.read_bytes())
    old.unlink()
    new.unlink()


# 7-Zip, libarchive, JDK


def seven_zip(*switches: str) -> Build:
    def build(src: Path, archive: Path, tools: Tools) -> None:
        run([tools["7zz"], "a", "-tzip", "-bso0", "-bsp0", *switches, str(archive), *MEMBERS], src)

    return build


def bsdtar(*options: str) -> Build:
    """bsdtar given the folder "sub" (as users do) adds a "sub/" directory entry."""

    def build(src: Path, archive: Path, tools: Tools) -> None:
        run([tools["bsdtar"], *options, "-cf", str(archive), "a.bin", "sub"], src)

    return build


def jar(mode: str) -> Build:
    def build(src: Path, archive: Path, tools: Tools) -> None:
        run([tools["jar"], mode, str(archive), *MEMBERS], src)

    return build


# Python's zipfile, and desktops emulated with it


class Unseekable(io.RawIOBase):
    """A write-only stream without seek or tell: zipfile then writes data descriptors
    (flag bit 3) after each member, as Finder's Archive Utility and streaming writers do."""

    def __init__(self, raw: io.BufferedWriter) -> None:
        self._raw = raw

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        return self._raw.write(data)


def python_zipfile(compression: int, force_zip64: bool = False) -> Build:
    def build(src: Path, archive: Path, tools: Tools) -> None:
        with zipfile.ZipFile(archive, "w", compression=compression) as zf:
            for name in MEMBERS:
                with zf.open(name, "w", force_zip64=force_zip64) as dest:
                    dest.write((src / name).read_bytes())

    return build


def _apple_double(name: str) -> bytes:
    """A 4 KiB AppleDouble file as Finder writes beside each file (extended attributes)."""
    header = APPLEDOUBLE_MAGIC + b"\x00\x02\x00\x00" + b"Mac OS X        " + b"\x00\x02"
    header += struct.pack(">3L", 9, 50, 4096 - 50 - 286) + struct.pack(">3L", 2, 3810, 286)
    body = b"ATTR" + name.encode() + b"\x00com.apple.quarantine\x00"
    return (header + body).ljust(4096, b"\x00")


_DS_STORE = (b"\x00\x00\x00\x01Bud1" + b"\x00" * 16).ljust(6148, b"\x00")


def _streamed_zip(archive: Path, entries: list[tuple[str, bytes | None]]) -> None:
    """Deflated members streamed to an unseekable file (None: a directory entry)."""
    with open(archive, "wb") as raw, zipfile.ZipFile(Unseekable(raw), "w") as zf:
        for name, data in entries:
            if data is None:
                zf.writestr(zipfile.ZipInfo(name, (2024, 3, 1, 12, 0, 0)), b"")
                continue
            info = zipfile.ZipInfo(name, (2024, 3, 1, 12, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w") as dest:
                dest.write(data)


def macos_finder(src: Path, archive: Path, tools: Tools) -> None:
    """Finder's "Compress": AppleDouble files under __MACOSX/, .DS_Store files, directories."""
    _streamed_zip(
        archive,
        [
            ("a.bin", (src / "a.bin").read_bytes()),
            ("__MACOSX/", None),
            ("__MACOSX/._a.bin", _apple_double("a.bin")),
            (".DS_Store", _DS_STORE),
            ("sub/", None),
            ("sub/b.bin", (src / "sub/b.bin").read_bytes()),
            ("sub/.DS_Store", _DS_STORE),
            ("__MACOSX/sub/", None),
            ("__MACOSX/sub/._b.bin", _apple_double("b.bin")),
        ],
    )


def windows_explorer(src: Path, archive: Path, tools: Tools) -> None:
    """Explorer's "Send to compressed folder" with its thumbnail cache and folder settings."""
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.write(src / "a.bin", "a.bin")
        zf.writestr("Thumbs.db", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1".ljust(3072, b"\x00"))
        zf.writestr(zipfile.ZipInfo("sub/", (2024, 3, 1, 12, 0, 0)), b"")
        zf.write(src / "sub" / "b.bin", "sub/b.bin")
        zf.writestr("sub/desktop.ini", b"[.ShellClassInfo]\r\nIconResource=C:\\x.dll,0\r\n")


STORED, DEFLATE, DEFLATE64, BZIP2, LZMA = (
    "method:0",
    "method:8",
    "method:9",
    "method:12",
    "method:14",
)
MANIFEST_SKIPPED = frozenset({"META-INF/MANIFEST.MF"})

WRITERS = (
    Writer("zip-0", info_zip("-0"), ("zip",), features=frozenset({STORED})),
    Writer("zip-1", info_zip("-1"), ("zip",), features=frozenset({DEFLATE})),
    Writer("zip-6", info_zip("-6"), ("zip",), features=frozenset({DEFLATE})),
    Writer("zip-9", info_zip("-9"), ("zip",), features=frozenset({DEFLATE})),
    Writer("zip-fz", info_zip("-fz"), ("zip",), features=frozenset({DEFLATE, "zip64"})),
    Writer("zip-piped", info_zip_piped, ("zip",), features=frozenset({DEFLATE, "descriptor"})),
    Writer(
        "zip-stdin",
        info_zip_from_stdin,
        ("zip",),
        arrays=ARRAYS_FROM_STDIN,
        features=frozenset({DEFLATE, "zip64"}),
    ),
    Writer(
        "zip-stdin-piped",
        info_zip_stdin_to_pipe,
        ("zip",),
        arrays=ARRAYS_FROM_STDIN,
        features=frozenset({DEFLATE, "zip64", "descriptor"}),
    ),
    Writer("zip-comment", info_zip_comment, ("zip",), features=frozenset({"comment"})),
    Writer("zip-r", info_zip_folder, ("zip",), features=frozenset({"directory"})),
    Writer("zip-sfx-A", info_zip_sfx(fix_offsets=True), ("zip",), features=frozenset({"prefix"})),
    Writer("7z-deflate", seven_zip("-mm=Deflate"), ("7zz",), features=frozenset({DEFLATE})),
    Writer("7z-deflate64", seven_zip("-mm=Deflate64"), ("7zz",), features=frozenset({DEFLATE64})),
    Writer("7z-bzip2", seven_zip("-mm=BZip2"), ("7zz",), features=frozenset({BZIP2})),
    Writer("7z-lzma", seven_zip("-mm=LZMA"), ("7zz",), features=frozenset({LZMA})),
    Writer("7z-store", seven_zip("-mx=0"), ("7zz",), features=frozenset({STORED})),
    Writer(
        "bsdtar-deflate",
        bsdtar("-a"),
        ("bsdtar",),
        features=frozenset({DEFLATE, "descriptor", "directory"}),
    ),
    Writer(
        "bsdtar-store",
        bsdtar("--format", "zip", "--options", "zip:compression=store"),
        ("bsdtar",),
        features=frozenset({STORED, "descriptor", "directory"}),
    ),
    Writer(
        "jar-cf",
        jar("cf"),
        ("jar",),
        suffix=".jar",
        skipped=MANIFEST_SKIPPED,
        features=frozenset({DEFLATE, "descriptor", "directory"}),
    ),
    Writer("jar-cfM", jar("cfM"), ("jar",), suffix=".jar", features=frozenset({"descriptor"})),
    Writer(
        "jar-cf0",
        jar("cf0"),
        ("jar",),
        suffix=".jar",
        skipped=MANIFEST_SKIPPED,
        features=frozenset({STORED, "directory"}),
    ),
    Writer(
        "macos-finder",
        macos_finder,
        skipped=frozenset(
            {"__MACOSX/._a.bin", "__MACOSX/sub/._b.bin", ".DS_Store", "sub/.DS_Store"}
        ),
        features=frozenset({DEFLATE, "descriptor", "directory"}),
    ),
    Writer(
        "windows-explorer",
        windows_explorer,
        skipped=frozenset({"Thumbs.db", "sub/desktop.ini"}),
        features=frozenset({DEFLATE, "directory"}),
    ),
    Writer("py-stored", python_zipfile(zipfile.ZIP_STORED), features=frozenset({STORED})),
    Writer("py-deflated", python_zipfile(zipfile.ZIP_DEFLATED), features=frozenset({DEFLATE})),
    Writer("py-bzip2", python_zipfile(zipfile.ZIP_BZIP2), features=frozenset({BZIP2})),
    Writer("py-lzma", python_zipfile(zipfile.ZIP_LZMA), features=frozenset({LZMA})),
    Writer(
        "py-zip64",
        python_zipfile(zipfile.ZIP_DEFLATED, force_zip64=True),
        features=frozenset({DEFLATE, "zip64"}),
    ),
)

# Offsets still count from the ZIP's own start: zipfile reads it anyway; not every tool does.
UNFIXED_OFFSETS = (
    Writer(
        "zip-sfx-unfixed",
        info_zip_sfx(fix_offsets=False),
        ("zip",),
        features=frozenset({"prefix", "offsets-unfixed"}),
    ),
    Writer(
        "zip-behind-other-zip",
        info_zip_behind_other_zip,
        ("zip",),
        features=frozenset({STORED, "prefix", "offsets-unfixed"}),
    ),
)


def archive_features(archive: Path) -> set[str]:
    """What an archive has that a reader must cope with: 'method:N' for each data member's
    compression, 'descriptor' (flag bit 3), 'zip64' (ZIP64 records or extra fields),
    'directory' entries, a 'comment', a 'prefix' before the first member, and
    'offsets-unfixed' when the end record's offsets ignore that prefix."""
    blob = archive.read_bytes()
    features: set[str] = set()
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        if zf.comment:
            features.add("comment")
    for info in infos:
        if info.is_dir():
            features.add("directory")
        else:
            features.add(f"method:{info.compress_type}")
        if info.flag_bits & 0x08:
            features.add("descriptor")
        name_len, extra_len = struct.unpack_from("<2H", blob, info.header_offset + 26)
        local_extra = blob[info.header_offset + 30 + name_len :][:extra_len]
        if 0x0001 in _extra_ids(info.extra) or 0x0001 in _extra_ids(local_extra):
            features.add("zip64")
    if b"PK\x06\x06" in blob:
        features.add("zip64")
    if min(i.header_offset for i in infos) > 0:
        features.add("prefix")
    end = blob.rfind(b"PK\x05\x06")
    cd_size, cd_start = struct.unpack_from("<2L", blob, end + 12)
    if cd_start != 0xFFFFFFFF and cd_start + cd_size != end:  # ZIP64 ones: not checked
        features.add("offsets-unfixed")
    return features


def _extra_ids(extra: bytes) -> list[int]:
    ids, pos = [], 0
    while pos + 4 <= len(extra):
        header_id, size = struct.unpack_from("<2H", extra, pos)
        ids.append(header_id)
        pos += 4 + size
    return ids
