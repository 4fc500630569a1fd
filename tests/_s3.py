"""A real S3 API server on 127.0.0.1 (moto in server mode), the way s3fs's own tests run."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass(frozen=True)
class S3:
    endpoint: str
    bucket: str
    storage_options: dict[str, Any]

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def fs(self) -> Any:
        import s3fs

        return s3fs.S3FileSystem(**self.storage_options, skip_instance_cache=True)

    def upload(self, local: Path, key: str) -> str:
        self.fs().put_file(str(local), f"{self.bucket}/{key}")
        return self.url(key)

    def keys(self, prefix: str) -> list[str]:
        fs = self.fs()
        try:
            return sorted(fs.find(f"{self.bucket}/{prefix}"))
        except FileNotFoundError:
            return []


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    pytest.importorskip("s3fs")
    server_mod = pytest.importorskip("moto.server")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(name="s3")
def s3_fixture(s3_server: str) -> S3:
    """A fresh bucket; credentials and endpoint travel in storage_options (also to workers)."""
    options = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": s3_server},
    }
    bucket = f"zconvert-{uuid.uuid4().hex[:12]}"
    import s3fs

    s3fs.S3FileSystem(**options, skip_instance_cache=True).mkdir(bucket)
    return S3(endpoint=s3_server, bucket=bucket, storage_options=options)
