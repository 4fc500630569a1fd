"""An output folder (OUT, a local folder or a URL prefix) as it is found: whether it is a run's
(a manifest, or the lock and stores of a run killed before writing one), which stores it
holds, whether one of them exists, and the arrays its manifest serves.

A store exists when it is complete: a Zarr store with its root document (written last, on
disk and on object storage alike), an HDF5 file (published or uploaded whole).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from typing import Any, NamedTuple

from ..core.errors import StoreError
from ..core.storage import filesystem, is_url, join
from ..sinks.atomic import TEMP_MARK
from ..sinks.layout import REFERENCES_SIGNATURE, ZARR_ROOTS
from .manifest import MANIFEST_NAME, manifest_path, read_results

Options = Mapping[str, Any] | None  # fsspec storage options, as in opened.py

LOCK_NAME = ".zconvert.lock"
COMBINED_NAME = "all.h5"  # an HDF5 run's virtual dataset over all its arrays


UNFINISHED = (
    "the run that wrote this folder did not finish{when}; run the same zconvert convert "
    "command again to resume"
)


def is_leftover(name: str) -> bool:
    """A temporary a sink or the manifest writer leaves behind only if its process died."""
    return name.startswith(".") and (
        TEMP_MARK in name or (name.startswith(".manifest.") and name.endswith(".tmp"))
    )


def is_output_folder(path: str | os.PathLike[str], storage_options: Options = None) -> bool:
    """Whether OUT holds a run's manifest.json."""
    path = os.fspath(path)
    if is_url(path):
        return bool(filesystem(path, storage_options).isfile(manifest_path(path)))
    return os.path.isfile(manifest_path(path))


def is_unfinished_folder(path: str | os.PathLike[str], storage_options: Options = None) -> bool:
    """A folder that is not a store and has no manifest but holds zconvert's lock file or
    stores: the output folder of a run that was killed before it wrote its manifest."""
    path = os.fspath(path)
    if is_output_folder(path, storage_options):
        return False
    if is_url(path):
        fs = filesystem(path, storage_options)
        if not fs.isdir(path) or any(fs.exists(join(path, n)) for n in ZARR_ROOTS):
            return False
        return bool(stores_in(path, storage_options))
    if not os.path.isdir(path):
        return False
    if any(os.path.exists(os.path.join(path, n)) for n in ZARR_ROOTS):
        return False  # a Zarr store
    return os.path.exists(os.path.join(path, LOCK_NAME)) or bool(stores_in(path))


def stores_in(out: str, storage_options: Options = None) -> list[str]:
    """Every finished store under OUT, found by walking it (a folder whose run was killed before
    it wrote its manifest): Zarr folders with their root document, `.h5` files, in sorted order.
    Temporaries are not stores; neither is the run's combined OUT/all.h5."""
    if is_url(out):
        return _stores_below_url(out, storage_options)
    found: list[str] = []
    for parent, dirs, files in os.walk(out):
        found.extend(
            os.path.join(parent, f)
            for f in files
            if _is_file_store(os.path.join(parent, f), f, parent == out)
        )
        stores = [
            d
            for d in dirs
            if not is_leftover(d)
            and any(os.path.exists(os.path.join(parent, d, n)) for n in ZARR_ROOTS)
        ]
        found.extend(os.path.join(parent, d) for d in stores)
        dirs[:] = [d for d in dirs if d not in stores and not is_leftover(d)]
    return sorted(found)


def _is_file_store(path: str, name: str, at_root: bool) -> bool:
    """Whether a file found under OUT is a store: an .h5 file, or a .json file that is a
    reference file (not the manifest, nor any JSON a user keeps there); neither a temporary
    nor OUT's all.h5."""
    if is_leftover(name) or (at_root and name in (COMBINED_NAME, MANIFEST_NAME)):
        return False
    if name.endswith(".h5"):
        return True
    if not name.endswith(".json"):
        return False
    try:
        with open(path, "rb") as f:
            return f.read(len(REFERENCES_SIGNATURE)) == REFERENCES_SIGNATURE
    except OSError:
        return False


