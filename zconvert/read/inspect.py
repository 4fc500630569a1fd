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
from ..core.storage import as_path, is_url
from ..sinks.layout import SKIPPED_ATTR, read_skipped_members
from ..stores.folder import (
    UNFINISHED,
    absolute,
    is_output_folder,
    is_unfinished_folder,
    store_location,
    stores_exist,
    stores_in,
)
from ..stores.manifest import iter_manifest
from ..stores.opened import (
    Options,
    opened_store,
    plain,
    refuse_bad_place,
    store_format,
    zarr_format_of,
)

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
        "source_archive": plain(attrs.get("source_archive")),
        "member": plain(attrs.get("member")),
        "crc32": plain(attrs.get("crc32")),
    }


def inspect_store(store: str | os.PathLike[str], storage_options: Options = None) -> dict[str, Any]:
    """One store's format, attributes and a record per array, read from the store itself (by
    path or URL)."""
    path = absolute(as_path(store))
    fmt = store_format(path, storage_options)
    with opened_store(path, storage_options=storage_options, fmt=fmt) as (attrs, stored, handles):
        arrays = []
        hdf5 = fmt == "hdf5"
        for a in stored:
            handle = handles[a.name]
            codec = _hdf5_codec(handle) if hdf5 else _zarr_codec(handle)
            if fmt == "references":
                codec = "reference"  # the member's own bytes, in its archive
            chunks = handle.chunks if hdf5 else a.chunks  # None: a contiguous HDF5 dataset
            row = _row(a.name, a.shape, a.dtype, chunks, codec, a.stored_bytes, a.attrs, a.shards)
            arrays.append(row)
    fmt_name = fmt if fmt != "zarr" else f"zarr {zarr_format_of(path, storage_options)}"
    for a in arrays:  # dtype as stored (with byte order), the way --dtype spells it
        a["dtype"] = _dtype_str(a["dtype"])
    return {
        "store": path,
        "format": fmt_name,
        "source_archive": plain(attrs.get("source_archive")),
        "zconvert_version": plain(attrs.get("zconvert_version")),
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


def inspect_output(out: str | os.PathLike[str], storage_options: Options = None) -> dict[str, Any]:
    """A run folder's manifest summary and one record per store (missing stores flagged), by
    path or URL; the stores' existence is asked of object storage many at a time."""
    out = absolute(as_path(out))
    doc, entries = iter_manifest(out, storage_options)  # one entry in memory at a time
    layout = (doc.get("options") or {}).get("format")
    stores = []
    for entry in entries:
        if layout is not None and entry.get("format", layout) != layout:
            continue  # an older manifest listing another layout's stores too
        arrays = entry.get("arrays", [])
        nbytes = sum(a.get("nbytes", 0) for a in arrays)
        stored = sum(a.get("stored_bytes") or 0 for a in arrays)
        relpath = entry.get("relpath") or ""
        stores.append(
            {
                "relpath": relpath,
                "store": store_location(out, relpath) if relpath else entry.get("store"),
                "status": entry.get("status"),
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
    # An orphan deleted since is not in the folder, nor in any view; any other store listed
    # but gone is "missing".
    held = [s for s in stores if s["status"] != "failed"]
    for s, exists in zip(
        held, stores_exist([s["store"] for s in held], storage_options, out), strict=True
    ):
        if not exists:
            s["status"] = "missing" if s["status"] != ORPHAN else None
    stores = [s for s in stores if s["status"] is not None]
    complete = doc.get("complete", True)
    written = doc.get("written")
    if not complete:  # stores its run finished after it last wrote the manifest, or killed
        listed = {s["relpath"] for s in stores}
        unlisted = [s for s in _found_stores(out, storage_options) if s["relpath"] not in listed]
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
        "output": absolute(out),
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


def inspect_unfinished(
    out: str | os.PathLike[str], storage_options: Options = None
) -> dict[str, Any]:
    """A run folder without manifest.json (its run was killed before writing one): the stores
    found in it, each described by its own metadata."""
    root = absolute(out)
    found = _found_stores(root, storage_options)
    return _summary(root, found, False, None, None, {}, UNFINISHED.format(when=""))


def _found_stores(out: str, storage_options: Options = None) -> list[dict[str, Any]]:
    """The stores in a run folder, found by walking it, each described by its own metadata."""
    stores = []
    for store in stores_in(out, storage_options):
        info = inspect_store(store, storage_options)
        arrays = info["arrays"]
        nbytes = sum(a.get("nbytes") or 0 for a in arrays)
        stored = sum(a.get("stored_bytes") or 0 for a in arrays)
        stores.append(
            {
                "relpath": store[len(out) :].lstrip("/" + os.sep),
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


def inspect_path(path: str | os.PathLike[str], storage_options: Options = None) -> dict[str, Any]:
    """inspect_output for a run folder (it has a manifest.json), inspect_store otherwise; by
    local path or URL."""
    path = absolute(as_path(path))
    refuse_bad_place(path, storage_options)
    if is_output_folder(path, storage_options):
        return {"kind": "output", **inspect_output(path, storage_options)}
    if not is_url(path) and not os.path.exists(path):
        raise StoreError(f"{path}: no such store or run folder")
    if is_unfinished_folder(path, storage_options):
        return {"kind": "output", **inspect_unfinished(path, storage_options)}
    try:
        return {"kind": "store", **inspect_store(path, storage_options)}
    except StoreError as exc:
        if is_url(path) and str(exc).endswith("no such store"):
            raise StoreError(f"{path}: no such store or run folder") from None
        raise
