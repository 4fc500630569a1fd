"""`zconvert inspect`: what a store holds, read from the store itself, or what a run folder holds.

For a store, every array's metadata and attributes come from zarr or h5py (stored bytes from
zarr's `nbytes_stored()` or h5py's `id.get_storage_size()`), not from the manifest, so a store
copied elsewhere still describes itself. For a run folder, the manifest gives the summary.
"""

from __future__ import annotations

import os
from typing import Any

from ..core.errors import StoreError
from ..core.records import DAMAGED, ORPHAN
from ..core.storage import as_path
from ..run.manifest import MANIFEST_NAME, iter_manifest
from ..sinks.layout import SKIPPED_ATTR, read_skipped_members, store_format

# HDF5 Blosc filter: compressor code -> name (the filter's 7th parameter).
_BLOSC_CODES = {0: "blosclz", 1: "lz4", 2: "lz4hc", 3: "snappy", 4: "zlib", 5: "zstd"}


def _zarr_codec(array: Any) -> str:
    parts = []
    for codec in array.compressors:
        kind = type(codec).__name__.lower()
        cname = getattr(codec, "cname", None)
        if cname is not None:  # BloscCodec (v3) or numcodecs Blosc (v2)
            cname = getattr(cname, "value", cname)
            shuffle = getattr(codec, "shuffle", None)
            shuffle = getattr(shuffle, "value", shuffle)
            shuffled = shuffle in ("shuffle", 1)
            parts.append(f"blosc-{cname}:{codec.clevel}" + ("+shuffle" if shuffled else ""))
        elif "zstd" in kind:
            parts.append(f"zstd:{codec.level}")
        elif "gzip" in kind:
            parts.append(f"gzip:{codec.level}")
        else:
            parts.append(kind)
    return "+".join(parts) or "none"


def _hdf5_codec(dset: Any) -> str:
    dcpl = dset.id.get_create_plist()
    parts = []
    for i in range(dcpl.get_nfilters()):
        code, _flags, values, _name = dcpl.get_filter(i)
        if code == 2:
            parts.append("shuffle")
        elif code == 1:
            parts.append(f"gzip:{values[0]}" if values else "gzip")
        elif code == 32001 and len(values) >= 7:
            shuffled = "+shuffle" if values[5] == 1 else ""
            cname = _BLOSC_CODES.get(values[6], values[6])
            parts.append(f"blosc-{cname}:{values[4]}{shuffled}")
        elif code == 32015:
            parts.append(f"zstd:{values[0]}" if values else "zstd")
        else:
            parts.append(f"filter{code}")
    return "+".join(parts) or "none"


def _plain(value: Any) -> Any:
    """numpy values from HDF5 attributes -> Python values (for JSON and printing): a scalar
    to its value, an array (of any size, one element too) to a list."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _row(
    name: str,
    shape: Any,
    dtype: Any,
    chunks: Any,
    codec: str,
    stored: int,
    attrs: Any,
    shards: Any = None,
):
    import math

    import numpy as np

    # From the metadata, not the attributes, so stores written by other tools work too.
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    return {
        "name": name,
        "shape": list(shape),
        "dtype": str(dtype),
        "chunks": list(chunks) if chunks else None,
        "shards": list(shards) if shards else None,
        "codec": codec,
        "nbytes": nbytes,
        "stored_bytes": stored,
        "ratio": round(nbytes / stored, 3) if nbytes and stored else None,
        "source_archive": _plain(attrs.get("source_archive")),
        "member": _plain(attrs.get("member")),
        "crc32": _plain(attrs.get("crc32")),
    }


def inspect_store(store: str | os.PathLike[str]) -> dict[str, Any]:
    """One store's format, attributes and a record per array, read from the store itself."""
    path = as_path(store)
    fmt = store_format(path)
    arrays = []
    if fmt == "zarr":
        import zarr

        group = zarr.open_group(path, mode="r")
        attrs = dict(group.attrs)
        version = group.metadata.zarr_format
        for name, node in sorted(group.members(max_depth=None)):
            if isinstance(node, zarr.Array):
                arrays.append(
                    _row(
                        name,
                        node.shape,
                        node.dtype,
                        node.chunks,
                        _zarr_codec(node),
                        int(node.nbytes_stored()),
                        node.attrs,
                        node.shards,
                    )
                )
        fmt_name = f"zarr {version}"
    else:
        import h5py

        from ..sinks.hdf5_filters import load_hdf5_filters
        from ..sinks.layout import hdf5_arrays

        load_hdf5_filters()  # so that the filters' parameters read back

        with h5py.File(path, "r", locking=False) as f:
            attrs = {k: _plain(v) for k, v in f.attrs.items()}
            for name, dset in hdf5_arrays(f):  # the netCDF dimension scales left out
                arrays.append(
                    _row(
                        name,
                        dset.shape,
                        dset.dtype.str,
                        dset.chunks,
                        _hdf5_codec(dset),
                        int(dset.id.get_storage_size()),
                        dset.attrs,
                    )
                )
        fmt_name = "hdf5"
    for a in arrays:  # dtype as stored (with byte order), the way --dtype spells it
        a["dtype"] = _dtype_str(a["dtype"])
    return {
        "store": os.path.abspath(path),
        "format": fmt_name,
        "source_archive": _plain(attrs.get("source_archive")),
        "zconvert_version": _plain(attrs.get("zconvert_version")),
        "arrays": arrays,
        # The same records as a run folder's manifest entries give (inspect_output).
        "skipped_members": [
            {"member": s.member, "reason": s.reason}
            for s in read_skipped_members(attrs.get(SKIPPED_ATTR))
        ],
    }