def _stores_below_url(out: str, storage_options: Options) -> list[str]:
    """stores_in for a URL prefix, from one listing: the outermost folders holding a root
    document, and .h5 objects outside them."""
    fs = filesystem(out, storage_options)
    root = fs._strip_protocol(out).rstrip("/")
    try:
        keys = sorted(posixpath.relpath(k, root) for k in fs.find(root))
    except FileNotFoundError:
        return []
    candidates = {
        folder
        for folder, _, name in (key.rpartition("/") for key in keys)
        if name in ZARR_ROOTS and folder and not is_leftover(folder.rpartition("/")[2])
    }
    roots: list[str] = []
    for folder in sorted(candidates, key=lambda f: (f.count("/"), f)):  # outermost first
        if not any(folder.startswith(r + "/") for r in roots):
            roots.append(folder)
    found = list(roots)
    for key in keys:
        name = key.rpartition("/")[2]
        if (
            key.endswith((".h5", ".json"))
            and key not in (COMBINED_NAME, MANIFEST_NAME)
            and not is_leftover(name)
            and not any(key.startswith(r + "/") for r in roots)
        ):
            found.append(key)
    return sorted(join(out, k) for k in found)


def store_exists(store: str, storage_options: Options = None) -> bool:
    """Whether a complete store is at the path or URL (on object storage: its root document,
    written last, or the uploaded HDF5 object)."""
    if not is_url(store):
        return os.path.exists(store)
    fs = filesystem(store, storage_options)
    if store.endswith(".zarr"):
        return any(fs.exists(join(store, name)) for name in ZARR_ROOTS)
    return bool(fs.exists(store))


def remove_store(store: str, storage_options: Options = None) -> None:
    """Delete a store (a folder, a file, or every object under a URL); none there is fine."""
    if is_url(store):
        from ..core.storage import remove_tree

        remove_tree(store, storage_options)
    else:
        from ..sinks.atomic import remove_path

        remove_path(store)


def stores_exist(
    stores: list[str], storage_options: Options = None, out: str | None = None
) -> list[bool]:
    """store_exists of each. On object storage, from one listing of `out` when that is fewer
    requests than asking for each store's root document (REMOTE_REQUESTS at a time): a
    listing page holds 1,000 keys, so it wins while stores hold fewer than about 60 keys each,
    which one store's own listing tells. A listing sees only complete stores too: it looks
    for the root document, as store_exists does."""
    if not any(is_url(s) for s in stores):
        return [os.path.exists(s) for s in stores]
    if out is not None and len(stores) > 1 and _listing_is_cheaper(stores, out, storage_options):
        fs = filesystem(out, storage_options)
        try:
            keys = set(fs.find(fs._strip_protocol(out)))
        except FileNotFoundError:
            keys = set()
        return [_listed(fs._strip_protocol(s), keys) for s in stores]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(REMOTE_REQUESTS) as pool:
        return list(pool.map(lambda s: store_exists(s, storage_options), stores))


def _listing_is_cheaper(stores: list[str], out: str, storage_options: Options) -> bool:
    zarr = [s for s in stores if s.endswith(".zarr")]
    if not zarr:
        return True  # HDF5 stores are one object each
    fs = filesystem(out, storage_options)
    try:
        keys_per_store = max(1, len(fs.find(fs._strip_protocol(zarr[0]))))
    except FileNotFoundError:
        keys_per_store = 1
    pages = keys_per_store * len(stores) / LISTING_PAGE_KEYS
    return pages <= len(stores) / REMOTE_REQUESTS


def _listed(store: str, keys: set[str]) -> bool:
    if store.endswith(".zarr"):
        return any(f"{store}/{name}" in keys for name in ZARR_ROOTS)
    return store in keys


LISTING_PAGE_KEYS = 1000  # keys in one page of an S3 listing (ListObjectsV2's maximum)
# Requests to object storage in flight at once (fsspec runs them on its event loop; threads
# only wait for them).
REMOTE_REQUESTS = 16


def store_location(out: str, relpath: str) -> str:
    """A store of OUT by its manifest relpath: found relative to the manifest, so that a run
    folder can be moved or mounted elsewhere."""
    return join(out, relpath) if is_url(out) else os.path.join(out, relpath)


