"""Member names as their writer meant them: a ZIP's names are bytes, and only some writers
say which encoding (the UTF-8 flag, Info-ZIP's Unicode Path field)."""

from __future__ import annotations

import struct
import zipfile

from .inflate import crc32

_UTF8_FLAG = 0x800  # APPNOTE 4.4.4, general purpose bit 11: the name is UTF-8
_UNICODE_PATH_FIELD = 0x7075  # APPNOTE 4.6.9, Info-ZIP Unicode Path extra field


def decode_member_name(info: zipfile.ZipInfo) -> str:
    """A member's name as its writer meant it: UTF-8 when flagged, else Info-ZIP's Unicode Path
    field, else the bytes as UTF-8 when they are valid UTF-8, else CP437."""
    if info.flag_bits & _UTF8_FLAG:
        return info.filename
    # Info-ZIP on Linux and macOS writes the locale's bytes (UTF-8 today) without the flag, and
    # zipfile decodes unflagged names as CP437 ('café' becomes 'caf├⌐'). CP437 maps all 256
    # bytes, so encoding orig_filename gives the raw bytes back (zconvert never passes
    # metadata_encoding). Bytes that happen to be valid UTF-8 are UTF-8 in practice, as
    # bsdtar and 7-Zip read them: CP437 names with accents almost never are.
    raw = info.orig_filename.encode("cp437")
    name = _unicode_path(info.extra, raw)
    if name is None:
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            return info.filename
    # zipfile's own clean-up (cut at a NUL, os.sep as '/'), so every rule names alike.
    return zipfile.ZipInfo(name).filename


def _unicode_path(extra: bytes, raw: bytes) -> str | None:
    """The UTF-8 name in an Info-ZIP Unicode Path field (version 1), if its CRC32 is that of the
    header's name: a tool that renames a member without updating the field leaves a stale one."""
    pos = 0
    while pos + 4 <= len(extra):
        header_id, size = struct.unpack_from("<2H", extra, pos)
        body = extra[pos + 4 : pos + 4 + size]
        pos += 4 + size
        if header_id != _UNICODE_PATH_FIELD or len(body) < 5:
            continue
        version, name_crc = struct.unpack_from("<BL", body)
        if version != 1 or name_crc != crc32(raw, 0):
            continue
        try:
            return body[5:].decode("utf-8") or None
        except UnicodeDecodeError:
            return None
    return None
