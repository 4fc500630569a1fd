"""Open converted stores by path, read-only and lazily."""

from __future__ import annotations

import builtins
import os
from typing import Any

from .errors import StoreError

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def store_format(store: str | os.PathLike[str]) -> str:
    """'zarr' or 'hdf5', from what is at the path (not only its name)."""
    path = os.fspath(store)
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "zarr.json")) or os.path.exists(
            os.path.join(path, ".zgroup")
        ):
            return "zarr"
        raise StoreError(f"{path}: a folder but not a Zarr store (no zarr.json or .zgroup)")
    try:
        with builtins.open(path, "rb") as f:
            head = f.read(8)
    except FileNotFoundError:
        raise StoreError(f"{path}: no such store") from None
    if head == _HDF5_SIGNATURE:
        return "hdf5"
    raise StoreError(f"{path}: not a Zarr or HDF5 store")


def array_names(store: str | os.PathLike[str]) -> list[str]:
    """Every array in a store, as '/'-separated paths, in sorted order."""
    path = os.fspath(store)
    if store_format(path) == "zarr":
        import zarr

        group = zarr.open_group(path, mode="r")
        return sorted(
            n for n, node in group.members(max_depth=None) if isinstance(node, zarr.Array)
        )
    import h5py

    names: list[str] = []
    with h5py.File(path, "r", locking=False) as f:
        f.visititems(lambda n, obj: names.append(n) if isinstance(obj, h5py.Dataset) else None)
    return sorted(names)


def _pick(path: str, name: str | None) -> str:
    if name is not None:
        return name
    names = array_names(path)
    if len(names) != 1:
        raise StoreError(f"{path}: holds {len(names)} arrays ({', '.join(names)}); pass name=")
    return names[0]


def open(store: str | os.PathLike[str], name: str | None = None) -> Any:
    """The array `name` of a store, lazily: a zarr.Array or an h5py.Dataset, read-only."""
    path = os.fspath(store)
    fmt = store_format(path)
    name = _pick(path, name)
    if fmt == "zarr":
        import zarr

        try:
            return zarr.open_array(path, path=name, mode="r")
        except (KeyError, FileNotFoundError, zarr.errors.NodeTypeValidationError) as exc:
            raise StoreError(f"{path}: no array named {name!r}") from exc
    import h5py
    import hdf5plugin  # noqa: F401 - registers the Blosc/Zstd filters compressed datasets need

    # locking=False: a reader never blocks, or is blocked by, another reader or a writer.
    f = h5py.File(path, "r", locking=False)
    try:
        dset = f[name]
    except KeyError:
        f.close()
        raise StoreError(f"{path}: no array named {name!r}") from None
    if not isinstance(dset, h5py.Dataset):
        f.close()
        raise StoreError(f"{path}: {name!r} is a group, not an array")
    return dset
