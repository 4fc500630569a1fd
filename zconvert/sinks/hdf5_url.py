"""HDF5 sink for URL outputs: written to a local temporary file, uploaded once complete.

HDF5 needs a seekable, rewritable file, which object storage is not. The file is built by the
ordinary HDF5 sink in a private local temporary folder (under TMPDIR) and uploaded on commit;
an object store makes an upload visible only when it completes, so readers never see part of
a file. The local copy is removed whatever happens.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
from typing import Any

from ..core.convert_options import ConvertOptions
from ..core.storage import upload
from .hdf5 import HDF5Sink


class HDF5URLSink(HDF5Sink):
    def __init__(
        self,
        final_url: str,
        options: ConvertOptions,
        attributes: dict[str, Any],
        storage_options: dict[str, Any],
    ) -> None:
        self.url = final_url
        self.storage_options = storage_options
        self.local_dir = tempfile.mkdtemp(prefix="zconvert-upload-")
        try:
            local = os.path.join(self.local_dir, posixpath.basename(final_url))
            super().__init__(local, options, attributes)
        except BaseException:
            shutil.rmtree(self.local_dir, ignore_errors=True)
            raise

    def commit(self) -> None:
        super().commit()  # the complete file is now at self.final_path, locally
        upload(self.final_path, self.url, self.storage_options)
        shutil.rmtree(self.local_dir, ignore_errors=True)

    def abort(self) -> None:
        try:
            super().abort()
        finally:
            shutil.rmtree(self.local_dir, ignore_errors=True)
