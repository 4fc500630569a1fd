"""The HDF5 filters compressed stores are written and read through: hdf5plugin's, always.

`import hdf5plugin` registers its filters only where HDF5 has none yet, and HDF5 finds others
on HDF5_PLUGIN_PATH, which importing netCDF4 sets to its own plugins, built against its own
copy of the HDF5 library: in a process with h5py's, those fail every dataset they touch
("error during user callback"). So hdf5plugin's are registered over whatever is there.
"""

from __future__ import annotations

from functools import cache

FILTERS = ("blosc", "zstd")  # what zconvert's codecs write (codecs.py)


@cache
def load_hdf5_filters() -> None:
    """Register hdf5plugin's Blosc and Zstd filters in this process (once), replacing any
    loaded from HDF5_PLUGIN_PATH."""
    import hdf5plugin

    hdf5plugin.register(FILTERS, force=True)
