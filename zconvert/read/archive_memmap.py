"""Memory maps straight from a ZIP or .npz: a stored (uncompressed) member's bytes are a plain
range of the archive file, so np.memmap maps them with no conversion and no copy.

numpy cannot do this itself (np.load(npz, mmap_mode="r") silently reads instead: numpy issue
5976). A compressed member cannot be mapped; the error says which conversion makes it so.
"""

from __future__ import annotations

import math
import os
import shlex
import zipfile
from typing import Any

import numpy as np

from ..core.errors import StoreError
from ..zipread.archive import data_offset
from ..zipread.inflate import crc32
from ..zipread.member_layout import raw_shape
from ..zipread.members import Member, method_name, open_archive, select_members
from ..zipread.npy import is_npy, read_header

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_VERIFY_PIECE = 8 << 20


def is_archive(path: str) -> bool:
    """A ZIP file (any name, self-extracting prefixes too), not an HDF5 file or a folder."""
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        if f.read(8) == _HDF5_SIGNATURE:
            return False
    return zipfile.is_zipfile(path)


def member_names(path: str) -> list[str]:
    """The array names of an archive's data members (metadata skipped), in archive order."""
    fileobj, zf = open_archive(path)
    with fileobj, zf:
        return [m.array_name for m in select_members(path, zf)[0]]


def archive_memmap(
    path: str,
    name: str | None = None,
    dtype: Any = None,
    shape: Any = None,
    verify: bool = False,
) -> np.memmap:
    """A read-only np.memmap of one stored member of the archive at `path` (its `filename` is
    the archive). .npy members through their header; raw ones through dtype and shape (default
    <f4 and (-1, 4), as for convert)."""
    fileobj, zf = open_archive(path)
    with fileobj, zf:
        member = _pick(path, select_members(path, zf)[0], name)
        if member.info.flag_bits & 0x1 or member.method == 99:
            raise StoreError(f"{path}: {member.name} is encrypted and cannot be memory-mapped")
        if member.method != zipfile.ZIP_STORED:
            store = "OUT/" + os.path.splitext(os.path.basename(path))[0] + ".h5"
            raise StoreError(  # the command and the call as one pastes them, spaces and all
                f"{path}: {member.name} is compressed ({method_name(member.method)}), and only "
                "stored (uncompressed) members can be memory-mapped; convert it once with "
                f"`zconvert convert {shlex.quote(path)} -o OUT --format hdf5 --codec none`, "
                f"then zconvert.open_memmap({store!r}, {member.array_name!r})"
            )
        start = data_offset(path, fileobj, member)
        fileobj.seek(start)
        head = fileobj.read(8)
        fortran = False
        if is_npy(head):
            fileobj.seek(start)
            header = read_header(path, member.name, fileobj.read, member.file_size)
            _check_agrees(path, member, header.dtype, header.shape, dtype, shape)
            offset, dt, dims = start + header.header_bytes, np.dtype(header.dtype), header.shape
            fortran = header.fortran_order
        else:
            from ..core.dtypes import parse_dtype, parse_shape

            dt = np.dtype(parse_dtype("<f4" if dtype is None else dtype, "dtype", None))
            layout = parse_shape([-1, 4] if shape is None else shape, "shape", None)
            origin = "open_memmap's dtype and shape"
            offset, dims = start, raw_shape(path, member, dt.str, layout, origin)
        if verify:
            _verify(path, fileobj, member, start)
    if holds_nothing(dims):
        return empty_memmap(dt, dims)
    return np.memmap(
        path, dtype=dt, mode="r", offset=offset, shape=dims, order="F" if fortran else "C"
    )


def holds_nothing(shape: Any) -> bool:
    """An array of 0 elements (0 rows): it has no bytes, and np.memmap cannot map 0 bytes."""
    return math.prod(shape) == 0


def empty_memmap(dtype: Any, shape: Any) -> np.memmap:
    """What open_memmap gives for an array of 0 elements: a read-only empty np.memmap of its
    dtype and shape that maps no file (`filename` None), so that code mapping every array of
    a run needs no special case for an empty one."""
    empty = np.empty(tuple(shape), dtype=dtype).view(np.memmap)
    empty.flags.writeable = False
    return empty


def _pick(path: str, members: list[Member], name: str | None) -> Member:
    if name is None:
        if len(members) == 1:
            return members[0]
        names = ", ".join(m.array_name for m in members)
        raise StoreError(f"{path}: holds {len(members)} members ({names}); pass name=")
    for m in members:
        if name in (m.array_name, m.name):
            return m
    names = ", ".join(m.array_name for m in members)
    raise StoreError(f"{path}: no member named {name!r} (it holds {names})")


def _check_agrees(
    path: str,
    member: Member,
    header_dtype: str,
    header_shape: tuple[int, ...],
    dtype: Any,
    shape: Any,
) -> None:
    """dtype= and shape= given for a .npy member must be what its header says."""
    if dtype is not None and np.dtype(dtype) != np.dtype(header_dtype):
        raise StoreError(
            f"{path}: {member.name} is a .npy of dtype {header_dtype}, not {np.dtype(dtype).str}; "
            "drop dtype="
        )
    if shape is not None and tuple(shape) != tuple(header_shape):
        raise StoreError(
            f"{path}: {member.name} is a .npy of shape {tuple(header_shape)}, not {tuple(shape)}; "
            "drop shape="
        )


def _verify(path: str, fileobj: Any, member: Member, start: int) -> None:
    """The member's CRC32 against the archive's record: every byte read once."""
    fileobj.seek(start)
    crc, left = 0, member.file_size
    while left:
        piece = fileobj.read(min(_VERIFY_PIECE, left))
        if not piece:
            raise StoreError(f"{path}: {member.name}: the archive is truncated")
        crc = crc32(piece, crc)
        left -= len(piece)
    if crc != member.crc32:
        raise StoreError(
            f"{path}: {member.name}: CRC32 {crc:08x} but the archive records "
            f"{member.crc32:08x}; the archive is corrupt"
        )
