"""zconvert: ZIP archives of raw float32 blobs -> per-file Zarr or HDF5 stores, opened by path.

Public API only. Heavy modules (zarr, h5py) load on first use, so `zconvert --version` and
`import zconvert` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .combine import open_all
    from .errors import ArchiveError, ConfigError, StoreError, ZconvertError
    from .readers import StoreRef, array_names, open, open_memmap, refs
    from .run import Report, convert
    from .verify import verify

_LAZY = {
    "convert": "zconvert.run",
    "Report": "zconvert.run",
    "open": "zconvert.readers",
    "array_names": "zconvert.readers",
    "open_memmap": "zconvert.readers",
    "StoreRef": "zconvert.readers",
    "refs": "zconvert.readers",
    "open_all": "zconvert.combine",
    "ZconvertError": "zconvert.errors",
    "ConfigError": "zconvert.errors",
    "ArchiveError": "zconvert.errors",
    "StoreError": "zconvert.errors",
    "verify": "zconvert.verify",
}

__all__ = [
    "ArchiveError",
    "ConfigError",
    "Report",
    "StoreError",
    "StoreRef",
    "ZconvertError",
    "__version__",
    "array_names",
    "convert",
    "open",
    "open_all",
    "open_memmap",
    "refs",
    "verify",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'zconvert' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
