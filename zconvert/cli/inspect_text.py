"""`zconvert inspect` as text: the records read/inspect.py returns, laid out as tables."""

from __future__ import annotations

from typing import Any

from ..core.convert_options import REFERENCE_FORMATS
from ..core.records import DAMAGED, ORPHAN
from ..core.units import human_bytes


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]


def _dims(values: Any) -> str:
    return "x".join(map(str, values)) if values else "-"


def store_lines(info: dict[str, Any]) -> list[str]:
    """A store as text: a header line and a table with one row per array."""
    lines = [f"{info['store']}  ({info['format']}, zconvert {info['zconvert_version'] or '?'})"]
    if info["source_archive"]:
        lines.append(f"  from {info['source_archive']}")
    rows = [
        [
            a["name"],
            _dims(a["shape"]),
            a["dtype"],
            _dims(a["chunks"]) + (f" in shards of {_dims(a['shards'])}" if a["shards"] else ""),
            a["codec"],
            human_bytes(a["stored_bytes"]),
            f"{a['ratio']:.2f}" if a["ratio"] else "-",
            str(a["member"] or "-"),
            f"{a['crc32']:08x}" if isinstance(a["crc32"], int) else "-",
        ]
        for a in info["arrays"]
    ]
    header = ["array", "shape", "dtype", "chunks", "codec", "stored", "ratio", "member", "crc32"]
    lines.extend("  " + line for line in _table(header, rows))
    lines.extend(
        f"  skipped member {m['member']}: {m['reason']}" for m in info.get("skipped_members", [])
    )
    return lines


def output_lines(info: dict[str, Any]) -> list[str]:
    """A run folder as text: the manifest summary, then one line per store."""
    opts = info["options"]
    c = info["counts"]
    ratio = info["nbytes"] / info["stored_bytes"] if info["stored_bytes"] else None
    if info["written"] is None:
        head = f"{info['output']}  (no manifest.json)"
    else:
        head = (
            f"{info['output']}  (manifest written {info['written']} by zconvert "
            f"{info['zconvert_version']})"
        )
    lines = [head]
    if info.get("note"):
        lines.append(f"  note      {info['note']}")
    if info["written"] is not None:
        lines.extend(_manifest_summary(info, opts, c))
    if c["found"]:
        more = " more (not in the manifest)" if info["written"] is not None else ""
        lines.append(f"  stores    {c['found']}{more} complete stores found in the folder")
    if opts.get("format") in REFERENCE_FORMATS:
        lines.append(
            f"  bytes     {human_bytes(info['nbytes'])} of arrays referred to in place in "
            "the archives (nothing copied)"
        )
    else:
        lines.append(
            f"  bytes     {human_bytes(info['nbytes'])} of arrays stored in "
            f"{human_bytes(info['stored_bytes'])}" + (f" (ratio {ratio:.2f})" if ratio else "")
        )
    return lines + _store_rows(info)


def _manifest_summary(info: dict[str, Any], opts: dict[str, Any], c: dict[str, int]) -> list[str]:
    fmt = opts.get("format")
    zarr_format = f" zarr_format={opts.get('zarr_format')}" if fmt == "zarr" else ""
    codec = "" if fmt in REFERENCE_FORMATS else f" codec={opts.get('codec')}"  # none applies
    return [
        f"  options   format={fmt}{zarr_format}{codec} "
        f"dtype={opts.get('dtype')} shape={opts.get('shape')}"
        + (f" shard_rows={opts['shard_rows']}" if opts.get("shard_rows") else ""),
        f"  stores    {c['converted'] + c['skipped']} complete ({c['converted']} converted, "
        f"{c['skipped']} found up to date by a rerun), {c['failed']} failed, "
        f"{c['missing']} missing"
        + (
            f", {c[DAMAGED]} damaged (found by verify; the next convert redoes them)"
            if c[DAMAGED]
            else ""
        ),
        *(
            [
                f"  orphans   {c[ORPHAN]} store(s) whose archive is not an input of the last "
                "run: left out of every view; convert --prune deletes them"
            ]
            if c[ORPHAN]
            else []
        ),
    ]


def _store_rows(info: dict[str, Any]) -> list[str]:
    rows = []
    for s in info["stores"]:
        if s["status"] in ("failed", DAMAGED):
            where = f"{s['member']}: " if s["member"] else ""
            detail = f"{where}{s['error']}"
        elif s["status"] == ORPHAN:
            detail = f"{s['archive']} is not an input; convert --prune deletes this store"
        else:
            ratio_s = f"{s['ratio']:.2f}" if s["ratio"] else "-"
            detail = (
                f"{s['arrays']} arrays, {human_bytes(s['nbytes'])} -> "
                f"{human_bytes(s['stored_bytes'])} (ratio {ratio_s})"
            )
        rows.append([s["relpath"], s["status"], detail])
        # Not converted on purpose (metadata, --include/--exclude): shown, never silent.
        rows.extend(
            ["", "", f"skipped member {m['member']}: {m['reason']}"]
            for m in s.get("skipped_members") or []
        )
    return ["  " + line for line in _table(["store", "status", "detail"], rows)]
