"""What array a member holds: dtype, shape and byte order of its data, decided before anything
is written.

A member that starts with the .npy magic describes itself (npy.py); any other member is a raw
blob laid out by the first matching YAML `members:` rule, else by the run's dtype and shape.
Ambiguity is refused, never guessed: a member named .npy without the magic, a raw member that
is itself a ZIP archive, a rule that contradicts a .npy header.
"""

from __future__ import annotations

import math
import zipfile
from typing import Any, NamedTuple

from ..core.convert_options import ConvertOptions, MemberRule
from ..core.errors import ArchiveError
from ..core.records import SkippedMember
from .archive import MemberReader
from .members import Member, check_member, glob_matches, method_name, select_members
from .npy import MAGIC, NpyHeader, is_npy, read_header

_ZIP_MAGIC = b"PK\x03\x04"
_PEEK_BYTES = max(len(MAGIC), len(_ZIP_MAGIC))


class MemberLayout(NamedTuple):  # not a dataclass: 6x cheaper to define at start-up
    """One member's array; its data follows the .npy header, if any."""

    dtype: str  # numpy dtype.str, byte order included
    shape: tuple[int, ...]
    fortran_order: bool = False
    npy_header: bytes = b""  # kept: the member's CRC32 covers it, so verify needs it

    @property
    def npy(self) -> bool:
        return bool(self.npy_header)

    @property
    def data_offset(self) -> int:
        return len(self.npy_header)

    @property
    def axis(self) -> int:
        """The axis the member's bytes run along slowest: slabs and chunks are cut along it."""
        return len(self.shape) - 1 if self.fortran_order and len(self.shape) > 1 else 0

    @property
    def stream_shape(self) -> tuple[int, ...]:
        """The member's bytes as a C-order array: a Fortran array's transpose; a 0-d array's one
        element as one row."""
        if not self.shape:
            return (1,)
        return tuple(reversed(self.shape)) if self.axis else self.shape


def matching_rule(name: str, rules: tuple[MemberRule, ...]) -> tuple[int, MemberRule] | None:
    """The first `members:` rule whose glob matches the member path, with its index."""
    for index, rule in enumerate(rules):
        if glob_matches(name, rule.match):
            return index, rule
    return None


def raw_dtype_shape(name: str, options: ConvertOptions) -> tuple[str, tuple[int, ...]]:
    """The dtype and shape a raw member is read with: its rule's, else the run's."""
    found = matching_rule(name, options.members)
    rule = found[1] if found else None
    dtype = rule.dtype if rule is not None and rule.dtype else options.dtype
    shape = rule.shape if rule is not None and rule.shape else options.shape
    return dtype, shape


def raw_shape(
    archive: str, member: Member, dtype: str, shape: tuple[int, ...], origin: str
) -> tuple[int, ...]:
    """A raw member's array shape; a size that does not fit dtype and shape is refused."""
    row_shape = shape[1:]
    row_bytes = int(dtype[2:]) * math.prod(row_shape)
    declared = f"shape {','.join(map(str, shape))}, dtype {dtype} ({origin})"
    if member.file_size % row_bytes:
        raise ArchiveError(
            archive,
            member.name,
            f"size {member.file_size} bytes is not a multiple of the record size {row_bytes} "
            f"({declared}); check --dtype and --shape, or skip it with --exclude",
        )
    rows = member.file_size // row_bytes
    if shape[0] != -1 and rows != shape[0]:
        raise ArchiveError(
            archive,
            member.name,
            f"size {member.file_size} bytes holds {rows} rows, not the {shape[0]} of {declared}",
        )
    return (rows, *row_shape)


