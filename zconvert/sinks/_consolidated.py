"""A Zarr store's root documents, consolidated metadata included: written last, they make
the store a store.

Consolidated metadata copies every node's metadata document into the root, so that a reader
opens a store, and every array in it, with one read (one GET on object storage): zarr-python
uses it when present and xarray warns without it. It is laid out as zarr-python 3.1
writes it with `zarr.consolidate_metadata`: Zarr 3 inline in the root `zarr.json`
(`consolidated_metadata`: kind "inline", the node documents keyed by path), Zarr 2 in
`.zmetadata` (every metadata file keyed by its store key, `zarr_consolidated_format` 1).

The Zarr sink writes the root documents after everything else, in a folder or on object
storage alike, in the order given here, the one that makes the store a group last
(`zarr.json`, or `.zgroup` after `.zattrs` and `.zmetadata`): a store missing its last
documents is no store at all, never one whose consolidated view lists arrays that are not
there.
"""

from __future__ import annotations

from typing import Any

ZARR3_ROOT = "zarr.json"
ZARR2_METADATA = (".zgroup", ".zattrs", ".zarray")


def _node_path(key: str) -> str:
    """The node a metadata document below the root belongs to: 'sub/b/zarr.json' -> 'sub/b'."""
    return key.rsplit("/", 1)[0]


def _node_order(path: str) -> tuple[int, str]:
    # Parents before children and siblings together: zarr-python nests the flat listing
    # by walking it in this order (depth first, then one group's children after another).
    return (path.count("/"), path)


def root_documents(
    zarr_format: int, attributes: dict[str, Any], documents: dict[str, Any]
) -> list[tuple[str, dict[str, Any]]]:
    """The root group's documents with consolidated metadata, in the order to write them:
    (store key, JSON document) pairs, the last one making the store visible as a group.

    `documents` holds every metadata document below the root, by store key ('a/zarr.json',
    'sub/.zgroup', 'sub/b/.zarray', 'sub/b/.zattrs')."""
    if zarr_format == 3:
        nodes = {
            _node_path(key): doc for key, doc in documents.items() if key.endswith("/" + ZARR3_ROOT)
        }
        consolidated = {
            "kind": "inline",
            "must_understand": False,
            "metadata": {path: nodes[path] for path in sorted(nodes, key=_node_order)},
        }
        root = {
            "attributes": attributes,
            "zarr_format": 3,
            "consolidated_metadata": consolidated,
            "node_type": "group",
        }
        return [(ZARR3_ROOT, root)]
    group = {"zarr_format": 2}
    attrs = [(".zattrs", attributes)] if attributes else []
    below = sorted(
        (key for key in documents if key.rsplit("/", 1)[-1] in ZARR2_METADATA),
        key=lambda key: (*_node_order(_node_path(key)), key),
    )
    consolidated = {
        "metadata": {".zgroup": group, **dict(attrs), **{key: documents[key] for key in below}},
        "zarr_consolidated_format": 1,
    }
    return [*attrs, (".zmetadata", consolidated), (".zgroup", group)]
