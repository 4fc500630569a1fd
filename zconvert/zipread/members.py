"""What an archive holds: open it, list its data members, name them as their writer meant
them, name their arrays, and refuse hostile, unsupported or oversized ones before anything is
inflated (archive.py streams them).
"""

from __future__ import annotations

import fnmatch
import posixpath
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO, NamedTuple

from ..core.errors import ArchiveError
from ..core.records import SkippedMember
from ..core.storage import is_url
from .member_names import decode_member_name

# Without an explicit max_ratio, members over RATIO_CHECK_MIN_BYTES are refused above
# DEFAULT_MAX_RATIO: an all-zero member deflates about 1030:1, so a smaller real one (a dead
# sensor channel) still converts, and its output is bounded by its declared size anyway.
DEFAULT_MAX_RATIO = 1000.0
RATIO_CHECK_MIN_BYTES = 64 << 20
DEFLATE64 = 9  # "enhanced deflate": Windows Explorer and 7-Zip write it for large files
_SUPPORTED_METHODS = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflate",
    DEFLATE64: "deflate64",
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "lzma",
}
# APPNOTE 4.4.5: the methods other writers use, so that a refusal can name them.
_OTHER_METHODS = {
    1: "shrink",
    2: "reduce",
    3: "reduce",
    4: "reduce",
    5: "reduce",
    6: "implode",
    10: "PKWARE DCL implode",
    18: "IBM TERSE",
    19: "IBM LZ77",
    20: "zstd (old id)",
    93: "zstd",
    94: "MP3",
    95: "xz",
    96: "JPEG",
    97: "WavPack",
    98: "PPMd",
    99: "AES encryption",
}


def method_name(method: int) -> str:
    """A compression method's name for messages ('deflate', 'PPMd', 'method 42')."""
    return _SUPPORTED_METHODS.get(method) or _OTHER_METHODS.get(method) or f"method {method}"


def _method_label(method: int) -> str:
    name = _OTHER_METHODS.get(method)
    return f"{method} ({name})" if name else str(method)


# Written by operating systems and archivers beside the data, never data themselves: skipped
# by default and listed as skipped (so nothing disappears silently).
def metadata_reason(name: str) -> str | None:
    """Why a member is operating-system or tool metadata, or None for a data member."""
    parts = name.split("/")
    base = parts[-1]
    if "__MACOSX" in parts[:-1]:
        return "macOS metadata (__MACOSX/ folder)"
    if base.startswith("._"):
        return "macOS AppleDouble metadata (._ file)"
    if base == ".DS_Store":
        return "macOS Finder metadata (.DS_Store)"
    if base.lower() == "thumbs.db":
        return "Windows thumbnail cache (Thumbs.db)"
    if base.lower() == "desktop.ini":
        return "Windows folder settings (desktop.ini)"
    if name.upper() == "META-INF/MANIFEST.MF":
        return "JAR manifest (META-INF/MANIFEST.MF)"
    return None


def glob_matches(name: str, pattern: str) -> bool:
    """A member path against a glob: `*` crosses '/', and a pattern without '/' also matches
    the last part alone ('*.json' and 'README*' match at any depth)."""
    if fnmatch.fnmatchcase(name, pattern):
        return True
    return "/" not in pattern and fnmatch.fnmatchcase(posixpath.basename(name), pattern)


# Documents, text and images that travel beside the data: none is raw numbers, and a short
# one (a 32-byte README) would fit whole float32 rows and become a nonsense array. Skipped by
# default and listed as skipped; an --include pattern that matches one converts it. Nothing a
# raw blob is commonly named (.bin, .dat, .raw, .f32, .npy, ...) belongs here, nor a suffix
# a channel's blob may carry (.r/.i for real and imaginary parts, .m, .sig).
_DOCUMENT = "text/document"
_STRUCTURED = "structured text"
_IMAGE = "image"
_CHECKSUM = "checksum"
_SCRIPT = "script/source code"
NOT_DATA_SUFFIXES: dict[str, str] = {
    **dict.fromkeys(
        (".txt", ".md", ".markdown", ".rst", ".log", ".tex", ".rtf", ".pdf", ".html", ".htm"),
        _DOCUMENT,
    ),
    **dict.fromkeys(
        (".doc", ".docx", ".odt", ".xls", ".xlsx", ".ods", ".ppt", ".pptx", ".odp"), _DOCUMENT
    ),
    **dict.fromkeys(
        (".json", ".csv", ".tsv", ".xml", ".yaml", ".yml", ".ini", ".cfg", ".conf", ".toml"),
        _STRUCTURED,
    ),
    **dict.fromkeys(
        (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".svg", ".webp", ".ico"),
        _IMAGE,
    ),
    **dict.fromkeys((".md5", ".sha1", ".sha256", ".sha512"), _CHECKSUM),
    **dict.fromkeys((".py", ".ipynb", ".sh", ".bat", ".ps1"), _SCRIPT),
}


