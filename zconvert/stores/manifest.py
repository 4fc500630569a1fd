"""OUT/manifest.json, the document: Result records as one line each, its rerun index, read
streaming and written atomically (temporary, fsync, rename). run_manifest.py keeps it during a
run."""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

from ..core.records import Result
from ..core.storage import is_url, join

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


def manifest_path(out: str | os.PathLike[str]) -> str:
    if is_url(out):
        return join(out, MANIFEST_NAME)
    return os.path.join(os.fspath(out), MANIFEST_NAME)


def _header_text(document: dict[str, Any]) -> str:
    """The manifest's opening: its header keys indented, up to the `stores` list."""
    head = json.dumps(document, indent=1, ensure_ascii=False)
    return f"{head[:-2]},\n{_STORES_LINE}"


def entry_line(entry: dict[str, Any]) -> str:
    """One store's entry as one line: json's C encoder runs only without indentation
    (indenting 100,000 stores took 3 s, one line each 0.3 s), and a rerun reads the manifest
    one line at a time."""
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))


INDEX_KEY = "rerun_index"  # before the stores: one short row per store, for reruns
_INDEX_LINE = f' "{INDEX_KEY}": '
_STORES_LINE = ' "stores": [\n'


def write_atomic(path: str, pieces: Iterable[str]) -> None:
    """Write text so that readers see the old file or the new one, never a partial one."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".manifest.", suffix=".tmp", dir=directory)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a manifest is for every reader
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(pieces)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_manifest(
    out: str | os.PathLike[str], storage_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The manifest document of a run folder or URL; FileNotFoundError if there is none."""
    if is_url(out):
        from ..core.storage import read_bytes

        return json.loads(read_bytes(manifest_path(out), storage_options))
    with open(manifest_path(out), encoding="utf-8") as f:
        return json.load(f)


def iter_manifest(
    out: str | os.PathLike[str], storage_options: dict[str, Any] | None = None
) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
    """(header, entries): the manifest's keys but `stores`, and its store entries one at a
    time, for a manifest of any size in little memory (this version writes one entry a line;
    an older, indented manifest is read whole). FileNotFoundError if there is none."""
    path = manifest_path(out)
    if is_url(out):
        from ..core.storage import read_bytes

        lines: Iterable[str] = read_bytes(path, storage_options).decode("utf-8").splitlines()
        return _split(iter(lines), path)
    f = open(path, encoding="utf-8")  # noqa: SIM115 - closed by the entries' generator
    try:
        return _split(f, path)
    except BaseException:
        f.close()
        raise


def _split(lines: Iterator[str], path: str) -> tuple[dict[str, Any], Iterator[dict[str, Any]]]:
    """Header and entries of a manifest: streamed when its entries are one a line (column 0),
    else (an older, indented manifest) parsed whole."""
    head: list[str] = []
    for line in lines:
        if line.startswith(_INDEX_LINE) and line.rstrip().endswith("["):
            for row in lines:  # the index is a rerun's, not a reader's
                if row.startswith(_INDEX_CLOSING):
                    break
            continue
        if line.startswith(' "stores": [') and line.rstrip().endswith("["):
            first = next(lines, "")
            if first.startswith(("{", "\n", " ]")) or not first:
                header = json.loads("".join(head).rstrip().rstrip(",") + "}")
                return header, _entries(itertools.chain([first], lines))
            head.extend([line, first])
            continue
        head.append(line)
    _close(lines)
    document = json.loads("".join(head))
    if not isinstance(document, dict):
        raise ValueError(f"{path}: not a manifest")
    stores = document.pop("stores", [])
    return document, iter(stores)


