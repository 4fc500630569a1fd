"""The one store reader: what a store is (Zarr or HDF5), its arrays' metadata and handles,
opened read-only by local path or by URL alike.

Resume, verify, inspect, `zconvert.open`, `array_names` and `open_all` all open stores here,
so a store reads the same wherever it is and whoever asks. A local store is opened by its
path (zarr's LocalStore, h5py's own file driver); a URL through fsspec (zarr's FsspecStore,
h5py over an fsspec file object reading ranges, which h5py accepts as a file), with the
storage options given or, when none are, what fsspec takes from the environment
(AWS_ENDPOINT_URL, credentials files, ...).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..core.errors import StoreError
from ..core.storage import filesystem, is_url, join, open_input, url_options
from ..sinks.layout import REFERENCES_SIGNATURE, ZARR_ROOTS

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

Options = Mapping[str, Any] | None


@dataclass(frozen=True)
class StoredArray:
    name: str
    attrs: dict[str, Any]
    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]
    stored_bytes: int | None
    shards: tuple[int, ...] | None = None  # a sharded Zarr array's shard shape


def store_format(store: str | os.PathLike[str], storage_options: Options = None) -> str:
    """'zarr', 'hdf5' or 'references', from what is at the path or URL (not only its name)."""
    path = os.fspath(store)
    if is_url(path):
        return _url_format(path, storage_options)
    if os.path.isdir(path):
        if zarr_format_of(path) is not None:
            return "zarr"
        raise StoreError(f"{path}: a folder but not a Zarr store (no zarr.json or .zgroup)")
    try:
        with open(path, "rb") as f:
            head = f.read(len(REFERENCES_SIGNATURE))
    except FileNotFoundError:
        raise StoreError(f"{path}: no such store") from None
    return _file_format(path, head)


def _file_format(path: str, head: bytes) -> str:
    """'hdf5' or 'references' from a file's first bytes."""
    if head[:8] == _HDF5_SIGNATURE:
        return "hdf5"
    if head.startswith(REFERENCES_SIGNATURE[:8]):
        return "references"
    raise StoreError(f"{path}: not a Zarr store, an HDF5 file or a zconvert reference file")


def _url_format(url: str, storage_options: Options) -> str:
    fs = filesystem(url, storage_options)
    try:
        head = fs.cat_file(url, start=0, end=8)
    except (FileNotFoundError, IsADirectoryError):
        head = None
    except Exception as exc:  # the backend's own errors: a bucket denied, no endpoint
        raise StoreError(f"{url}: cannot be read ({type(exc).__name__}: {exc})") from None
    if head is None and any(fs.exists(join(url, name)) for name in ZARR_ROOTS):
        return "zarr"
    if head is None:
        raise StoreError(f"{url}: no such store")
    return _file_format(url, head)


def zarr_format_of(store: str, storage_options: Options = None) -> int | None:
    """3 or 2 from the store's root document, None when it has none (no Zarr store)."""
    if is_url(store):
        fs = filesystem(store, storage_options)
        exists = fs.exists
        store = fs._strip_protocol(store)
    else:
        exists = os.path.exists
    for version, name in zip((3, 2), ZARR_ROOTS, strict=True):
        if exists(f"{store}/{name}"):
            return version
    return None


def zarr_group(store: str, storage_options: Options = None, fmt: str | None = None) -> Any:
    """The store's root group, read-only (consolidated metadata used when present); of a
    reference file, the Zarr 2 store it describes, read from the archives it points at.
    `fmt`: the store's format when the caller knows it (for a URL, asking costs requests)."""
    import zarr

    if fmt is None:
        fmt = store_format(store, storage_options)
    if fmt == "references":
        return reference_group(store, storage_options)
    if not is_url(store):
        from .pinned import PinnedStore, pinned_store

        local = pinned_store(store)
        group = zarr.open_group(local, mode="r")
        if isinstance(local, PinnedStore):
            local.every_chunk_written = "zconvert_version" in group.attrs
        return group
    fs_store = zarr.storage.FsspecStore.from_url(
        store, storage_options=url_options(store, storage_options), read_only=True
    )
    return zarr.open_group(fs_store, mode="r")


def reference_group(store: str, storage_options: Options = None) -> Any:
    """A kerchunk reference file's Zarr 2 group, through fsspec's reference filesystem: the
    file itself and the archives it names (paths, or URLs read with `storage_options`)."""
    import zarr

    # The archives' filesystem: async like the reference filesystem zarr makes (fsspec
    # refuses a mix); s3fs's options as zconvert opens s3:// (a local one ignores them).
    remote = {**url_options("s3://", storage_options), "asynchronous": True}
    options: dict[str, Any] = {"fo": store, "remote_options": remote}
    if is_url(store):
        options["target_options"] = url_options(store, storage_options)
    fs_store = zarr.storage.FsspecStore.from_url(
        "reference://", storage_options=options, read_only=True
    )
    return zarr.open_consolidated(fs_store, zarr_format=2, mode="r")


def hdf5_file(store: str, storage_options: Options = None) -> Any:
    """The HDF5 file, read-only; by URL over a range-reading fsspec file (closed with it)."""
    from ..sinks.hdf5_filters import load_hdf5_filters

    load_hdf5_filters()  # the Blosc/Zstd filters compressed datasets are read through
    if not is_url(store):
        return _local_hdf5_file(store)
    fileobj = open_input(store, storage_options)
    try:
        return _ClosingFile(fileobj)
    except BaseException:
        fileobj.close()
        raise


