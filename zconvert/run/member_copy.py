"""One member streamed into a sink: inflated a slab of whole chunks at a time into two reused
buffers, the sink writing one while the next is inflated (sinks/slabs.py), CRC32 and size
checked at the end. What run/worker.py does with each member of a copying format."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..core.errors import ArchiveError
from ..core.records import ArrayRecord, Task
from ..sinks import ArraySpec
from ..sinks.directio import slab_buffers
from ..sinks.slabs import SlabPipeline
from ..zipread.archive import MemberReader
from ..zipread.member_layout import MemberLayout
from ..zipread.members import Member
from ..zipread.parallel_inflate import threads_for
from .array_sizes import array_sizes, piece_rows


def _zarr3(options: Any) -> bool:
    return options.format == "zarr" and options.zarr_format == 3


def copy_member(
    task: Task,
    fileobj: Any,
    zf: Any,
    member: Member,
    layout: MemberLayout,
    dim_names: tuple[str, ...],
    sink: Any,
    attributes: dict[str, Any],
) -> ArrayRecord:
    """Stream one member into a new array of the sink. The member's bytes are read as the
    C-order array `stream_shape` (a Fortran array's transpose), cut into slabs of whole
    chunks along its first axis; each slab reaches the sink in the array's own axis order."""
    options = task.options
    dtype = np.dtype(layout.dtype)
    stream = layout.stream_shape
    rows, row_shape = stream[0], stream[1:]
    row_bytes = dtype.itemsize * math.prod(row_shape)
    sizes = array_sizes(options, rows, row_shape, row_bytes, scalar=not layout.shape)
    chunks, inner_chunks, slab_rows = sizes.chunks, sizes.inner_chunks, sizes.slab_rows
    in_array_order = array_order(layout)
    handle = sink.add_array(
        ArraySpec(
            name=member.array_name,
            shape=layout.shape,
            dtype=dtype.str,
            chunks=in_array_order(chunks),
            dimension_names=dim_names,
            attributes=attributes,
            inner_chunks=in_array_order(inner_chunks) if inner_chunks else None,
            axis=layout.axis,
        )
    )
    # Page-aligned, so the sinks can hand slabs to O_DIRECT writes without a copy.
    buffers = slab_buffers(sizes.buffer_rows, row_shape, dtype)
    step = piece_rows(chunks[0], slab_rows, row_bytes, sink.partial_writes(handle))
    threads = threads_for(member.compress_size, options.inflate_threads, options.parallel_inflate)
    reader = MemberReader(task.archive, fileobj, zf, member, threads)
    try:
        if layout.data_offset:  # the .npy header: counted in the CRC32, not array data
            reader.readinto(memoryview(bytearray(layout.data_offset)))
        with SlabPipeline(
            lambda row, piece: sink.write_slab(handle, row, in_array_order(piece)), buffers
        ) as pipe:
            row = 0
            ended = False
            while not ended:
                buffer = pipe.buffer()
                filled = 0
                while filled < slab_rows:
                    want = min(step, slab_rows - filled)
                    piece = buffer[filled : filled + want]
                    nbytes = reader.readinto(memoryview(piece).cast("B"))
                    n_rows, rest = divmod(nbytes, row_bytes)
                    if rest or row + n_rows > rows:
                        raise ArchiveError(
                            task.archive,
                            member.name,
                            f"inflates to more or other than the {member.file_size} bytes the archive declares",
                        )
                    if n_rows:
                        pipe.submit(row, piece[:n_rows])
                    row += n_rows
                    filled += n_rows
                    if n_rows < want:
                        ended = True
                        break
                pipe.release(buffer)
        reader.verify_end()
    finally:
        reader.close()
    stored = sink.finish_array(handle)
    return ArrayRecord(
        name=member.array_name,
        member=member.name,
        shape=layout.shape,
        # As the store gives it back: Zarr 3 keeps byte order in its codec, not its dtype,
        # and zarr reads a big-endian array as the native one (the values are the same).
        dtype=dtype.newbyteorder("=").str if _zarr3(options) else dtype.str,
        # as zarr reports them: the chunks inside shards
        chunks=in_array_order(inner_chunks or chunks),
        codec=options.codec,
        crc32=member.crc32,
        nbytes=dtype.itemsize * math.prod(layout.shape),
        stored_bytes=stored,
        shards=in_array_order(chunks) if inner_chunks else None,
        member_bytes=member.file_size,
    )


def array_order(layout: MemberLayout) -> Any:
    """Shapes and slabs from the member's byte order to the array's: reversed (transposed) for
    a Fortran array, none for a 0-d one; unchanged otherwise."""
    if not layout.shape:
        return lambda x: () if isinstance(x, tuple) else x.reshape(())
    if layout.axis:
        return lambda x: tuple(reversed(x)) if isinstance(x, tuple) else x.T
    return lambda x: x
