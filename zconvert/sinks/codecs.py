"""Codec presets chosen by name: one name, the same compression in Zarr 2, Zarr 3 and HDF5.

Only codecs that other Zarr and HDF5 implementations read are offered. Byte shuffle is used
where the format has a standard one: inside Blosc everywhere, and HDF5's own shuffle filter
for zstd and gzip. Zarr 3 has no standard shuffle codec, so zstd and gzip go without it there.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class CodecPreset(NamedTuple):  # not a dataclass: 6x cheaper to define at start-up
    name: str
    kind: str  # "none" | "blosc" | "zstd" | "gzip"
    cname: str | None = None
    level: int = 0
    description: str = ""

    def zarr_compressors(self, zarr_format: int) -> Any:
        """The `compressors=` argument of zarr.create_array (the object-storage sink writes
        through zarr's API; the local one writes the same documents itself)."""
        if self.kind == "none":
            return None
        if zarr_format == 3:
            from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

            if self.kind == "blosc":
                return [BloscCodec(cname=self.cname, clevel=self.level, shuffle="shuffle")]
            if self.kind == "zstd":
                return [ZstdCodec(level=self.level)]
            return [GzipCodec(level=self.level)]
        return self.numcodecs_codec()  # Zarr 2 takes the numcodecs codec itself

    def zarr3_codecs(self, itemsize: int) -> list[dict[str, Any]]:
        """The bytes-to-bytes codecs of a Zarr 3 array's metadata (after the `bytes` codec)."""
        if self.kind == "none":
            return []
        if self.kind == "blosc":
            config = {
                "typesize": itemsize,
                "cname": self.cname,
                "clevel": self.level,
                "shuffle": "shuffle",
                "blocksize": 0,
            }
            return [{"name": "blosc", "configuration": config}]
        if self.kind == "zstd":
            return [{"name": "zstd", "configuration": {"level": self.level, "checksum": False}}]
        return [{"name": "gzip", "configuration": {"level": self.level}}]

    def zarr2_compressor(self) -> dict[str, Any] | None:
        """The `compressor` of a Zarr 2 array's .zarray (only the keys every reader knows:
        tensorstore rejects numcodecs' extra zstd `checksum` member)."""
        if self.kind == "none":
            return None
        if self.kind == "blosc":
            return {
                "id": "blosc",
                "cname": self.cname,
                "clevel": self.level,
                "shuffle": 1,
                "blocksize": 0,
            }
        return {"id": self.kind, "level": self.level}

    def numcodecs_codec(self) -> Any:
        """The numcodecs codec whose output is the bytes of one chunk in either Zarr format."""
        if self.kind == "none":
            return None
        import numcodecs

        if self.kind == "blosc":
            return numcodecs.Blosc(
                cname=self.cname, clevel=self.level, shuffle=numcodecs.Blosc.SHUFFLE
            )
        if self.kind == "zstd":
            return numcodecs.Zstd(level=self.level)
        return numcodecs.GZip(level=self.level)

    def hdf5_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of h5py's create_dataset for this preset."""
        if self.kind == "none":
            return {}
        if self.kind == "gzip":
            return {"compression": "gzip", "compression_opts": self.level, "shuffle": True}
        import hdf5plugin

        from .hdf5_filters import load_hdf5_filters

        load_hdf5_filters()
        if self.kind == "blosc":
            return dict(
                hdf5plugin.Blosc(
                    cname=self.cname, clevel=self.level, shuffle=hdf5plugin.Blosc.SHUFFLE
                )
            )
        return {**dict(hdf5plugin.Zstd(clevel=self.level)), "shuffle": True}


PRESETS: dict[str, CodecPreset] = {
    p.name: p
    for p in (
        CodecPreset("none", "none", description="uncompressed; HDF5 stays contiguous and mappable"),
        CodecPreset("blosc-lz4", "blosc", "lz4", 5, "Blosc LZ4 + byte shuffle: fast, light"),
        CodecPreset("blosc-zstd", "blosc", "zstd", 3, "Blosc Zstd level 3 + byte shuffle"),
        CodecPreset("zstd", "zstd", None, 3, "Zstandard level 3 (HDF5: with shuffle)"),
        CodecPreset(
            "gzip", "gzip", None, 5, "gzip level 5, the most portable (HDF5: with shuffle)"
        ),
    )
}


def get_preset(name: str) -> CodecPreset:
    """The preset called `name`; KeyError names the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown codec {name!r}; choose one of {', '.join(PRESETS)}") from None
