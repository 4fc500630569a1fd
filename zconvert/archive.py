"""Stream ZIP members in bounded pieces: offsets, raw inflate, CRC32 and size checks, limits.

Deflated members go through the fastest raw inflate from the member's data offset; stored,
bzip2 and lzma members go through Python's zipfile. Either way a member is read into a
caller-supplied buffer a slab at a time, so memory is O(slab), never O(member).
"""

from __future__ import annotations

import posixpath
import struct
import zipfile
from dataclasses import dataclass
from typing import Any, BinaryIO

from . import direct_inflate
from .errors import ArchiveError
from .inflate import crc32, raw_decompressobj
from .parallel_inflate import open_parallel

_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_LOCAL_SIGNATURE = b"PK\x03\x04"
# Read and inflate in 256 KiB pieces. Inflate output comes as new bytes objects that the
# inflater grows by realloc; at 1 MiB and more, malloc maps each one afresh and every piece
# costs page faults and copies (py-spy/perf: 20% of the faults), at 256 KiB it recycles
# them: a 32 MB member inflated in 76 ms instead of 104-135 ms here, with no page faults.
# Input is read into one reused buffer (_read_into) for the same reason.
_INPUT_PIECE = 256 << 10
_OUTPUT_PIECE = 256 << 10
# Without an explicit max_ratio, members over RATIO_CHECK_MIN_BYTES are refused above
# DEFAULT_MAX_RATIO: an all-zero member deflates about 1030:1, so a smaller real one (a dead
# sensor channel) still converts, and its output is bounded by its declared size anyway.
DEFAULT_MAX_RATIO = 1000.0
RATIO_CHECK_MIN_BYTES = 64 << 20
_SUPPORTED_METHODS = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflate",
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "lzma",
}


@dataclass(frozen=True)
class Member:
    """A data member of an archive, as its central directory describes it."""

    name: str  # the name as stored in the archive
    array_name: str  # sanitised: the path without its extension, "/"-separated
    file_size: int
    compress_size: int
    crc32: int
    method: int
    header_offset: int
    info: zipfile.ZipInfo


def array_name_for(archive: str, member: str) -> str:
    """The array name for a member: its path without extension; hostile names are refused."""
    if "\\" in member:
        raise ArchiveError(
            archive, member, "member name contains a backslash; rename it in the archive"
        )
    if member.startswith("/") or (len(member) > 1 and member[1] == ":"):
        raise ArchiveError(
            archive, member, "member name is an absolute path; rename it in the archive"
        )
    parts = member.split("/")
    if any(p in ("..", ".") for p in parts):
        raise ArchiveError(
            archive, member, "member name contains '.' or '..'; rename it in the archive"
        )
    if any(p == "" for p in parts):
        raise ArchiveError(
            archive, member, "member name has an empty path part; rename it in the archive"
        )
    if any(p.startswith("__") for p in parts):
        raise ArchiveError(
            archive, member, "member name parts may not start with '__' (reserved by Zarr)"
        )
    if any(ord(c) < 32 for c in member):
        raise ArchiveError(archive, member, "member name contains control characters")
    stem, _ext = posixpath.splitext(member)
    if not posixpath.basename(stem):
        raise ArchiveError(archive, member, "member name is empty once its extension is removed")
    return stem


def list_members(archive: str, zf: zipfile.ZipFile) -> list[Member]:
    """Data members in archive order; directories skipped; names checked for hostility and clashes."""
    members: list[Member] = []
    seen: dict[str, str] = {}
    for info in zf.infolist():
        if info.is_dir():
            continue
        name = array_name_for(archive, info.filename)
        other = seen.get(name.casefold())
        if other is not None:
            what = (
                "is a duplicate" if other == info.filename else f"clashes with {other!r} once named"
            )
            raise ArchiveError(archive, info.filename, f"member {what}; rename one in the archive")
        seen[name.casefold()] = info.filename
        members.append(
            Member(
                name=info.filename,
                array_name=name,
                file_size=info.file_size,
                compress_size=info.compress_size,
                crc32=info.CRC,
                method=info.compress_type,
                header_offset=info.header_offset,
                info=info,
            )
        )
    if not members:
        raise ArchiveError(archive, None, "archive holds no data members")
    _check_nesting(archive, members)
    _check_no_overlap(archive, zf)
    return members


