"""The public API of `import zconvert`: what it lists, before and after its names load."""

from __future__ import annotations

import subprocess
import sys

import zconvert


def test_dir_lists_the_public_api_for_tab_completion():
    names = dir(zconvert)
    assert set(zconvert.__all__) <= set(names)
    assert {"__version__", "__doc__", "__name__", "__all__"} <= set(names)
    assert not {"Any", "TYPE_CHECKING", "annotations", "_LAZY"} & set(names)
    assert names == sorted(names)
    # every name listed is there
    for name in names:
        getattr(zconvert, name)


def test_dir_lists_the_api_before_any_of_it_is_loaded():
    """In a fresh interpreter, where the lazy names are not yet in the module's globals."""
    code = (
        "import sys, zconvert; names = dir(zconvert); "
        "assert 'zconvert.read.readers' not in sys.modules; print(' '.join(names))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    names = set(proc.stdout.split())
    assert {"convert", "open", "open_memmap", "refs", "open_all", "verify", "StoreRef"} <= names
    assert set(zconvert.__all__) <= names


def test_open_and_open_all_say_what_they_return():
    """Precise return types for editors and type checkers, not Any."""
    import inspect

    assert inspect.signature(zconvert.open).return_annotation == (
        "zarr.Array | h5py.Dataset | np.memmap"
    )
    assert inspect.signature(zconvert.open_all).return_annotation == "dask.array.Array"
    assert inspect.signature(zconvert.StoreRef.open).return_annotation == (
        "zarr.Array | h5py.Dataset | np.memmap"
    )
