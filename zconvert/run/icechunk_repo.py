"""An Icechunk repository of virtual chunks: one group per archive, whose arrays read their
bytes straight out of the archives' stored (ZIP method 0) members.

Input: each archive's kerchunk v1 document ("path/.zarray" metadata, "path/i.j": [url,
offset, length] chunks). Each array becomes a Zarr 3 array at NAME/path, no compressor, its
chunks Icechunk virtual references: the repository holds metadata only. Design points:

- Byte and memory order live in the codecs: the bytes codec's `endian` keeps a big-endian
  member big-endian, and a Fortran-order member gets a transpose codec (reversed axes), which
  is exactly the layout of each of its column chunks.
- Icechunk reads a virtual chunk only under a url prefix that the repository config declares
  as a container (persisted) *and* the reader authorises. It rejects a bare "file:///", so
  local archives get one container per top-level folder ("file:///data/"), S3 archives one per
  bucket. `open_group` authorises whatever the repository declares.
- A chunk's checksum is its archive's last-modified time: Icechunk then refuses (IcechunkError
  "the checksum of the object owning the virtual chunk has changed") a chunk whose archive
  changed later. It keeps whole seconds but compares with the file's full mtime, so times are
  rounded *up* to the second (else an untouched local archive reads as changed).
- One call, one commit on `main`. Icechunk counts a group deleted and written again identically
  as a change, so each commit's metadata keeps a digest of every group's document and times: a
  group whose digest is unchanged is left alone, and a call that changes nothing commits nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.request import url2pathname

import numpy as np
import zarr
from zarr.codecs import BytesCodec, TransposeCodec

from ..core.storage import as_path

if TYPE_CHECKING:
    import icechunk

BRANCH = "main"
# Commit metadata key: {group name: digest of the document it was written from}.
DIGESTS = "zconvert_groups"
# Part of every digest: bump it when the same document should make different arrays.
_LAYOUT = 1
_METADATA_KEYS = (".zarray", ".zattrs", ".zgroup", ".zmetadata")


def write_repository(
    repo: str,
    documents: Mapping[str, Mapping[str, Any]],
    removed: Iterable[str],
    message: str,
    modified: Mapping[str, datetime] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> str | None:
    """One commit on branch main that makes group NAME hold document NAME's arrays as virtual
    chunks (replacing any earlier group NAME entirely) and deletes the groups in `removed`.
    Returns the snapshot id, or None (and no commit) when nothing would change."""
    removed = set(removed)
    if removed & documents.keys():
        raise ValueError(f"groups both written and removed: {sorted(removed & documents.keys())}")
    for name in documents:
        if any(not part or part.startswith(".") for part in name.split("/")):
            raise ValueError(f"{name!r}: a group name is a path of non-empty, visible parts")
    if not documents and not removed:
        return None
    modified = modified or {}
    wanted = {name: _digest(doc, modified) for name, doc in documents.items()}

    repository = _open_for_write(repo, documents.values(), storage_options)
    session = repository.writable_session(BRANCH)
    recorded = repository.lookup_snapshot(session.snapshot_id).metadata.get(DIGESTS)
    digests = dict(recorded or {})
    root = _root(session.store, mode="r+")
    if root is None:
        present: set[str] = set()
    elif recorded is not None:  # the branch's tip is our commit: its digests list its groups
        present = set(digests) & (removed | wanted.keys())
    else:  # another writer's commit, or none of ours yet: look
        present = _present(root, removed | wanted.keys())
    gone = removed & present
    write = {n for n, d in wanted.items() if n not in present or digests.get(n) != d}
    if not gone and not write:
        return None

    if root is None:  # not `if not root`: a root group with no members is falsy
        root = zarr.create_group(session.store)
    for name in sorted(gone | (write & present)):
        del root[name]  # replace entirely: members the new document lacks must go too
    for name in removed:
        digests.pop(name, None)
    for name in sorted(write):
        for depth in range(1, name.count("/") + 1):  # a nested input folder's groups
            parent = "/".join(name.split("/")[:depth])
            if parent not in root:
                zarr.create_group(session.store, path=parent)
        _write_group(session.store, name, documents[name], modified)
        digests[name] = wanted[name]
    return session.commit(message, metadata={DIGESTS: digests})


def open_group(
    repo: str, name: str, storage_options: Mapping[str, Any] | None = None
) -> zarr.Group:
    """Read-only zarr Group of one archive from the repository's main branch, with the
    repository's virtual chunk containers authorised, so arrays read the referenced bytes."""
    ic = _icechunk()
    repository = ic.Repository.open(_storage(repo, storage_options))
    # Local folders need no credentials; S3 buckets get the repository's.
    s3 = ic.s3_credentials(**_s3(storage_options)[1])
    prefixes = repository.config.virtual_chunk_containers or {}
    access = ic.containers_credentials({p: s3 if p.startswith("s3:") else None for p in prefixes})
    repository = repository.reopen(authorize_virtual_chunk_access=access)
    session = repository.readonly_session(branch=BRANCH)
    return zarr.open_group(session.store, path=name, mode="r")