def not_data_reason(name: str) -> str | None:
    """Why a member is a document, text or image by its extension (any case), or None."""
    suffix = posixpath.splitext(posixpath.basename(name))[1].lower()
    kind = NOT_DATA_SUFFIXES.get(suffix)
    if kind is None:
        return None
    return f"not data ({suffix}: {kind}); add --include to convert it"


def selection_reason(name: str, include: Sequence[str], exclude: Sequence[str]) -> str | None:
    """Why a member is not converted (metadata, --include, --exclude, not data), or None to
    convert it. Metadata is never converted; a document only when an include pattern names it."""
    reason = metadata_reason(name)
    if reason is not None:
        return reason
    included = any(glob_matches(name, p) for p in include)
    if include and not included:
        return "matches no include pattern (" + ", ".join(include) + ")"
    for pattern in exclude:
        if glob_matches(name, pattern):
            return f"matches exclude pattern {pattern}"
    return None if included else not_data_reason(name)


class Member(NamedTuple):  # not a dataclass: 6x cheaper to define at start-up
    """A data member of an archive, as its central directory describes it."""

    name: str  # as its writer meant it (decode_member_name); look members up by `info`
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


def list_members(
    archive: str,
    zf: zipfile.ZipFile,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> list[Member]:
    """Data members in archive order (see select_members)."""
    return select_members(archive, zf, include, exclude)[0]


def select_members(
    archive: str,
    zf: zipfile.ZipFile,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> tuple[list[Member], list[SkippedMember]]:
    """The members to convert, in archive order, and those skipped with why. Directories are
    neither; names are checked for hostility and clashes; no member left is an error."""
    members: list[Member] = []
    skipped: list[SkippedMember] = []
    seen: dict[str, str] = {}
    for info in zf.infolist():
        if info.is_dir():
            continue
        member = decode_member_name(info)
        reason = selection_reason(member, include, exclude)
        if reason is not None:
            skipped.append(SkippedMember(member, reason))
            continue
        name = array_name_for(archive, member)
        other = seen.get(name.casefold())
        if other is not None:
            what = "is a duplicate" if other == member else f"clashes with {other!r} once named"
            raise ArchiveError(archive, member, f"member {what}; rename one in the archive")
        seen[name.casefold()] = member
        members.append(
            Member(
                name=member,
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
        if not skipped:
            raise ArchiveError(archive, None, "archive holds no data members")
        listed = "; ".join(f"{s.member}: {s.reason}" for s in skipped[:3])
        more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        raise ArchiveError(
            archive,
            None,
            f"no member left to convert, {len(skipped)} skipped ({listed}{more}); "
            "check --include and --exclude",
        )
    _check_nesting(archive, members)
    _check_no_overlap(archive, zf)
    return members, skipped


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
                decode_member_name(info),
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
            f"unsupported compression method {_method_label(member.method)}; "
            "re-zip with deflate, deflate64, bzip2, lzma or no compression",
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


def brief(exc: BaseException) -> str:
    """An exception as a short phrase for an error line."""
    text = " ".join(str(exc).split())
    if isinstance(exc, zipfile.BadZipFile) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def open_archive(
    archive: str,
    fileobj: BinaryIO | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[BinaryIO, zipfile.ZipFile]:
    """Open an archive, a path or a URL, for streaming; not-a-ZIP, a missing object and
    unreadable directories become ArchiveError. A URL is read with range requests (fsspec,
    `storage_options`). `fileobj`, if given, is an already-open seekable binary file;
    `archive` then only names it in errors.
    """
    if fileobj is None and is_url(archive):
        from ..core.storage import open_input

        try:
            fileobj = open_input(archive, storage_options)
        except FileNotFoundError:
            raise ArchiveError(archive, None, "cannot open: no such object") from None
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
        raise ArchiveError(archive, None, f"not a readable ZIP archive ({brief(exc)})") from None
    return fileobj, zf
