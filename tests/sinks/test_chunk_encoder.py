"""Chunks encoded straight into aligned buffers: the same bytes numcodecs writes."""

from __future__ import annotations

import numpy as np
import pytest

from zconvert.sinks import chunk_encoder
from zconvert.sinks.codecs import get_preset

from ..conftest import float_rows


@pytest.mark.parametrize("name", ["blosc-lz4", "blosc-zstd"])
@pytest.mark.parametrize("kind", ["random", "smooth", "zeros"])
def test_direct_blosc_bytes_equal_numcodecs(name, kind) -> None:  # type: ignore[no-untyped-def]
    preset = get_preset(name)
    encode = chunk_encoder.direct_encoder(preset)
    assert encode is not None
    chunk = {
        "random": float_rows(65_536, seed=3),
        "smooth": np.sin(np.arange(262_144, dtype="<f4") / 300).reshape(-1, 4),
        "zeros": np.zeros((1000, 4), "<f4"),
    }[kind]
    out = memoryview(bytearray(chunk_encoder.bound(chunk.nbytes)))
    n = encode(chunk, out)
    assert bytes(out[:n]) == bytes(preset.numcodecs_codec().encode(chunk))


@pytest.mark.parametrize("name", ["none", "zstd", "gzip"])
def test_other_codecs_encode_through_numcodecs(name) -> None:  # type: ignore[no-untyped-def]
    assert chunk_encoder.direct_encoder(get_preset(name)) is None


def test_output_buffer_must_hold_the_worst_case() -> None:
    encode = chunk_encoder.direct_encoder(get_preset("blosc-lz4"))
    assert encode is not None
    chunk = float_rows(1000)
    with pytest.raises(ValueError, match="too small"):
        encode(chunk, memoryview(bytearray(chunk.nbytes)))


@pytest.mark.parametrize("name", ["zstd", "gzip"])
@pytest.mark.parametrize("dtype", ["<f4", "<f8", "<i2"])
def test_hdf5_filtered_chunks_hold_what_hdf5s_own_pipeline_stores(tmp_path, name, dtype):
    """Our shuffle + zstd/deflate chunk decodes to the same shuffled bytes as the chunk HDF5
    writes itself with the preset's filters, and h5py reads ours back as the data."""
    import zlib

    import h5py
    import numcodecs

    preset = get_preset(name)
    encode = chunk_encoder.hdf5_filtered_encoder(preset)
    assert encode is not None
    chunk = (float_rows(5_000, seed=4) * 1000).astype(dtype)
    decompress = zlib.decompress if name == "gzip" else numcodecs.Zstd().decode
    with h5py.File(tmp_path / "f.h5", "w") as f:
        theirs = f.create_dataset("theirs", data=chunk, chunks=chunk.shape, **preset.hdf5_kwargs())
        ours = f.create_dataset(
            "ours", shape=chunk.shape, dtype=dtype, chunks=chunk.shape, **preset.hdf5_kwargs()
        )
        ours.id.write_direct_chunk((0, 0), encode(chunk))
        mask, stored = theirs.id.read_direct_chunk((0, 0))
        assert mask == 0
        assert bytes(decompress(stored)) == bytes(decompress(encode(chunk)))
        assert bytes(decompress(stored)) == chunk_encoder.byte_shuffle(chunk).tobytes()
        np.testing.assert_array_equal(ours[...], chunk)


def test_only_zstd_and_gzip_have_an_hdf5_filtered_encoder():
    assert chunk_encoder.hdf5_filtered_encoder(get_preset("blosc-lz4")) is None
    assert chunk_encoder.hdf5_filtered_encoder(get_preset("none")) is None
