"""Fixtures that build real ZIP archives in tmp_path."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest


def float_rows(rows: int, cols: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((rows, cols), dtype=np.float32)


def make_zip(
    path: Path,
    members: dict[str, bytes | np.ndarray],
    compression: int = zipfile.ZIP_DEFLATED,
) -> Path:
    """A real archive: each member written with `compression` (bytes or arrays as raw bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            raw = data.tobytes() if isinstance(data, np.ndarray) else data
            zf.writestr(name, raw)
    return path


def corrupt_crc(path: Path, member: str) -> None:
    """Change the CRC32 the archive records for `member` (local header and central directory
    alike), leaving the data intact: only a CRC check can notice."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    blob = bytearray(path.read_bytes())
    bad = struct.pack("<I", info.CRC ^ 0xDEADBEEF)
    blob[info.header_offset + 14 : info.header_offset + 18] = bad
    pos = 0
    while True:
        pos = blob.find(b"PK\x01\x02", pos)
        if pos < 0:
            break
        name_len = struct.unpack_from("<H", blob, pos + 28)[0]
        if blob[pos + 46 : pos + 46 + name_len].decode() == member:
            blob[pos + 16 : pos + 20] = bad
            break
        pos += 4
    path.write_bytes(bytes(blob))


@pytest.fixture
def seed_dir(tmp_path: Path) -> Path:
    """Three archives of one 20,000 x 4 float32 member each, like the seed at small size."""
    folder = tmp_path / "in"
    for i in range(3):
        make_zip(folder / f"archive_{i}.zip", {f"blob_{i}.bin": float_rows(20_000, seed=i)})
    return folder
