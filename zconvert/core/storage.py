"""URLs (s3://, gs://, memory://, ...) through fsspec: the only module that knows about them.

Local paths never come here: every caller checks `is_url` first and keeps its own local code
path unchanged. A file:// URL is a local path, not a URL: `as_path` turns it into one where a
path enters zconvert (config, the readers), so nothing below ever sees one. fsspec and its
protocol packages are imported on first use, so the base install (no `zconvert[s3]`) never
needs them.
"""

from __future__ import annotations

import io
import os
import posixpath
import re
from collections.abc import Mapping
from typing import Any, BinaryIO, NamedTuple

from .errors import ConfigError

# What a folder (or a URL prefix) is searched for; an archive named explicitly may have any name.
ARCHIVE_SUFFIXES = (".zip", ".npz")
# "s3://..." but not "C:\..." (one-letter schemes are Windows drive letters).
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+://")
_GLOB_CHARS = "*?["
# Range-request size for reading archives: reads are served from one cached block, so memory
# stays O(block) whatever the archive's size.
READ_BLOCK_BYTES = 4 << 20


def is_url(path: object) -> bool:
    """True for 'protocol://...' strings; local paths, file:// URLs (see as_path) and file
    objects are not URLs."""
    return isinstance(path, str) and bool(_URL.match(path)) and not _is_file_url(path)


def _is_file_url(path: str) -> bool:
    return path[:7].lower() == "file://"


def as_path(path: str | os.PathLike[str]) -> str:
    """A path or URL as a user gave it, as zconvert uses it: a file:// URL becomes the local
    path it names (file:///abs/out, file://localhost/abs/out, %20 for a space), so that it is
    written and read as a folder (atomic renames, O_DIRECT, manifest.json), not via fsspec.
    Other URLs and paths come back unchanged."""
    path = os.fspath(path)
    if not _is_file_url(path):
        return path
    from urllib.request import url2pathname

    # Not urlsplit: a '?' or '#' pasted unescaped is part of a file's name, not a query.
    host, _, rest = path[7:].partition("/")
    if host.lower() not in ("", "localhost"):
        raise ConfigError(
            None,
            f"{path}: a file:// URL of another host ({host}); give a local path, "
            "e.g. file:///abs/path",
        )
    return url2pathname("/" + rest)


def archive_location(archive: str) -> str:
    """Where a reference points at an archive, from any working directory or process: its URL,
    or its absolute local path."""
    return archive if is_url(archive) else os.path.abspath(archive)


def join(base: str, rel: str) -> str:
    """base + '/' + rel for URLs (never os.path.join: a URL's separator is always '/')."""
    return base.rstrip("/") + "/" + rel.lstrip("/")


def filesystem(url: str, storage_options: Mapping[str, Any] | None = None) -> Any:
    """(fsspec filesystem for url's protocol); a missing protocol package names the extra."""
    try:
        import fsspec
    except ImportError:
        raise ConfigError(None, f"{url}: URLs need fsspec; pip install 'zconvert[s3]'") from None
    protocol = url.split("://", 1)[0]
    try:
        return fsspec.filesystem(protocol, **url_options(url, storage_options))
    except ImportError as exc:
        raise ConfigError(
            None,
            f"{url}: the {protocol}:// protocol needs a package ({exc}); "
            "for s3:// pip install 'zconvert[s3]'",
        ) from None
    except ValueError as exc:
        raise ConfigError(None, f"{url}: unknown protocol {protocol!r} ({exc})") from None