class ManifestArray(NamedTuple):
    relpath: str  # of the store, relative to OUT
    name: str  # of the array in its store
    shape: tuple[int, ...]
    dtype: str


def manifest_arrays(out: str, storage_options: Options = None) -> list[ManifestArray]:
    """Every array the manifest serves (converted or skipped as current), in manifest order:
    what refs(), open_all() and all.h5 are made of."""
    try:
        results = read_results(out, storage_options)
    except FileNotFoundError:
        raise StoreError(f"{out}: no manifest.json; is this the output folder of a run?") from None
    return [
        ManifestArray(r.relpath, a.name, tuple(a.shape), a.dtype)
        for r in results
        if r.serves_data
        for a in r.arrays
    ]


class StackGroup(NamedTuple):
    """Arrays of a run that stack along rows: one dtype, one row shape."""

    name: str  # all.h5's dataset: the arrays' common name, else one made of dtype and row shape
    dtype: str
    row_shape: tuple[int, ...]
    arrays: list[ManifestArray]  # in manifest order

    def describe(self) -> str:
        """'float32 x [4] (3 arrays: values)', as errors list the groups."""
        import numpy as np

        dt = np.dtype(self.dtype)
        kind = f"{dt.name if dt.isnative else dt.str} x {list(self.row_shape)}"
        names = some_of(list(dict.fromkeys(a.name for a in self.arrays)))
        return f"{kind} ({len(self.arrays)} arrays: {names})"


def stacking_groups(arrays: list[ManifestArray]) -> list[StackGroup]:
    """The arrays by dtype and row shape, each group where its first array is in the manifest.
    A 0-d array has no rows to stack: it is in no group."""
    import numpy as np  # not at import: a rerun's parent decides without numpy

    by_kind: dict[tuple[str, tuple[int, ...]], list[ManifestArray]] = {}
    for a in arrays:
        if a.shape:
            by_kind.setdefault((np.dtype(a.dtype).str, a.shape[1:]), []).append(a)
    common = {kind: {a.name for a in members} for kind, members in by_kind.items()}
    common_names = [next(iter(names)) for names in common.values() if len(names) == 1]
    groups: list[StackGroup] = []
    taken: set[str] = set()
    for (dtype, row_shape), members in by_kind.items():
        derived = np.dtype(dtype).name + ("_x" + "x".join(map(str, row_shape)) if row_shape else "")
        names = common[(dtype, row_shape)]
        name = next(iter(names)) if len(names) == 1 else derived
        if len(names) == 1 and common_names.count(name) > 1:  # `values` of two row shapes
            name = f"{name}_{derived}"
        name = _untaken(name, taken)
        groups.append(StackGroup(name, dtype, row_shape, members))
    return groups


def _untaken(name: str, taken: set[str]) -> str:
    """`name`, or `name_2`, `name_3`...: neither another dataset's name nor a group holding
    one (HDF5 names are paths)."""

    def clashes(candidate: str) -> bool:
        return any(
            t == candidate or t.startswith(candidate + "/") or candidate.startswith(t + "/")
            for t in taken
        )

    candidate, n = name, 1
    while clashes(candidate):
        n += 1
        candidate = f"{name}_{n}"
    taken.add(candidate)
    return candidate


def some_of(names: list[str], limit: int = 3) -> str:
    """'a, b, c and 7 more': a list an error message can hold."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def stacking_problem(arrays: list[ManifestArray]) -> str | None:
    """Why the arrays cannot be stacked along rows, or None when they can."""
    flat = [f"{a.relpath}:{a.name}" for a in arrays if not a.shape]
    if flat:
        return f"{len(flat)} arrays have no rows (0-d): {some_of(flat)}"
    groups = stacking_groups(arrays)
    if len(groups) > 1:
        listed = "; ".join(g.describe() for g in groups)
        return f"the arrays differ in dtype or row shape, {len(groups)} groups: {listed}"
    return None


def absolute(out: str | os.PathLike[str]) -> str:
    """OUT as readers name it: a URL as given (less a trailing '/'), a path made absolute."""
    out = os.fspath(out)
    return out.rstrip("/") if is_url(out) else os.path.abspath(out)