def _dtype_str(dtype: str) -> str:
    import numpy as np

    return np.dtype(dtype).str


UNFINISHED = (
    "the run that wrote this folder did not finish{when}; run the same zconvert convert "
    "command again to resume"
)


def inspect_output(out: str | os.PathLike[str]) -> dict[str, Any]:
    """A run folder's manifest summary and one record per store (missing stores flagged)."""
    out = as_path(out)
    doc, entries = iter_manifest(out)  # one entry in memory at a time
    layout = (doc.get("options") or {}).get("format")
    stores = []
    for entry in entries:
        if layout is not None and entry.get("format", layout) != layout:
            continue  # an older manifest listing another layout's stores too
        arrays = entry.get("arrays", [])
        nbytes = sum(a.get("nbytes", 0) for a in arrays)
        stored = sum(a.get("stored_bytes") or 0 for a in arrays)
        status = entry.get("status")
        if status != "failed" and not os.path.exists(entry.get("store", "")):
            status = "missing" if status != ORPHAN else None
        if status is None:
            continue  # an orphan deleted since: not in the folder, nor in any view
        stores.append(
            {
                "relpath": entry.get("relpath"),
                "store": entry.get("store"),
                "status": status,
                "archive": entry.get("archive"),
                "arrays": len(arrays),
                "nbytes": nbytes,
                "stored_bytes": stored,
                "ratio": round(nbytes / stored, 3) if stored else None,
                "error": entry.get("error"),
                "member": entry.get("member"),
                "skipped_members": entry.get("skipped_members", []),
            }
        )
    complete = doc.get("complete", True)
    written = doc.get("written")
    if not complete:  # stores its run finished after it last wrote the manifest, or killed
        listed = {s["relpath"] for s in stores}
        unlisted = [s for s in _found_stores(out) if s["relpath"] not in listed]
        stores.extend(unlisted)
    return _summary(
        out,
        stores,
        complete,
        doc.get("zconvert_version"),
        written,
        doc.get("options", {}),
        None if complete else UNFINISHED.format(when=f" (manifest written {written})"),
    )


def _summary(
    out: str | os.PathLike[str],
    stores: list[dict[str, Any]],
    complete: bool,
    version: str | None,
    written: str | None,
    options: dict[str, Any],
    note: str | None,
) -> dict[str, Any]:
    statuses = ("converted", "skipped", "failed", "missing", "found", ORPHAN, DAMAGED)
    counts = {s: sum(e["status"] == s for e in stores) for s in statuses}
    return {
        "output": os.path.abspath(os.fspath(out)),
        "complete": complete,
        "note": note,
        "zconvert_version": version,
        "written": written,
        "options": options,
        "counts": counts,
        # what the folder serves: an orphan's bytes are no longer the run's
        "nbytes": sum(s["nbytes"] for s in stores if s["status"] != ORPHAN),
        "stored_bytes": sum(s["stored_bytes"] for s in stores if s["status"] != ORPHAN),
        "stores": stores,
    }


def inspect_unfinished(out: str | os.PathLike[str]) -> dict[str, Any]:
    """A run folder without manifest.json (its run was killed before writing one): the stores
    found in it, each described by its own metadata."""
    root = os.path.abspath(os.fspath(out))
    return _summary(root, _found_stores(root), False, None, None, {}, UNFINISHED.format(when=""))


def _found_stores(out: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The stores in a run folder, found by walking it, each described by its own metadata."""
    from ..run.outdir import stores_in

    root = os.path.abspath(os.fspath(out))
    stores = []
    for store in stores_in(root):
        info = inspect_store(store)
        arrays = info["arrays"]
        nbytes = sum(a.get("nbytes") or 0 for a in arrays)
        stored = sum(a.get("stored_bytes") or 0 for a in arrays)
        stores.append(
            {
                "relpath": os.path.relpath(store, root),
                "store": store,
                "status": "found",
                "archive": info.get("source_archive"),
                "arrays": len(arrays),
                "nbytes": nbytes,
                "stored_bytes": stored,
                "ratio": round(nbytes / stored, 3) if stored else None,
                "error": None,
                "member": None,
                "skipped_members": info["skipped_members"],
            }
        )
    return stores


def is_output_folder(path: str | os.PathLike[str]) -> bool:
    return os.path.isfile(os.path.join(os.fspath(path), MANIFEST_NAME))


def inspect_path(path: str | os.PathLike[str]) -> dict[str, Any]:
    """inspect_output for a run folder (it has a manifest.json), inspect_store otherwise."""
    path = as_path(path)
    if is_output_folder(path):
        return {"kind": "output", **inspect_output(path)}
    if not os.path.exists(path):
        raise StoreError(f"{os.fspath(path)}: no such store or run folder")
    if is_unfinished_folder(path):
        return {"kind": "output", **inspect_unfinished(path)}
    return {"kind": "store", **inspect_store(path)}


def is_unfinished_folder(path: str | os.PathLike[str]) -> bool:
    """A folder that is not a store and has no manifest but holds zconvert's lock file or
    stores: the output folder of a run that was killed before it wrote its manifest."""
    from ..run.outdir import LOCK_NAME, stores_in

    path = as_path(path)
    if not os.path.isdir(path) or is_output_folder(path):
        return False
    if any(os.path.exists(os.path.join(path, n)) for n in ("zarr.json", ".zgroup")):
        return False  # a Zarr store
    return os.path.exists(os.path.join(path, LOCK_NAME)) or bool(stores_in(path))