def group_names(repo: str, storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """The archives' group names on the main branch ('/'-separated where nested): those the
    last commit of ours wrote, else the root's groups."""
    ic = _icechunk()
    repository = ic.Repository.open(_storage(repo, storage_options))
    session = repository.readonly_session(branch=BRANCH)
    digests = repository.lookup_snapshot(session.snapshot_id).metadata.get(DIGESTS)
    if digests is not None:
        return sorted(digests)
    root = _root(session.store)
    return sorted(root.group_keys()) if root is not None else []


def is_repository(path_or_url: str, storage_options: Mapping[str, Any] | None = None) -> bool:
    """Whether an Icechunk repository is there (False when icechunk is not installed)."""
    # Icechunk's exists() creates a missing local folder: look before asking.
    if not path_or_url.startswith("s3://") and not os.path.isdir(as_path(path_or_url)):
        return False
    try:
        ic = _icechunk()
    except ImportError:
        return False
    try:
        return ic.Repository.exists(_storage(path_or_url, storage_options))
    except (ic.IcechunkError, OSError, ValueError):
        return False


def _open_for_write(
    repo: str, documents: Iterable[Mapping[str, Any]], storage_options: Mapping[str, Any] | None
) -> icechunk.Repository:
    """The repository (created if absent) whose persisted config declares a container for
    every prefix the documents' chunks live under; no authorisation: writing refs reads none."""
    ic = _icechunk()
    storage = _storage(repo, storage_options)
    prefixes = {_container_prefix(_location(url)) for doc in documents for url in _urls(doc)}
    repository = ic.Repository.open(storage) if ic.Repository.exists(storage) else None
    config = repository.config if repository else ic.RepositoryConfig.default()
    missing = sorted(prefixes - set(config.virtual_chunk_containers or {}))
    for prefix in missing:
        config.set_virtual_chunk_container(_container(prefix, storage_options))
    if repository is None:
        return _create(repo, config, storage_options)
    if missing:  # saved apart from commits: a reader opening the repository needs it
        repository = repository.reopen(config=config)
        repository.save_config()
    return repository


def _present(root: zarr.Group, names: Iterable[str]) -> set[str]:
    """Which of `names` are groups below `root`, asked of the store one by one (2,000 names:
    0.75 s; listing the root's groups, which reads each one's metadata, 0.5 s)."""
    return {name for name in names if name in root}


def _create(
    repo: str, config: icechunk.RepositoryConfig, storage_options: Mapping[str, Any] | None
) -> icechunk.Repository:
    """A new repository at `repo`, which already holds the run's reference files: Icechunk
    creates repositories in empty places only, so it is created in a temporary below `repo`
    (a leftover if this process dies, removed by the next run) and its objects moved up."""
    from ..core.storage import filesystem, is_url, join
    from ..sinks.atomic import remove_path, temp_sibling

    ic = _icechunk()
    if is_url(repo):
        temp = join(repo, posixpath.basename(temp_sibling("/icechunk")))
    else:
        temp = temp_sibling(os.path.join(as_path(repo), "icechunk"))
    ic.Repository.create(_storage(temp, storage_options), config=config)  # persists the config
    if is_url(repo):
        fs = filesystem(repo, storage_options)
        base = fs._strip_protocol(temp).rstrip("/")
        for key in fs.find(base):
            fs.mv(key, fs._strip_protocol(repo).rstrip("/") + key[len(base) :])
    else:
        for name in os.listdir(temp):
            os.replace(os.path.join(temp, name), os.path.join(as_path(repo), name))
        remove_path(temp)
    return ic.Repository.open(_storage(repo, storage_options))


def _write_group(
    store: Any, name: str, doc: Mapping[str, Any], modified: Mapping[str, datetime]
) -> None:
    """Group NAME and its subgroups and arrays from one kerchunk document."""
    ic = _icechunk()
    refs = doc["refs"]
    arrays = {
        key.rpartition("/")[0]: _json(value)
        for key, value in refs.items()
        if key.endswith(".zarray")
    }
    groups = {key.rpartition("/")[0] for key in refs if key.endswith(".zgroup")} | {""}
    for path in list(groups) + list(arrays):  # zarr 3 has no implicit groups: make parents
        while path:
            path = posixpath.dirname(path)
            groups.add(path)
    for path in sorted(groups, key=lambda p: (p.count("/"), p)):
        attributes = _json(refs.get(posixpath.join(path, ".zattrs"), "{}"))
        zarr.create_group(store, path=posixpath.join(name, path).rstrip("/"), attributes=attributes)

    chunks: dict[str, list[Any]] = {path: [] for path in arrays}
    for key, value in refs.items():
        head, _, index = key.rpartition("/")
        if index in _METADATA_KEYS:
            continue
        if head not in arrays or not isinstance(value, list) or len(value) != 3:
            raise ValueError(f"{name}: {key!r} is not a chunk's [url, offset, length]")
        url, offset, length = value
        when = _whole_second(modified[url]) if url in modified else None
        # A 0-d array's one chunk: v2 key "0", index [] (zarr 3 key "c").
        at = [int(i) for i in index.split(".")] if arrays[head]["shape"] else []
        spec = ic.VirtualChunkSpec(
            at, _location(url), offset, length, last_updated_at_checksum=when
        )
        chunks[head].append(spec)

    for path, meta in arrays.items():
        full = posixpath.join(name, path)
        attributes = _json(refs.get(f"{path}/.zattrs", "{}"))
        _create_array(store, full, meta, attributes)
        if chunks[path]:
            failed = store.set_virtual_refs(f"/{full}", chunks[path])
            if failed:
                raise ValueError(f"{full}: chunks {failed[:5]} match no virtual chunk container")


def _create_array(
    store: Any, path: str, meta: Mapping[str, Any], attributes: dict[str, Any]
) -> None:
    """A Zarr 3 array whose chunks are the v2 array's bytes as they are."""
    if meta.get("compressor") or meta.get("filters"):
        raise ValueError(f"{path}: compressed or filtered chunks cannot be referenced as they are")
    dtype = np.dtype(meta["dtype"])
    shape = tuple(meta["shape"])
    # A member of 0 rows: v2 allows a chunk of length 0, zarr 3's regular grid does not.
    chunk_shape = tuple(max(1, c) for c in meta["chunks"])
    # dtype.str always spells the order out ("<f4", ">i4", "|b1"), unlike dtype.byteorder ("=").
    endian = {"<": "little", ">": "big"}.get(dtype.str[0])
    filters = None
    if meta.get("order", "C") == "F" and len(shape) > 1:
        filters = [TransposeCodec(order=tuple(reversed(range(len(shape)))))]
    fill = meta.get("fill_value")
    fill = (False if dtype.kind == "b" else 0) if fill is None else fill
    dimension_names = attributes.pop("_ARRAY_DIMENSIONS", None)
    zarr.create_array(
        store,
        name=path,
        shape=shape,
        chunks=chunk_shape,
        dtype=dtype,
        fill_value=fill,
        filters=filters,
        serializer=BytesCodec(endian=endian),
        compressors=None,
        attributes=attributes,
        dimension_names=dimension_names,
    )


def _urls(doc: Mapping[str, Any]) -> set[str]:
    """The archives a document's chunks are in."""
    return {value[0] for value in doc["refs"].values() if isinstance(value, list) and value}


def _digest(doc: Mapping[str, Any], modified: Mapping[str, datetime]) -> str:
    """What a group was written from: the document and its archives' checksum times."""
    times = {url: _whole_second(modified[url]).isoformat() for url in _urls(doc) if url in modified}
    blob = json.dumps([_LAYOUT, doc, times], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _whole_second(when: datetime) -> datetime:
    """UTC (naive means UTC), rounded up to the second: see the module docstring."""
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    if when.microsecond:
        when = when.replace(microsecond=0) + timedelta(seconds=1)
    return when


def _location(url: str) -> str:
    """A chunk's location as Icechunk takes it: s3:// as it is, a local path as file:///."""
    if url.startswith("s3://"):
        return url
    path = as_path(url)
    if not os.path.isabs(path):
        raise ValueError(f"{url}: a reference needs an absolute path or an s3:// URL")
    return Path(path).as_uri()


def _container_prefix(location: str) -> str:
    scheme, _, rest = location.partition("://")
    top, sep, _ = rest.lstrip("/").partition("/")
    if not sep:
        raise ValueError(f"{location}: an archive at the root of {scheme}:// has no container")
    return f"{scheme}:///{top}/" if scheme == "file" else f"{scheme}://{top}/"


def _container(
    prefix: str, storage_options: Mapping[str, Any] | None
) -> icechunk.VirtualChunkContainer:
    ic = _icechunk()
    if prefix.startswith("file://"):
        return ic.VirtualChunkContainer(prefix, ic.local_filesystem_store(url2pathname(prefix[7:])))
    settings = _s3(storage_options)[0]
    store = ic.s3_store(**settings, s3_compatible=settings["endpoint_url"] is not None)
    return ic.VirtualChunkContainer(prefix, store)


def _storage(repo: str, storage_options: Mapping[str, Any] | None) -> icechunk.Storage:
    ic = _icechunk()
    if repo.startswith("s3://"):
        bucket, _, prefix = repo[5:].partition("/")
        settings, credentials = _s3(storage_options)
        return ic.s3_storage(
            bucket=bucket,
            prefix=prefix.strip("/") or None,
            **settings,
            **credentials,
        )
    return ic.local_filesystem_storage(os.path.abspath(as_path(repo)))


def _s3(storage_options: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """s3fs's options as Icechunk's S3 (settings, credentials); no key means from the
    environment."""
    options = dict(storage_options or {})
    client = dict(options.get("client_kwargs") or {})
    endpoint = options.get("endpoint_url") or client.get("endpoint_url")
    settings = {
        "region": client.get("region_name") or options.get("region_name"),
        "endpoint_url": endpoint,
        "allow_http": bool(endpoint and endpoint.startswith("http://")),
        # MinIO, moto and most other S3 servers at an endpoint of their own want path style.
        "force_path_style": endpoint is not None,
    }
    if options.get("anon"):
        return settings, {"anonymous": True}
    keys = {"access_key_id": "key", "secret_access_key": "secret", "session_token": "token"}
    return settings, {name: options.get(key) for name, key in keys.items()}


def _icechunk() -> Any:
    """icechunk, imported on first use (an optional dependency), its log quieted: it writes
    warnings to stdout (one on every open of a local repository), where zconvert's own
    output goes. ICECHUNK_LOG, when set, still decides."""
    import icechunk

    if "ICECHUNK_LOG" not in os.environ:
        icechunk.set_logs_filter("error")
    return icechunk


def _root(store: Any, mode: Literal["r", "r+"] = "r") -> zarr.Group | None:
    """The root group, or None in a repository that has had no commit of ours yet."""
    try:
        return zarr.open_group(store, mode=mode)
    except FileNotFoundError:  # zarr's GroupNotFoundError
        return None


def _json(value: Any) -> dict[str, Any]:
    """A metadata reference: JSON text (as kerchunk writes it) or an already-parsed object."""
    return dict(json.loads(value) if isinstance(value, str | bytes) else value)