def _entries(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    try:
        for line in lines:
            if line.startswith("{"):
                yield json.loads(line.rstrip().rstrip(","))
    finally:
        _close(lines)


def _close(lines: Iterator[str]) -> None:
    close = getattr(lines, "close", None)
    if close is not None:
        close()


def read_results(
    out: str | os.PathLike[str], storage_options: dict[str, Any] | None = None
) -> list[Result]:
    """The manifest's stores of the run's layout (its options' format) as Result records, in
    manifest order. Folders written before one folder held one layout may list stores of
    another format too; readers follow the last run's."""
    header, entries = iter_manifest(out, storage_options)  # one entry in memory at a time
    layout = (header.get("options") or {}).get("format")
    return [
        Result.from_dict(d) for d in entries if layout is None or d.get("format", layout) == layout
    ]


# The stamp's last part is a file's ctime, or an object's ETag (URL archives). The column's
# name stays as it was: a changed opening line would make every earlier index unreadable.
INDEX_COLUMNS = ["relpath", "archive", "size:mtime_ns:ctime_ns", "options_id", "status", "format"]
_INDEX_OPENING = f'{{"columns": {json.dumps(INDEX_COLUMNS)}, "rows": ['
_INDEX_CLOSING = " ]},"
INDEX_ROWS_PER_LINE = 1000


def index_row(entry: dict[str, Any]) -> list[Any]:
    """[relpath, archive, "size:mtime:ctime" or None, options digest, status, format]."""
    last = entry.get("source_ctime_ns")
    stamp = [
        entry.get("source_size"),
        entry.get("source_mtime_ns"),
        last if last is not None else entry.get("source_etag"),
    ]
    return [
        entry.get("relpath", ""),
        entry.get("archive"),
        None if None in stamp else ":".join(map(str, stamp)),
        entry.get("options_id"),
        entry.get("status"),
        entry.get("format"),
    ]


def indexed(entry: dict[str, Any], index: list[str]) -> dict[str, Any]:
    index.append(json.dumps(index_row(entry), ensure_ascii=False, separators=(",", ":")))
    return entry


def manifest_pieces(
    header: dict[str, Any], lines: Iterator[str], index: list[str], spool: Any
) -> Iterator[str]:
    """The document: header, the rerun index (one row a line), then one line per store. The
    store lines fill in the index rows as they are made, so they are spooled to a temporary
    file first: a rerun reads the index and stops before the stores."""
    for i, line in enumerate(lines):
        spool.write(f",\n{line}" if i else line)
    spool.seek(0)
    yield _header_text(header)[: -len(_STORES_LINE)]
    yield f"{_INDEX_LINE}{_INDEX_OPENING}\n"
    # INDEX_ROWS_PER_LINE rows a line: one json call reads many, and memory stays bounded
    step = INDEX_ROWS_PER_LINE
    yield ",\n".join(",".join(index[i : i + step]) for i in range(0, len(index), step))
    yield f"\n{_INDEX_CLOSING}\n{_STORES_LINE}"
    yield from iter(lambda: spool.read(1 << 20), "")
    yield "\n ]\n}\n"


def write_manifest(
    out: str,
    header: dict[str, Any],
    lines: Iterator[str],
    index: list[str],
    storage_options: dict[str, Any] | None = None,
) -> str:
    """Write OUT's manifest from its header and entry lines (filling `index` as they go):
    atomically in a folder (temporary, fsync, rename), in one PUT on object storage (no
    rename there, but a single PUT is atomic too: readers see the old manifest or the new
    one). Returns its path."""
    path = manifest_path(out)
    local = not is_url(out)
    with tempfile.TemporaryFile("w+", encoding="utf-8", dir=out if local else None) as spool:
        pieces = manifest_pieces(header, lines, index, spool)
        if local:
            write_atomic(path, pieces)
        else:
            from ..core.storage import write_bytes

            write_bytes(path, "".join(pieces).encode("utf-8"), storage_options)
    return path


def read_rerun_index(path: str) -> tuple[bool, Iterator[list[Any]]] | None:
    """(complete, rows) of a local manifest's rerun index, its rows read a batch at a time,
    the store lines after them never read; None for a manifest without one (an older
    version's) or that is not ours."""
    complete = True
    try:
        f = open(path, encoding="utf-8")  # noqa: SIM115 - closed by _rows
    except OSError:
        return None
    for line in f:
        if line.startswith(' "complete": '):
            complete = line.strip().rstrip(",").endswith("true")
        elif line.startswith(_INDEX_LINE):
            if line[len(_INDEX_LINE) :].strip() != _INDEX_OPENING:
                break
            return complete, _rows(f)
        elif line.startswith(_STORES_LINE):
            break
    f.close()
    return None


def _rows(f: Any) -> Iterator[list[Any]]:
    """Index rows up to the index's end, a line (many rows) at a time."""
    with f:
        for line in f:
            if not line.startswith("["):
                break  # the index's closing line
            yield from json.loads(f"[{line.rstrip().rstrip(',')}]")
