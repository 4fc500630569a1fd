"""Bad run files are refused before any work, naming the key and the file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import zconvert
from zconvert.core.errors import ConfigError
from zconvert.run.config import build_config


def _yaml(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(f"inputs: [{tmp_path / 'in'}]\noutput: {tmp_path / 'out'}\n{body}\n")
    (tmp_path / "in").mkdir(exist_ok=True)
    return path


BAD = [
    ("colour: blue", "colour", "unknown key"),
    ("workers: two", "workers", "not a whole number"),
    ("workers: 0", "workers", "positive"),
    ("chunk_rows: -5", "chunk_rows", "positive"),
    ("chunk_rows: 1.5", "chunk_rows", "not a whole number"),
    ("overwrite: 'yes'", "overwrite", "true or false"),
    ("parallel_inflate: 'sometimes'", "parallel_inflate", "true, false or null (auto)"),
    ("max_ratio: big", "max_ratio", "not a number"),
    ("max_ratio: 0.5", "max_ratio", "greater than 1"),
    ("slab_bytes: -1", "slab_bytes", "positive"),
    ("dtype: float128x", "dtype", "not a numpy dtype"),
    ("dtype: U8", "dtype", "numeric"),
    ("format: parquet", "format", "not one of"),
    ("codec: lz77", "codec", "not one of"),
    ("shape: [-1, 0]", "shape", "impossible"),
    ("shape: [4, -1]", "shape", "impossible"),
    ("shape: a,b", "shape", "not a list of integers"),
    ("shape: 1000x", "shape", "'1000x' leaves a size out; write every size"),
    ("shape: x4", "shape", "leaves a size out"),
    ("shape: '1000,,4'", "shape", "leaves a size out"),
    ("shape: [-1, 4.5]", "shape", "integers only"),
    # each value valid, the combination impossible:
    ("shape: [-1, 1099511627776]\ndtype: <f8", "shape", "no member can hold it"),
    ("shape: [1000000, 4]\nmax_member_bytes: 1000", "shape", "over max_member_bytes"),
    ("chunk_rows: 1000000000\nshape: [-1, 4]", "chunk_rows", "over the 2 GiB a chunk may hold"),
    ("shape: [-1, 1000000000]", "shape", "over the 2 GiB a chunk may hold"),
    # shards: Zarr 3 only, whole chunks, at most 1 GiB
    ("shard_rows: 0", "shard_rows", "positive"),
    ("shard_rows: 1.5", "shard_rows", "not a whole number"),
    ("format: hdf5\nshard_rows: 262144", "shard_rows", "HDF5 has none; remove shard_rows"),
    ("zarr_format: 2\nshard_rows: 262144", "shard_rows", "Zarr 2 has none; remove shard_rows"),
    (
        "codec: none\ncontiguous: true\nshard_rows: 262144",
        "shard_rows",
        "cannot be sharded; remove shard_rows or contiguous",
    ),
    (
        "chunk_rows: 1000\nshard_rows: 64500",
        "shard_rows",
        "multiple of chunk_rows (1000); use 64000 or 65000",
    ),
    ("chunk_rows: 1000\nshard_rows: 999", "shard_rows", "use 1000"),
    (
        "shard_rows: 1000000",
        "shard_rows",
        "not a multiple of the default chunk_rows (262144 for 16-byte rows); use 786432 or 1048576",
    ),
    (
        "chunk_rows: 1000\nshard_rows: 100000000",
        "shard_rows",
        "over the 1 GiB a shard may hold (a worker keeps two in memory); use at most 67108000",
    ),
    ("chunk_rows: 100000000\nshard_rows: 100000000", "shard_rows", "lower chunk_rows"),
]


@pytest.mark.parametrize(("body", "key", "words"), BAD, ids=[b[0] for b in BAD])
def test_bad_value_names_key_and_file(tmp_path, body, key, words):
    path = _yaml(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        build_config(path)
    assert info.value.key == key and info.value.source == str(path)
    assert words in str(info.value) and str(info.value).startswith(f"{path}: {key}: ")


def test_cli_refuses_before_any_work_with_exit_2(tmp_path):
    path = _yaml(tmp_path, "chunk_rows: -5")
    proc = subprocess.run(
        [sys.executable, "-m", "zconvert", "convert", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"zconvert: error: {path}: chunk_rows: -5 must be a positive whole number"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("shape", ["1000x", "x4", "1000,,4", "-1,4,"])
def test_shape_flag_with_a_size_left_out_exits_2_in_one_line(tmp_path, shape):
    (tmp_path / "in").mkdir()
    command = ["convert", str(tmp_path / "in"), "-o", "out", "--shape", shape]
    proc = subprocess.run(
        [sys.executable, "-m", "zconvert", *command],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"zconvert: error: --shape: {shape!r} leaves a size out; write every size, "
        "like -1,4 or 1000x4"
    )
    assert not (tmp_path / "out").exists()


def test_yaml_is_read_with_the_safe_loader(tmp_path):
    marker = tmp_path / "pwned"
    path = _yaml(tmp_path, f'workers: !!python/object/apply:os.system ["touch {marker}"]')
    with pytest.raises(ConfigError, match="not valid YAML"):
        build_config(path)
    assert not marker.exists()


def test_top_level_must_be_a_mapping(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        build_config(path)


def test_flags_are_validated_like_the_file(tmp_path):
    with pytest.raises(ConfigError, match="chunk_rows"):
        zconvert.convert(tmp_path, tmp_path / "out", chunk_rows=0)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "value",
    [
        *("<f4", ">f8", "f4", "=i2", "|u1", "i1", "float32", "uint64", "complex128", ">c16"),
        *("f2", "float", "d", "int", "<f16", "i3", "U8", "float12"),
    ],
)
def test_dtypes_parsed_without_numpy_agree_with_numpy(value):
    import numpy as np

    from zconvert.core.dtypes import parse_dtype

    try:
        expected = np.dtype(value)
    except TypeError:
        with pytest.raises(ConfigError):
            parse_dtype(value, "dtype", None)
        return
    if expected.kind not in "fiuc":
        with pytest.raises(ConfigError):
            parse_dtype(value, "dtype", None)
        return
    assert parse_dtype(value, "dtype", None) == expected.str
