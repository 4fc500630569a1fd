"""One stored member as references to its bytes in the archive (--format references,
icechunk): what run/worker.py does with each member of a referring format. Nothing is read
but the member's local header (its data offset): no inflate, no slab, no numpy."""

from __future__ import annotations

import math
from typing import Any

from ..core.dtypes import canonical_dtype
from ..core.records import ArrayRecord, Task
from ..core.storage import archive_location
from ..sinks import ArraySpec
from ..zipread.archive import data_offset
from ..zipread.member_layout import MemberLayout
from ..zipread.members import Member
from .array_sizes import array_sizes, reference_chunk_rows


def refer_member(
    task: Task,
    fileobj: Any,
    zf: Any,
    member: Member,
    layout: MemberLayout,
    dim_names: tuple[str, ...],
    sink: Any,
    attributes: dict[str, Any],
) -> ArrayRecord:
    """One stored member as an array of references to its bytes in the archive: chunks of
    whole rows (along the axis its bytes run slowest) that divide the array evenly."""
    itemsize = _itemsize(layout.dtype)
    stream = layout.stream_shape
    row_bytes = itemsize * math.prod(stream[1:])
    wanted = array_sizes(task.options, stream[0], stream[1:], row_bytes, not layout.shape)
    chunks = (reference_chunk_rows(stream[0], wanted.chunks[0]), *stream[1:])
    if not layout.shape:
        chunks = ()
    elif layout.axis:  # a Fortran array: its stream is the transpose
        chunks = tuple(reversed(chunks))
    attributes["header_offset"] = member.header_offset  # where a rerun expects the member
    spec = ArraySpec(
        member.array_name, layout.shape, layout.dtype, chunks, dim_names, attributes,
        axis=layout.axis,
    )  # fmt: skip
    handle = sink.add_array(spec, itemsize)
    offset = data_offset(task.archive, fileobj, member) + layout.data_offset
    sink.refer(handle, archive_location(task.archive), offset)
    return ArrayRecord(
        name=member.array_name,
        member=member.name,
        shape=layout.shape,
        dtype=layout.dtype,  # Zarr 2 keeps byte order in the dtype
        chunks=spec.chunks,
        codec="reference",
        crc32=member.crc32,
        nbytes=itemsize * math.prod(layout.shape),
        stored_bytes=sink.finish_array(handle),
        member_bytes=member.file_size,
    )


def _itemsize(dtype: str) -> int:
    """Bytes per element of numpy's dtype.str ('<f4', '|b1', '<M8[s]'); numpy only for the
    rare ones core/dtypes does not spell."""
    simple = canonical_dtype(dtype) if dtype[1:2] in "fiuc" else None
    if simple is not None and simple[2:].isdigit():
        return int(simple[2:])
    import numpy as np

    return np.dtype(dtype).itemsize
