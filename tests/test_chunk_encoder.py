"""Chunks encoded straight into aligned buffers: the same bytes numcodecs writes."""

from __future__ import annotations

import numpy as np
import pytest

from zconvert import chunk_encoder
from zconvert.codecs import get_preset

from .conftest import float_rows


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