def url_options(url: str, storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The fsspec options zconvert opens a URL with: the caller's, plus, for s3://,
    max_concurrency=1 unless given (s3fs otherwise reads a whole object with a HEAD, for its
    size, before the GET: two requests per chunk or document; its many-part reads are for
    objects far larger than any chunk)."""
    options = dict(storage_options or {})
    if url.split("://", 1)[0] in ("s3", "s3a"):
        options.setdefault("max_concurrency", 1)
    return options


def full_url(fs: Any, path: str) -> str:
    """A path as fsspec lists it ('bucket/key') back to a URL ('s3://bucket/key')."""
    return fs.unstrip_protocol(path)


def searched_archive(relpath: str) -> bool:
    """Whether a search of a folder or URL prefix takes the file at `relpath` ('/'-separated,
    below the searched root) for an archive: ARCHIVE_SUFFIXES in any case, and not macOS
    metadata (an AppleDouble twin `._a.zip`, anything under `__MACOSX/`). The one rule of
    local and URL discovery."""
    name = relpath.rpartition("/")[2]  # string tests, no split: 100,000 names a search
    return (
        name.lower().endswith(ARCHIVE_SUFFIXES)
        and not name.startswith("._")
        and not relpath.startswith("__MACOSX/")
        and "/__MACOSX/" not in relpath
    )


def search_order(relpath: str) -> str:
    """The sort key of found archives, local and URL alike: by path components."""
    return relpath.replace("/", "\0")


def discover(url: str, storage_options: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
    """(archive URL, path below the input root) pairs for one input URL, sorted.

    A URL ending in '/' or naming a prefix is searched recursively for ARCHIVE_SUFFIXES; a glob
    ('s3://b/p/*.zip') is expanded, its root being the folder before the first wildcard; any
    other URL names one archive.
    """
    fs = filesystem(url, storage_options)
    stripped = fs._strip_protocol(url)
    found: list[tuple[str, str]] = []
    if any(c in stripped for c in _GLOB_CHARS):
        first = min(stripped.index(c) for c in _GLOB_CHARS if c in stripped)
        root = stripped[:first].rsplit("/", 1)[0]
        for path, info in fs.glob(stripped, detail=True).items():
            rel = posixpath.relpath(path, root)
            if searched_archive(rel) and info.get("type") == "file":
                found.append((_listed(fs, path, info), rel))
        found.sort(key=lambda item: search_order(item[1]))
        if not found:
            raise ConfigError("inputs", f"{url} matches no .zip or .npz archive")
        return found
    root = stripped.rstrip("/")
    if url.endswith("/") or fs.isdir(root):
        for path, info in fs.find(root, detail=True).items():
            rel = posixpath.relpath(path, root)
            if searched_archive(rel):
                found.append((_listed(fs, path, info), rel))
        found.sort(key=lambda item: search_order(item[1]))
        if not found and not fs.exists(root):
            raise ConfigError("inputs", f"{url} does not exist")
        return found
    if not fs.isfile(root):
        raise ConfigError("inputs", f"{url} does not exist")
    _LISTED.pop(full_url(fs, root), None)  # not listed by this run: asked afresh by a rerun
    return [(full_url(fs, root), posixpath.basename(root))]


# (size, ETag) of the archives this process's discovery listed: a rerun compares them with
# the manifest's, rather than asking each object again (one HEAD each).
_LISTED: dict[str, tuple[int, str | None]] = {}


def _listed(fs: Any, path: str, info: Mapping[str, Any]) -> str:
    url = full_url(fs, path)
    _LISTED[url] = (int(info.get("size") or 0), _etag(info))
    return url


def _etag(info: Mapping[str, Any]) -> str | None:
    etag = info.get("ETag") or info.get("etag")
    return str(etag).strip('"') if etag else None


def listed_stamp(url: str) -> tuple[int, str | None] | None:
    """(size, ETag) of an archive as this run's discovery listed it, or None if it did not."""
    return _LISTED.get(url)


def open_input(url: str, storage_options: Mapping[str, Any] | None = None) -> BinaryIO:
    """A seekable binary file object reading url with range requests, one block cached; an
    object of one block or less is read whole by one GET (where a ZIP's end, its central
    directory and its members would each cost one). Its `zconvert_stat` is source_stat's
    answer, from the request that sized what is read."""
    fs = filesystem(url, storage_options)
    info = _fresh_info(fs, url)
    size = int(info.get("size") or 0)
    if 0 < size <= READ_BLOCK_BYTES:  # a range: s3fs would otherwise ask for the size again
        f: Any = _StatedBytes(fs.cat_file(url, start=0, end=size))
    else:
        f = fs.open(url, "rb", block_size=READ_BLOCK_BYTES, cache_type="readahead")
    try:
        f.zconvert_stat = _stat(info)
    except AttributeError:  # a file object that takes no attributes: asked again when needed
        pass
    return f


class _StatedBytes(io.BytesIO):
    """A small object's bytes, read by one GET, with the stat of the object they are."""

    zconvert_stat: tuple[int, int, str | None] | None = None


def _fresh_info(fs: Any, url: str) -> dict[str, Any]:
    """An object's info asked of the store itself, never of fsspec's listing cache (an
    earlier listing of a replaced object would describe the object it replaced)."""
    fs.invalidate_cache(fs._strip_protocol(url))
    return fs.info(url)


def _stat(info: Mapping[str, Any]) -> tuple[int, int, str | None]:
    mtime = info.get("LastModified") or info.get("mtime") or info.get("created")
    mtime_ns = 0
    if hasattr(mtime, "timestamp"):
        mtime_ns = int(mtime.timestamp() * 1e9)
    elif isinstance(mtime, (int, float)):
        mtime_ns = int(mtime * 1e9)
    return int(info.get("size") or 0), mtime_ns, _etag(info)


def source_stat(
    url: str, storage_options: Mapping[str, Any] | None = None, fileobj: Any = None
) -> tuple[int, int, str | None]:
    """(size, mtime in ns or 0 when the backend has none, ETag or None) of a remote archive:
    what a rerun compares, as it compares a local file's size, mtime and ctime. From
    `fileobj` when open_input opened it (the request that sized what was read), else asked
    of the store itself."""
    stat = getattr(fileobj, "zconvert_stat", None)
    if stat is not None:
        return stat
    return _stat(_fresh_info(filesystem(url, storage_options), url))


class ArchiveStat(NamedTuple):
    """What a store records of its archive and a rerun compares: a file's size, mtime and
    ctime, or an object's size, LastModified and ETag (times in ns)."""

    size: int
    mtime_ns: int
    ctime_ns: int | None  # files
    etag: str | None  # objects


def archive_stat(
    path: str, storage_options: Mapping[str, Any] | None = None, fileobj: Any = None
) -> ArchiveStat:
    """The archive's ArchiveStat now, a file's or an object's alike (see source_stat for
    `fileobj`); OSError (FileNotFoundError) when there is none."""
    if is_url(path):
        size, mtime_ns, etag = source_stat(path, storage_options, fileobj)
        return ArchiveStat(size, mtime_ns, None, etag)
    st = os.stat(path)
    return ArchiveStat(st.st_size, st.st_mtime_ns, st.st_ctime_ns, None)


def check_output_place(
    url: str, storage_options: Mapping[str, Any] | None = None, key: str | None = "output"
) -> None:
    """Refuse, before any work, a URL whose bucket cannot be reached: a bucket that does not
    exist, credentials that cannot see it, an endpoint that does not answer, a protocol whose
    package is missing (ConfigError, one line naming the URL and the fix). `key`: the option
    the URL was given as (None for a path a command reads)."""
    fs = filesystem(url, storage_options)
    root = fs._strip_protocol(url).strip("/").split("/", 1)[0]
    if not root:
        return  # a filesystem with no buckets (memory://): nothing to check
    try:
        fs.info(root)  # not exists(): s3fs answers False for an endpoint that does not answer
        found = True
    except FileNotFoundError:
        found = False
    except PermissionError as exc:
        raise ConfigError(
            key, f"{url}: access denied to {root} ({exc}); check the credentials"
        ) from None
    except Exception as exc:  # unreachable endpoint, bad credentials: the backend's own types
        raise ConfigError(
            key, f"{url}: cannot reach {root} ({type(exc).__name__}: {exc})"
        ) from None
    if not found:
        raise ConfigError(
            key,
            f"{url}: the bucket {root} does not exist (or these credentials cannot see it); "
            "create it, or fix the URL",
        )


def read_bytes(url: str, storage_options: Mapping[str, Any] | None = None) -> bytes:
    """The whole object; FileNotFoundError if there is none."""
    return filesystem(url, storage_options).cat_file(url)


def write_bytes(url: str, data: bytes, storage_options: Mapping[str, Any] | None = None) -> None:
    """One PUT: object stores make a single-request upload visible whole or not at all."""
    filesystem(url, storage_options).pipe_file(url, data)


def upload(local_path: str, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """Copy a complete local file to url; it becomes visible once the upload completes."""
    filesystem(url, storage_options).put_file(local_path, url)


def remove_tree(url: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """Delete url (an object) and everything below it; nothing there is not an error. One
    listing finds both (the keys beginning with its name, less its siblings), and one bulk
    delete removes them: a store not there yet costs one request."""
    fs = filesystem(url, storage_options)
    path = fs._strip_protocol(url).rstrip("/")
    parent, _, name = path.rpartition("/")
    try:
        found = fs.find(parent, prefix=name) if parent else []
    except (TypeError, NotImplementedError):  # a filesystem whose find takes no prefix
        found = fs.find(path) if fs.exists(path) else []
    except FileNotFoundError:
        found = []
    doomed = [k for k in found if k == path or k.startswith(path + "/")]
    if doomed:
        try:
            fs.rm(doomed)
        except FileNotFoundError:
            pass
    fs.invalidate_cache(path)
    fs.invalidate_cache(parent)
