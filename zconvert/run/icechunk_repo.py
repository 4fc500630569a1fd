"""An Icechunk repository of virtual chunks: one group per archive, whose arrays read their
bytes straight out of the archives' stored (ZIP method 0) members.

The input is the kerchunk version-1 reference document of each archive (written elsewhere:
"path/.zarray" metadata and "path/i.j": [url, offset, length] chunk references). Each array
becomes a Zarr 3 array at NAME/path with no compressor; its chunks are Icechunk virtual
references, so the repository holds metadata only. Design points, each forced by Icechunk
1.x or by what a reader must be able to do:

- Byte order and memory order live in the codecs: the bytes codec's `endian` keeps a
  big-endian member big-endian on disk, and a Fortran-ordered member gets a transpose codec
  (reversed axes), which is exactly the layout of each of its column chunks.
- Icechunk reads a virtual chunk only under a url prefix that the repository config declares
  as a virtual chunk container (persisted in the repository) *and* that the reader authorises.
  It rejects a bare "file:///" prefix, so local archives get one container per top-level
  folder ("file:///data/"); S3 archives one per bucket ("s3://bucket/"). `open_group`
  authorises whatever the repository declares.
- A chunk's checksum is its archive's last-modified time: Icechunk then refuses (IcechunkError
  "the checksum of the object owning the virtual chunk has changed") to serve a chunk whose
  archive changed later. It keeps whole seconds but compares with the file's full mtime, so
  a time is rounded *up* to the second (else an untouched local archive reads as changed).
- One call, one commit on `main`. Icechunk counts a group deleted and written again
  identically as a change, so each commit's metadata carries a digest of every group's
  document (and checksums): a group whose digest is unchanged is left alone, and a call that
  then deletes and writes nothing commits nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
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
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"{name!r}: a group name is one path segment")
    if not documents and not removed:
        return None
    modified = modified or {}
    wanted = {name: _digest(doc, modified) for name, doc in documents.items()}

    repository = _open_for_write(repo, documents.values(), storage_options)
    session = repository.writable_session(BRANCH)
    digests = dict(repository.lookup_snapshot(session.snapshot_id).metadata.get(DIGESTS) or {})
    root = _root(session.store)
    present = set(root.group_keys()) if root is not None else set()
    gone = removed & present
    write = {n for n, d in wanted.items() if n not in present or digests.get(n) != d}
    if not gone and not write:
        return None

    # The listing's group is read-only; this one may delete.
    root = zarr.open_group(session.store, mode="r+") if root else zarr.create_group(session.store)
    for name in sorted(gone | (write & present)):
        del root[name]  # replace entirely: members the new document lacks must go too
    for name in removed:
        digests.pop(name, None)
    for name in sorted(write):
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
    prefixes = repository.config.virtual_chunk_containers or {}
    repository = repository.reopen(
        authorize_virtual_chunk_access=_authorisation(prefixes, storage_options)
    )
    session = repository.readonly_session(branch=BRANCH)
    return zarr.open_group(session.store, path=name, mode="r")


def group_names(repo: str, storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """The archives' group names on the main branch."""
    ic = _icechunk()
    session = ic.Repository.open(_storage(repo, storage_options)).readonly_session(branch=BRANCH)
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
    if not ic.Repository.exists(storage):
        config = ic.RepositoryConfig.default()
        for prefix in sorted(prefixes):
            config.set_virtual_chunk_container(_container(prefix, storage_options))
        return ic.Repository.create(storage, config=config)
    repository = ic.Repository.open(storage)
    config = repository.config
    missing = prefixes - set(config.virtual_chunk_containers or {})
    if missing:
        for prefix in sorted(missing):
            config.set_virtual_chunk_container(_container(prefix, storage_options))
        repository = repository.reopen(config=config)
        repository.save_config()
    return repository


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
    if "" in arrays:
        raise ValueError(f"{name}: the document's root is an array; a group is needed")
    groups = {key.rpartition("/")[0] for key in refs if key.endswith(".zgroup")} | {""}
    for path in list(groups) + list(arrays):  # zarr 3 has no implicit groups: make parents
        while path:
            path = posixpath.dirname(path)
            groups.add(path)
    for path in sorted(groups, key=lambda p: (p.count("/"), p)):
        attributes = _json(refs.get(posixpath.join(path, ".zattrs"), "{}"))
        zarr.create_group(store, path=posixpath.join(name, path).rstrip("/"), attributes=attributes)

    chunks: dict[str, list[ic.VirtualChunkSpec]] = {path: [] for path in arrays}
    for key, value in refs.items():
        parts = key.split("/")
        if parts[-1] in _METADATA_KEYS:
            continue
        # The longest array path the key extends (a separator of "/" splits the index too).
        head = next(
            (h for i in range(len(parts) - 1, 0, -1) if (h := "/".join(parts[:i])) in arrays), None
        )
        if head is None:
            raise ValueError(f"{name}: reference {key!r} belongs to no array")
        meta = arrays[head]
        rest = key[len(head) + 1 :]
        index = [int(i) for i in rest.split(meta.get("dimension_separator", "."))]
        if not isinstance(value, list) or len(value) != 3:
            raise ValueError(f"{name}: {key!r} is not a [url, offset, length] reference")
        url, offset, length = value
        checksum = _whole_second(modified[url]) if url in modified else None
        chunks[head].append(
            ic.VirtualChunkSpec(
                index if meta["shape"] else [],  # a 0-d array's one chunk: v2 key "0", v3 "c"
                _location(url),
                offset,
                length,
                last_updated_at_checksum=checksum,
            )
        )

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
    if fill is None:
        fill = False if dtype.kind == "b" else 0
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
    settings = _s3_settings(storage_options)
    store = ic.s3_store(**settings, s3_compatible=settings["endpoint_url"] is not None)
    return ic.VirtualChunkContainer(prefix, store)


