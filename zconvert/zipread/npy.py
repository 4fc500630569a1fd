"""NumPy .npy headers, parsed safely: magic, version, then a Python-literal dict of descr,
fortran_order and shape. Never numpy.load, never allow_pickle, never eval: the dict is read
with ast.literal_eval, which builds literals only, and object dtypes are refused before a
byte of data is touched, so a hostile .npz cannot run code.
"""

from __future__ import annotations

import ast
import math
import struct
from collections.abc import Callable
from typing import NamedTuple

from ..core.errors import ArchiveError

MAGIC = b"\x93NUMPY"
# magic, major, minor and the header length (2 bytes in version 1, 4 in versions 2 and 3)
PREFIX_BYTES = len(MAGIC) + 2
# numpy itself refuses headers over 10,000 bytes unless told otherwise; a real header is 128.
MAX_HEADER_BYTES = 1 << 16
_KINDS = "biufc"  # bool, signed, unsigned, float, complex: what a Zarr or HDF5 array holds


class NpyHeader(NamedTuple):  # not a dataclass: 6x cheaper to define at start-up
    """What a .npy header declares; data starts `header_bytes` into the member."""

    dtype: str  # numpy's dtype.str, byte order included ('<f4', '>f8', '|b1')
    shape: tuple[int, ...]
    fortran_order: bool
    header_bytes: int

    @property
    def data_bytes(self) -> int:
        return math.prod(self.shape) * int(self.dtype[2:])


def is_npy(head: bytes) -> bool:
    """Whether a member's first bytes are the .npy magic."""
    return head.startswith(MAGIC)


def read_header(
    archive: str, member: str, read: Callable[[int], bytes], member_bytes: int
) -> NpyHeader:
    """Parse the header of a member whose bytes start with MAGIC; `read(n)` returns the member's
    next n bytes (fewer only at its end). The declared data must be exactly what follows."""

    def fail(reason: str) -> ArchiveError:
        return ArchiveError(archive, member, f"{reason}; the .npy file is corrupt, re-save it")

    prefix = read(PREFIX_BYTES)
    if len(prefix) < PREFIX_BYTES or not is_npy(prefix):
        raise fail(".npy header is truncated")
    major, minor = prefix[6], prefix[7]
    if major == 1:
        length_bytes, encoding = 2, "latin1"
    elif major in (2, 3):
        length_bytes, encoding = 4, "latin1" if major == 2 else "utf8"
    else:
        raise ArchiveError(
            archive, member, f".npy format version {major}.{minor} is unknown (1, 2 and 3 are)"
        )
    raw_length = read(length_bytes)
    if len(raw_length) < length_bytes:
        raise fail(".npy header is truncated")
    length = struct.unpack("<H" if length_bytes == 2 else "<I", raw_length)[0]
    if length > MAX_HEADER_BYTES:
        raise fail(f".npy header declares {length} bytes, over the {MAX_HEADER_BYTES} allowed")
    text = read(length)
    if len(text) < length:
        raise fail(".npy header is truncated")
    header_bytes = PREFIX_BYTES + length_bytes + length
    header = _parse_dict(archive, member, text, encoding)
    if header_bytes + header.data_bytes != member_bytes:
        held = member_bytes - header_bytes
        raise fail(
            f".npy header declares {header.data_bytes} bytes of data "
            f"(shape {header.shape}, dtype {header.dtype}) but the member holds {held}"
        )
    return NpyHeader(header.dtype, header.shape, header.fortran_order, header_bytes)


def _parse_dict(archive: str, member: str, text: bytes, encoding: str) -> NpyHeader:
    def fail(reason: str) -> ArchiveError:
        return ArchiveError(archive, member, f".npy header {reason}; re-save the array")

    try:
        value = ast.literal_eval(text.decode(encoding))
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError):
        raise fail("is not a Python literal dict (truncated or corrupt)") from None
    if not isinstance(value, dict) or set(value) != {"descr", "fortran_order", "shape"}:
        raise fail("must hold exactly the keys descr, fortran_order and shape")
    descr, fortran, shape = value["descr"], value["fortran_order"], value["shape"]
    if not isinstance(fortran, bool):
        raise fail(f"has fortran_order {fortran!r}, not True or False")
    if not isinstance(shape, tuple) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        raise fail(f"has shape {shape!r}, not a tuple of sizes")
    return NpyHeader(_dtype(archive, member, descr), shape, fortran, 0)


def _dtype(archive: str, member: str, descr: object) -> str:
    """The dtype of a plain numeric or bool array; anything else refused with one line."""
    import numpy as np

    if not isinstance(descr, str):  # a list: a structured dtype (records), maybe with objects
        objects = "O" in repr(descr)
        raise ArchiveError(
            archive,
            member,
            "holds Python objects, which are only readable by unpickling (never done here); "
            "save a numeric array instead"
            if objects
            else f"has a structured dtype {descr!r}; save each field as its own array",
        )
    try:
        dtype = np.dtype(descr)  # a plain string names a dtype; nothing is executed
    except (TypeError, ValueError):
        raise ArchiveError(archive, member, f".npy header has an unknown dtype {descr!r}") from None
    if dtype.hasobject:
        raise ArchiveError(
            archive,
            member,
            "holds Python objects (dtype object), which are only readable by unpickling "
            "(never done here); save a numeric array instead",
        )
    if dtype.kind not in _KINDS or dtype.itemsize == 0:
        raise ArchiveError(
            archive,
            member,
            f"has dtype {dtype.str} ({dtype.name}); only bool, integer, float and complex "
            "arrays convert",
        )
    return dtype.str