def _check_nesting(archive: str, members: list[Member]) -> None:
    """'a.bin' and 'a/b.bin' would need 'a' to be an array and a group at once."""
    names = {m.array_name.casefold(): m.name for m in members}
    for m in members:
        parts = m.array_name.casefold().split("/")
        for i in range(1, len(parts)):
            other = names.get("/".join(parts[:i]))
            if other is not None:
                raise ArchiveError(
                    archive,
                    m.name,
                    f"member needs {other!r} to be a folder, but it is a member; rename one",
                )


def _check_no_overlap(archive: str, zf: zipfile.ZipFile) -> None:
    """Members whose data overlap are how small archives inflate to huge outputs (overlapping
    zip bombs); no archive a zip tool writes has them. Python 3.11's zipfile does not check."""
    infos = sorted(zf.infolist(), key=lambda i: i.header_offset)
    end_of_data = getattr(zf, "start_dir", None)
    for info, nxt in zip(infos, [*infos[1:], None], strict=True):
        limit = nxt.header_offset if nxt is not None else end_of_data
        # 30 bytes of local header at least; name and extra lengths only make the end later.
        if limit is not None and info.header_offset + 30 + info.compress_size > limit:
            raise ArchiveError(
                archive,
                info.filename,
                "member data overlaps the next member or the central directory "
                "(a zip bomb, or a corrupt archive); re-create the archive",
            )


def check_member(
    archive: str, member: Member, max_ratio: float | None, max_member_bytes: int
) -> None:
    """Refuse what cannot or must not be inflated, before inflating anything."""
    if member.info.flag_bits & 0x1:
        raise ArchiveError(archive, member.name, "member is encrypted; decrypt the archive first")
    if member.method not in _SUPPORTED_METHODS:
        raise ArchiveError(
            archive,
            member.name,
            f"unsupported compression method {member.method}; "
            "re-zip with deflate, bzip2, lzma or no compression",
        )
    if member.file_size > max_member_bytes:
        raise ArchiveError(
            archive,
            member.name,
            f"inflates to {member.file_size} bytes, over max_member_bytes={max_member_bytes}; "
            "raise the limit if this is expected",
        )
    # An explicit max_ratio applies to every member; the default only to large ones. The
    # streaming size check stops a member that inflates past its declared size either way.
    limit = DEFAULT_MAX_RATIO if max_ratio is None else max_ratio
    checked = max_ratio is not None or member.file_size > RATIO_CHECK_MIN_BYTES
    if checked and member.file_size and member.file_size / max(member.compress_size, 1) > limit:
        raise ArchiveError(
            archive,
            member.name,
            f"compression ratio {member.file_size / max(member.compress_size, 1):.0f} exceeds "
            f"max_ratio={limit:g} (possible decompression bomb); raise max_ratio if expected",
        )


