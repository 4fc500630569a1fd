"""A reader of a store that `--overwrite` replaces meanwhile gets the old store or the new one,
whole, or an error that says what happened: never a mix of the two, never zeros (issue 24)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import zconvert
from zconvert.core.errors import StoreError

from ..conftest import make_zip

ROWS, CHUNK_ROWS = 200_000, 5_000  # 40 chunk files: a rename lands between two of them

WRITER = textwrap.dedent(
    """
    import sys, time, zipfile
    import numpy as np
    import zconvert
    folder, out, fmt, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    end, value = time.monotonic() + seconds, 1.0
    while time.monotonic() < end:
        value = 3.0 - value  # 2.0, 1.0, 2.0, ...
        with zipfile.ZipFile(folder + "/a.zip", "w") as z:
            z.writestr("blob.bin", np.full(({rows}, 4), value, dtype="<f4").tobytes())
        report = zconvert.convert(folder, out, format=fmt, overwrite=True, executor="serial",
                                  chunk_rows={chunk_rows}, codec="zstd")
        assert report.ok, report.failed
    """
).format(rows=ROWS, chunk_rows=CHUNK_ROWS)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_a_store_replaced_while_it_is_read_is_never_a_mix(tmp_path, fmt):
    folder, out = tmp_path / "in", tmp_path / "out"
    make_zip(folder / "a.zip", {"blob.bin": np.full((ROWS, 4), 1.0, dtype="<f4")})
    zconvert.convert(folder, out, format=fmt, chunk_rows=CHUNK_ROWS, codec="zstd")
    store = out / ("a.zarr" if fmt == "zarr" else "a.h5")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(folder), str(out), fmt, "8"],
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: dict[float, int] = {}
    interrupted = 0
    try:
        while writer.poll() is None:
            try:
                array = zconvert.open(store)
                values = np.asarray(array[...])
                if fmt == "hdf5":
                    array.file.close()
            except StoreError as exc:  # the old store deleted under the read: said, not zeros
                assert "replaced or deleted while it was read" in str(exc), exc
                interrupted += 1
                continue
            first = float(values.flat[0])
            assert first in (1.0, 2.0), first  # never zeros
            assert (values == first).all(), f"a mix: {np.unique(values)}"
            seen[first] = seen.get(first, 0) + 1
            time.sleep(0.001)
    finally:
        writer.kill()
        _, stderr = writer.communicate()
    assert writer.returncode in (0, -9), stderr
    assert len(seen) == 2, (seen, interrupted)  # both stores were read while being replaced
