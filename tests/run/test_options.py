"""Every option is declared once (core/options.py), and its declaration decides reruns: an
option that shapes what a store holds makes a rerun redo the store, any other keeps it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import zconvert
from zconvert.core.convert_options import ConvertOptions
from zconvert.core.errors import ConfigError
from zconvert.core.options import declared_options
from zconvert.run.config import KEYS, OPTIONS, build_config
from zconvert.run.dryrun import plan_run
from zconvert.run.fingerprint import options_fingerprint

from ..conftest import float_rows, make_zip

# The run every case starts from, and for each option a change of it that the run accepts.
# chunk_rows is set: its default follows dtype and shape, which would change it too.
BASE = {"codec": "none", "executor": "serial", "chunk_rows": 10}
CHANGED = {
    "format": "hdf5",
    "zarr_format": 2,
    "dtype": "<f8",
    "shape": [-1, 2],
    "include": ["*.bin"],
    "exclude": ["*.unused"],
    "members": [{"match": "*.unused", "dtype": "<i8"}],
    "chunk_rows": 25,
    "shard_rows": 20,
    "codec": "blosc-lz4",
    "contiguous": True,
    "slab_bytes": 16 << 20,
    "max_ratio": 500.0,
    "max_member_bytes": 1 << 30,
    "durable": True,
    "direct_io": False,
    "parallel_inflate": False,
    "debug": True,
    "workers": 1,
    "executor": "local",
    "storage_options": {"anon": False},
    "overwrite": True,
    "prune": True,
}
# Options that define the run rather than vary it, or that need a service to change.
NOT_CHANGED_HERE = {
    "inputs": "the archives themselves: test_reruns.py",
    "output": "another folder holds other stores",
    "scheduler": "needs a dask scheduler: tests/run/test_dask.py",
}


def test_every_option_is_declared_once_and_has_a_rerun_case():
    assert len(KEYS) == len(OPTIONS)  # one declaration per name
    # An option added without a case here fails: say how a change of it decides reruns.
    assert sorted(CHANGED) + sorted(NOT_CHANGED_HERE) == sorted(CHANGED) + sorted(
        set(KEYS) - set(CHANGED)
    )
    assert set(KEYS) - set(CHANGED) == set(NOT_CHANGED_HERE)
    # Every field of ConvertOptions is declared (declared_options refuses one that is not).
    declared = {o.name for o in declared_options(ConvertOptions, True)}
    assert declared == set(ConvertOptions.__dataclass_fields__)


def test_codec_choices_are_the_sink_presets():
    from zconvert.sinks.codecs import PRESETS

    assert KEYS["codec"].choices == tuple(PRESETS)


def _first_run(tmp_path: Path) -> tuple[Path, Path]:
    src, out = tmp_path / "in", tmp_path / "out"
    make_zip(src / "a.zip", {"blob.bin": float_rows(50)})
    zconvert.convert(src, out, **BASE)
    return src, out


@pytest.mark.parametrize("name", sorted(CHANGED))
def test_a_changed_option_redoes_the_store_only_if_it_shapes_it(tmp_path, name):
    src, out = _first_run(tmp_path)
    changed = {**BASE, name: CHANGED[name]}
    config = build_config(inputs=[str(src)], output=str(out), **changed)
    if name == "format":  # another layout: refused, as one folder holds one layout
        with pytest.raises(ConfigError, match="holds 1 zarr store"):
            plan_run(config)
        return
    (planned,) = plan_run(config)
    report = zconvert.convert(src, out, **changed)
    if KEYS[name].shapes_store:
        assert planned.action == "convert" and planned.reason == f"options changed: {name}"
        assert [r.relpath for r in report.converted] == ["a.zarr"]
    elif name == "overwrite":
        assert planned.reason == "--overwrite" and len(report.converted) == 1
    else:
        assert (planned.action, planned.reason) == ("skip", "complete and up to date")
        assert len(report.skipped) == 1 and not report.converted


def test_contiguous_rerun_redoes_the_store_and_it_maps(tmp_path):
    src, out = _first_run(tmp_path)  # --codec none: compressed nothing, but 5 chunks
    with pytest.raises(zconvert.StoreError, match="--contiguous"):
        zconvert.open_memmap(out / "a.zarr", "blob")
    report = zconvert.convert(src, out, **BASE, contiguous=True)
    assert [r.relpath for r in report.converted] == ["a.zarr"]  # was "1 skipped"
    mapped = zconvert.open_memmap(out / "a.zarr", "blob")
    np.testing.assert_array_equal(mapped, float_rows(50))


def test_stores_of_earlier_versions_stay_current():
    # What 6159efa wrote for these options: a store it made must not look changed now.
    assert options_fingerprint(ConvertOptions()) == (
        '{"chunk_rows": 262144, "codec": "blosc-lz4", "dtype": "<f4", "format": "zarr", '
        '"shape": [-1, 4], "zarr_format": 3}'
    )
    assert options_fingerprint(ConvertOptions(format="hdf5", include=("*.bin",))) == (
        '{"chunk_rows": 262144, "codec": "blosc-lz4", "dtype": "<f4", "format": "hdf5", '
        '"include": ["*.bin"], "shape": [-1, 4]}'
    )


def test_readme_names_exactly_the_options_that_redo_stores():
    import re

    from zconvert.run.fingerprint import STORE_OPTIONS

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    paragraph = readme.split("**Which options make a rerun redo stores.**")[1].split("\n\n")[0]
    listed = paragraph.split(";")[0]  # the list, before the pointer to docs/CONFIG.md
    assert set(re.findall(r"`(\w+)`", listed)) == {o.name for o in STORE_OPTIONS}