class MemberReader:
    """Reads one member's inflated bytes into caller buffers, checking CRC32 and size at the end."""

    def __init__(
        self,
        archive: str,
        fileobj: BinaryIO,
        zf: zipfile.ZipFile,
        member: Member,
        inflate_threads: int = 1,
    ) -> None:
        self.archive = archive
        self.member = member
        self.crc = 0
        self.produced = 0
        self._fileobj = fileobj
        self._raw: Any = None
        self._direct: direct_inflate.DirectInflater | None = None
        self._zip_stream: Any = None
        if member.header_offset < 0:
            raise ArchiveError(
                archive, member.name, "its offset points before the archive's start (corrupt)"
            )
        try:
            if member.method == zipfile.ZIP_DEFLATED:
                offset = self._data_offset()
                # A large member with cores to spare inflates on several threads; it is read
                # through the same bounded readinto loop as zipfile's streams.
                self._zip_stream = open_parallel(
                    fileobj, offset, member.compress_size, inflate_threads
                )
                if self._zip_stream is None:
                    fileobj.seek(offset)
                    self._remaining_in = member.compress_size
                    self._pending: Any = b""
                    self._input = memoryview(bytearray(_INPUT_PIECE))  # reused for every read
                    if direct_inflate.available():  # straight into the caller's buffer
                        self._direct = direct_inflate.DirectInflater()
                        self._input_address = direct_inflate.address_of(self._input)
                    else:
                        self._raw = raw_decompressobj()
            else:
                # zipfile checks its own CRC too; ours runs anyway so both paths report alike.
                self._zip_stream = zf.open(member.info)
        except ArchiveError:
            raise
        except Exception as exc:  # BadZipFile, NotImplementedError, EINVAL on a bad offset...
            raise ArchiveError(
                archive, member.name, f"cannot read the member ({_brief(exc)})"
            ) from None

    def _data_offset(self) -> int:
        self._fileobj.seek(self.member.header_offset)
        header = self._fileobj.read(_LOCAL_HEADER.size)
        if len(header) != _LOCAL_HEADER.size:
            raise ArchiveError(self.archive, self.member.name, "local header is truncated")
        fields = _LOCAL_HEADER.unpack(header)
        if fields[0] != _LOCAL_SIGNATURE:
            raise ArchiveError(
                self.archive, self.member.name, "local header is corrupt (bad signature)"
            )
        name_len, extra_len = fields[10], fields[11]
        return self.member.header_offset + _LOCAL_HEADER.size + name_len + extra_len

    def readinto(self, out: memoryview) -> int:
        """Fill `out` as far as the member allows; returns the byte count (short only at the end)."""
        try:
            if self._direct is not None:
                n = self._read_direct(out)
            elif self._raw is not None:
                n = self._read_raw(out)
            else:
                n = self._read_zipfile(out)
        except ArchiveError:
            raise
        except Exception as exc:  # lzma/bz2 errors, EOFError, OSError: corrupt member, not a bug
            raise ArchiveError(
                self.archive, self.member.name, f"corrupt member data ({_brief(exc)})"
            ) from None
        if n:
            # ISA-L keeps the CRC32 as it inflates; any other path computes it here.
            self.crc = self._direct.crc32 if self._direct is not None else crc32(out[:n], self.crc)
            self.produced += n
        return n

    def _read_direct(self, out: memoryview) -> int:
        d = self._direct
        assert d is not None
        want = len(out)
        if not want or d.eof:
            return 0
        target = direct_inflate.address_of(out)
        filled = 0
        while filled < want and not d.eof:
            if d.needs_input and self._remaining_in > 0:
                self._feed_input()
            try:
                got = d.inflate_into(target + filled, want - filled)
            except direct_inflate.DeflateError as exc:
                raise ArchiveError(
                    self.archive, self.member.name, f"corrupt deflate data ({exc})"
                ) from None
            filled += got
            if not got and not d.eof and d.needs_input and self._remaining_in <= 0:
                raise ArchiveError(
                    self.archive,
                    self.member.name,
                    "deflate stream ends early (archive truncated or corrupt)",
                )
        return filled

    def _feed_input(self) -> None:
        n = _read_into(self._fileobj, self._input[: min(_INPUT_PIECE, self._remaining_in)])
        if not n:
            raise ArchiveError(self.archive, self.member.name, "archive is truncated")
        self._remaining_in -= n
        assert self._direct is not None
        self._direct.feed(self._input_address, n)

    def _read_raw(self, out: memoryview) -> int:
        filled = 0
        want = len(out)
        d = self._raw
        while filled < want and not d.eof:
            if not self._pending and self._remaining_in > 0:
                n = _read_into(self._fileobj, self._input[: min(_INPUT_PIECE, self._remaining_in)])
                if not n:
                    raise ArchiveError(self.archive, self.member.name, "archive is truncated")
                self._remaining_in -= n
                self._pending = self._input[:n]
            try:
                # max_length bounds the output: a tiny piece of a bomb cannot return gigabytes.
                chunk = d.decompress(self._pending, min(want - filled, _OUTPUT_PIECE))
            except Exception as exc:  # zlib.error / isal error: corrupt deflate data
                raise ArchiveError(
                    self.archive, self.member.name, f"corrupt deflate data ({exc})"
                ) from None
            self._pending = d.unconsumed_tail
            if chunk:
                out[filled : filled + len(chunk)] = chunk
                filled += len(chunk)
            elif not self._pending and self._remaining_in <= 0 and not d.eof:
                raise ArchiveError(
                    self.archive,
                    self.member.name,
                    "deflate stream ends early (archive truncated or corrupt)",
                )
        return filled

    def _read_zipfile(self, out: memoryview) -> int:
        filled = 0
        try:
            while filled < len(out):
                n = self._zip_stream.readinto(out[filled:])
                if not n:
                    break
                filled += n
        except zipfile.BadZipFile as exc:
            raise ArchiveError(self.archive, self.member.name, str(exc)) from None
        except (EOFError, OSError, ValueError) as exc:
            raise ArchiveError(
                self.archive, self.member.name, f"corrupt member data ({_brief(exc)})"
            ) from None
        return filled

    def verify_end(self) -> None:
        """After the last read: the inflated size and CRC32 must match the central directory."""
        if self.produced == self.member.file_size:
            # One byte more must not exist; readinto counts it in `produced` if it does, and
            # turns a corrupt tail into an ArchiveError like any other read.
            self.readinto(memoryview(bytearray(1)))
        if self.produced != self.member.file_size:
            raise ArchiveError(
                self.archive,
                self.member.name,
                f"inflated size {'exceeds' if self.produced > self.member.file_size else 'is'} "
                f"{self.produced} bytes but the archive declares {self.member.file_size}",
            )
        if self.crc != self.member.crc32:
            raise ArchiveError(
                self.archive,
                self.member.name,
                f"CRC32 mismatch: data gives {self.crc:08x}, archive records {self.member.crc32:08x}; "
                "the archive is corrupt",
            )

    def close(self) -> None:
        if self._zip_stream is not None:
            self._zip_stream.close()