def _local_hdf5_file(path: str) -> Any:
    """h5py.File(path, "r") with h5py's default locking, the flags h5py and xarray open the
    file with too: HDF5 refuses a second opening of a file in one process with other flags
    ("file locking flag values don't match"). Without a lock only when that is what lets
    the file open: another process writes it and holds its lock (readers share theirs), or
    this process already opened it with locking=False."""
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:  # BlockingIOError for another process's lock
        if "lock" not in str(exc):
            raise
    return h5py.File(path, "r", locking=False)


def _ClosingFile(fileobj: Any) -> Any:
    """An h5py.File over `fileobj` that closes the file object when it is closed."""
    import h5py

    class File(h5py.File):
        def close(self) -> None:
            try:
                super().close()
            finally:
                fileobj.close()

    return File(fileobj, "r")


def open_array(store: str, name: str, storage_options: Options = None) -> Any:
    """The array `name` of a store, lazily: a zarr.Array or an h5py.Dataset (close its .file)."""
    fmt = store_format(store, storage_options)
    if fmt != "hdf5":  # Zarr, or a reference file's Zarr 2
        import zarr

        try:
            node = zarr_group(store, storage_options, fmt)[name]
        except KeyError:
            raise StoreError(f"{store}: no array named {name!r}") from None
        if not isinstance(node, zarr.Array):
            raise StoreError(f"{store}: {name!r} is a group, not an array")
        return node
    import h5py

    f = hdf5_file(store, storage_options)
    try:
        dset = f[name]
    except KeyError:
        f.close()
        raise StoreError(f"{store}: no array named {name!r}") from None
    if not isinstance(dset, h5py.Dataset):
        f.close()
        raise StoreError(f"{store}: {name!r} is a group, not an array")
    return dset


def array_names(store: str, storage_options: Options = None) -> list[str]:
    """Every array of a store, '/'-separated, sorted (HDF5's netCDF dimensions left out)."""
    with opened_store(store, stored_bytes=False, storage_options=storage_options) as opened:
        return [a.name for a in opened[1]]


def read_store_metadata(
    store: str, storage_options: Options = None
) -> tuple[dict[str, Any], list[StoredArray]]:
    """A store's root attributes and its arrays' metadata, without reading array data."""
    with opened_store(store, storage_options=storage_options) as (root, arrays, _):
        return root, arrays


@contextlib.contextmanager
def opened_store(
    store: str, stored_bytes: bool = True, storage_options: Options = None, fmt: str | None = None
) -> Iterator[tuple[dict[str, Any], list[StoredArray], dict[str, Any]]]:
    """(root attributes, arrays' metadata sorted by name, open array handles by name) of a
    store, open for as long as the block runs. `stored_bytes=False` skips listing each array's
    stored chunks (a store request of its own per array). `fmt`: as zarr_group's."""
    fmt = fmt or store_format(store, storage_options)
    if fmt != "hdf5":  # Zarr, or a reference file's Zarr 2
        import zarr

        group = zarr_group(store, storage_options, fmt)

        def stored_of(node: Any) -> int | None:
            if fmt != "zarr":
                return 0  # a reference file stores no array byte
            return int(node.nbytes_stored()) if stored_bytes else None  # a listing, no read

        nodes = {
            name: node
            for name, node in group.members(max_depth=None)
            if isinstance(node, zarr.Array)
        }
        arrays = [
            StoredArray(
                name=name,
                attrs=dict(node.attrs),
                shape=tuple(node.shape),
                dtype=node.dtype.str,
                chunks=tuple(node.chunks),
                stored_bytes=stored_of(node),
                shards=tuple(node.shards) if node.shards else None,
            )
            for name, node in nodes.items()
        ]
        yield dict(group.attrs), sorted(arrays, key=lambda a: a.name), nodes
        return
    from ..sinks.layout import hdf5_arrays, tabled_attributes

    with hdf5_file(store, storage_options) as f:
        handles = dict(hdf5_arrays(f))  # the netCDF dimension scales left out
        root = {k: plain(v) for k, v in f.attrs.items()}
        tabled = tabled_attributes(root)  # a store of many arrays keeps them at the root
        arrays = [
            StoredArray(
                name=name,
                attrs={**tabled.get(name, {}), **{k: plain(v) for k, v in dset.attrs.items()}},
                shape=tuple(dset.shape),
                dtype=dset.dtype.str,
                chunks=tuple(dset.chunks or dset.shape),
                stored_bytes=int(dset.id.get_storage_size()),
            )
            for name, dset in handles.items()
        ]
        yield root, arrays, handles


def plain(value: Any) -> Any:
    """numpy values from HDF5 attributes -> Python values (for JSON and comparisons)."""
    import numpy as np  # not at import: a rerun's parent decides without numpy

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode()
    return value


def refuse_bad_place(url: str, storage_options: Options = None) -> None:
    """For a reader: ConfigError, one line, when a URL's bucket does not exist or cannot be
    reached (its endpoint, its credentials, its protocol's package); nothing for a path. A
    missing store below a reachable bucket is the caller's 'no such store'."""
    if is_url(url):
        from ..core.storage import check_output_place

        check_output_place(url, storage_options, key=None)