def layout_for(
    archive: str, fileobj: Any, zf: Any, member: Member, options: ConvertOptions
) -> MemberLayout:
    """Read the member's first bytes (its .npy header, if any) and decide its layout."""
    found = matching_rule(member.name, options.members)
    head = header_bytes = b""
    header: NpyHeader | None = None
    if member.file_size >= _PEEK_BYTES:
        reader = MemberReader(archive, fileobj, zf, member)
        try:
            head = _read(reader, _PEEK_BYTES)
            if is_npy(head):
                stream = _HeaderStream(reader, head)
                header = read_header(archive, member.name, stream.read, member.file_size)
                header_bytes = bytes(stream.taken)
        finally:
            reader.close()
    if header is not None:
        if found is not None:
            _check_rule_agrees(archive, member, header, *found)
        return MemberLayout(header.dtype, header.shape, header.fortran_order, header_bytes)
    if member.name.lower().endswith(".npy"):
        raise ArchiveError(
            archive,
            member.name,
            "is named .npy but does not start with the .npy magic (corrupt or mislabelled); "
            "re-save it with numpy.save, or rename it if it is a raw blob",
        )
    if head.startswith(_ZIP_MAGIC):
        raise ArchiveError(
            archive, member.name, "is itself a ZIP archive (or .npz); extract it and convert that"
        )
    dtype, shape = raw_dtype_shape(member.name, options)
    origin = f"members[{found[0]}] rule {found[1].match!r}" if found else "the run's options"
    return MemberLayout(dtype, raw_shape(archive, member, dtype, shape, origin))


class _HeaderStream:
    """The peeked bytes, then the member's next ones; keeps what was read (the header)."""

    def __init__(self, reader: MemberReader, head: bytes) -> None:
        self._reader = reader
        self._buffered = head
        self.taken = bytearray()

    def read(self, n: int) -> bytes:
        data, self._buffered = self._buffered[:n], self._buffered[n:]
        if len(data) < n:
            data += _read(self._reader, n - len(data))
        self.taken += data
        return data


def _read(reader: MemberReader, n: int) -> bytes:
    if n <= 0:
        return b""
    buffer = bytearray(n)
    got = reader.readinto(memoryview(buffer))
    return bytes(buffer[:got])


def _check_rule_agrees(
    archive: str, member: Member, header: NpyHeader, index: int, rule: MemberRule
) -> None:
    """A rule that names a .npy member must say what its header says: two answers to one
    question is a mistake to show, not to settle silently."""
    import numpy as np

    wrong = []
    if rule.dtype is not None and np.dtype(rule.dtype) != np.dtype(header.dtype):
        wrong.append(f"dtype {rule.dtype} (header: {header.dtype})")
    if rule.shape is not None:
        expected = rule.shape
        fits = len(expected) == len(header.shape) and all(
            e in (-1, h) for e, h in zip(expected, header.shape, strict=True)
        )
        if not fits:
            wrong.append(f"shape {list(expected)} (header: {list(header.shape)})")
    if wrong:
        raise ArchiveError(
            archive,
            member.name,
            f"members[{index}] rule {rule.match!r} says {' and '.join(wrong)}; a .npy member "
            "describes itself: drop dtype/shape from the rule or fix them",
        )


def check_referable(archive: str, member: Member) -> None:
    """Refuse a member whose bytes are not the array's as they sit in the archive (an
    encrypted one check_member has refused already)."""
    if member.method != zipfile.ZIP_STORED:
        raise ArchiveError(
            archive,
            member.name,
            f"is compressed ({method_name(member.method)}), and only stored (uncompressed) "
            "members can be referenced; convert this archive with --format zarr or --format hdf5",
        )


def checked_members(
    archive: str, fileobj: Any, zf: Any, options: ConvertOptions
) -> tuple[list[Member], list[SkippedMember], list[MemberLayout]]:
    """The members to convert with their layouts, and those skipped, after every check made
    before anything is inflated: names, encryption, method, size and ratio limits, and whether
    each member's size fits its layout. The one pre-check of a worker and of `zconvert plan`."""
    members, skipped = select_members(archive, zf, options.include, options.exclude)
    for member in members:
        check_member(archive, member, options.max_ratio, options.max_member_bytes)
        if options.refers:
            check_referable(archive, member)
    layouts = [layout_for(archive, fileobj, zf, member, options) for member in members]
    return members, skipped, layouts