def _read_into(fileobj: BinaryIO, view: memoryview) -> int:
    """Read into a reused buffer: a new 256 KiB bytes object per read was mapped afresh by
    malloc each time, and its page faults made a 1 GiB member inflate 25% slower."""
    readinto = getattr(fileobj, "readinto", None)
    if readinto is not None:
        return int(readinto(view) or 0)
    data = fileobj.read(len(view))  # a file object without readinto (some fsspec ones)
    view[: len(data)] = data
    return len(data)


def _brief(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, zipfile.BadZipFile) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def open_archive(archive: str, fileobj: BinaryIO | None = None) -> tuple[BinaryIO, zipfile.ZipFile]:
    """Open an archive for streaming; not-a-ZIP and unreadable directories become ArchiveError.

    `fileobj`, if given, is an already-open seekable binary file (for example an fsspec file
    reading object storage with range requests); `archive` then only names it in errors.
    """
    if fileobj is None:
        try:
            fileobj = open(archive, "rb")  # noqa: SIM115 - closed by the caller
        except OSError as exc:
            raise ArchiveError(archive, None, f"cannot open: {exc.strerror}") from None
    try:
        zf = zipfile.ZipFile(fileobj)
    except zipfile.BadZipFile as exc:
        fileobj.close()
        raise ArchiveError(archive, None, f"not a readable ZIP archive ({exc})") from None
    except (OSError, EOFError, ValueError, NotImplementedError) as exc:
        fileobj.close()
        raise ArchiveError(archive, None, f"not a readable ZIP archive ({_brief(exc)})") from None
    return fileobj, zf
