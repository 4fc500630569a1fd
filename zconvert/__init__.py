"""zconvert: ZIP archives of raw float32 blobs -> per-file Zarr or HDF5 stores, opened by path.

Public API only. Heavy modules (zarr, h5py) load on first use, so `zconvert --version` and
`import zconvert` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .core.errors import ArchiveError, ConfigError, StoreError, ZconvertError
    from .read.combine import open_all
    from .read.readers import StoreRef, array_names, open, open_memmap, refs
    from .run.convert import Report, convert
    from .run.verify import verify

_LAZY = {
    "convert": "zconvert.run.convert",
    "Report": "zconvert.run.convert",
    "open": "zconvert.read.readers",
    "array_names": "zconvert.read.readers",
    "open_memmap": "zconvert.read.readers",
    "StoreRef": "zconvert.read.readers",
    "refs": "zconvert.read.readers",
    "open_all": "zconvert.read.combine",
    "ZconvertError": "zconvert.core.errors",
    "ConfigError": "zconvert.core.errors",
    "ArchiveError": "zconvert.core.errors",
    "StoreError": "zconvert.core.errors",
    "verify": "zconvert.run.verify",
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


def __dir__() -> list[str]:
    """What dir(zconvert) and tab completion show: the public API (loaded on first use, so
    not in globals() until then), the module's dunders and the stage packages loaded so far,
    not the helpers this file imports (Any, TYPE_CHECKING)."""
    import types

    shown = {*__all__}
    for name, value in globals().items():
        if name.startswith("__") or (
            isinstance(value, types.ModuleType) and not name.startswith("_")
        ):
            shown.add(name)
    return sorted(shown)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'zconvert' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