def _authorisation(
    prefixes: Iterable[str], storage_options: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Credentials per container: local folders need none; S3 buckets use the repository's."""
    ic = _icechunk()
    return ic.containers_credentials(
        {
            prefix: ic.s3_credentials(**_s3_credentials(storage_options))
            if prefix.startswith("s3://")
            else None
            for prefix in prefixes
        }
    )


def _storage(repo: str, storage_options: Mapping[str, Any] | None) -> icechunk.Storage:
    ic = _icechunk()
    if repo.startswith("s3://"):
        bucket, _, prefix = repo[5:].partition("/")
        return ic.s3_storage(
            bucket=bucket,
            prefix=prefix.strip("/") or None,
            **_s3_settings(storage_options),
            **_s3_credentials(storage_options),
        )
    return ic.local_filesystem_storage(os.path.abspath(as_path(repo)))


def _s3_settings(storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """s3fs's options (endpoint_url, client_kwargs) as Icechunk's S3 settings."""
    options = dict(storage_options or {})
    client = dict(options.get("client_kwargs") or {})
    endpoint = options.get("endpoint_url") or client.get("endpoint_url")
    return {
        "region": client.get("region_name") or options.get("region_name"),
        "endpoint_url": endpoint,
        "allow_http": bool(endpoint and endpoint.startswith("http://")),
        # MinIO, moto and most other S3 servers at an endpoint of their own want path style.
        "force_path_style": endpoint is not None,
    }


def _s3_credentials(storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """s3fs's key/secret/token/anon; none of them means from the environment."""
    options = storage_options or {}
    if options.get("anon"):
        return {"anonymous": True}
    return {
        "access_key_id": options.get("key"),
        "secret_access_key": options.get("secret"),
        "session_token": options.get("token"),
    }


def _icechunk() -> Any:
    """icechunk, imported on first use (an optional dependency), its log quieted: it writes
    warnings to stdout (one on every open of a local repository), where zconvert's own
    output goes. ICECHUNK_LOG, when set, still decides."""
    import icechunk

    if "ICECHUNK_LOG" not in os.environ:
        icechunk.set_logs_filter("error")
    return icechunk


def _root(store: Any) -> zarr.Group | None:
    """The root group, or None in a repository that has had no commit of ours yet."""
    try:
        return zarr.open_group(store, mode="r")
    except FileNotFoundError:  # zarr's GroupNotFoundError
        return None


def _json(value: Any) -> dict[str, Any]:
    """A metadata reference: JSON text (as kerchunk writes it) or an already-parsed object."""
    return dict(json.loads(value) if isinstance(value, str | bytes) else value)
