"""Stream ZIP members in bounded pieces: data offsets, raw inflate, CRC32 and size checks.

Deflated members go through the fastest raw inflate from the member's data offset; stored,
bzip2 and lzma members go through Python's zipfile. Either way a member is read into a
caller-supplied buffer a slab at a time, so memory is O(slab), never O(member). Which
members there are, and whether they may be read at all, is members.py's job.
"""

from __future__ import annotations

import struct
import zipfile
from typing import Any, BinaryIO

from ..core.errors import ArchiveError
from . import direct_inflate
from .deflate64 import Deflate64Stream
from .inflate import crc32, raw_decompressobj
from .members import DEFLATE64, Member, brief
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


def data_offset(archive: str, fileobj: BinaryIO, member: Member) -> int:
    """Where a member's (compressed) data starts: after its local header, whose name and
    extra field lengths may differ from the central directory's."""
    fileobj.seek(member.header_offset)
    header = fileobj.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size:
        raise ArchiveError(archive, member.name, "local header is truncated")
    fields = _LOCAL_HEADER.unpack(header)
    if fields[0] != _LOCAL_SIGNATURE:
        raise ArchiveError(archive, member.name, "local header is corrupt (bad signature)")
    name_len, extra_len = fields[10], fields[11]
    return member.header_offset + _LOCAL_HEADER.size + name_len + extra_len


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
                offset = data_offset(archive, fileobj, member)
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
            elif member.method == DEFLATE64:  # zipfile has no Deflate64
                offset = data_offset(archive, fileobj, member)
                self._zip_stream = Deflate64Stream(fileobj, offset, member.compress_size)
            else:
                # zipfile checks its own CRC too; ours runs anyway so both paths report alike.
                self._zip_stream = zf.open(member.info)
        except ArchiveError:
            raise
        except Exception as exc:  # BadZipFile, NotImplementedError, EINVAL on a bad offset...
            raise ArchiveError(
                archive, member.name, f"cannot read the member ({brief(exc)})"
            ) from None

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
                self.archive, self.member.name, f"corrupt member data ({brief(exc)})"
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
                self.archive, self.member.name, f"corrupt member data ({brief(exc)})"
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
