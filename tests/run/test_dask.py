"""The dask executor on a real dask.distributed cluster of worker processes on 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import zconvert
from zconvert.cli.commands import main
from zconvert.core.records import Result, Task
from zconvert.run.config import build_config
from zconvert.run.executors import get_executor
from zconvert.run.worker import convert_task
from zconvert.stores.manifest import read_manifest

from .._s3 import S3, s3_fixture, s3_server  # noqa: F401  (fixtures)
from ..conftest import corrupt_crc, float_rows, make_zip

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    """An 'external' cluster: a scheduler and 2 worker processes the runs only connect to."""
    with distributed.LocalCluster(
        processes=True,
        n_workers=2,
        threads_per_worker=1,
        dashboard_address=None,
        host="127.0.0.1",
    ) as c:
        yield c


def _comparable(out: Path) -> list[dict]:
    """Manifest entries without what legitimately differs between runs (paths, pids, time)."""
    keep = ("relpath", "status", "format", "arrays", "error", "member", "bytes_in", "bytes_out")
    return [{k: e.get(k) for k in keep} for e in read_manifest(out)["stores"]]


def _worker_pids(cluster: object) -> set[int]:
    with distributed.Client(cluster) as client:
        return set(client.run(os.getpid).values())


def test_config_keys_for_dask_and_storage():
    cfg = build_config(
        inputs=["x"],
        output="s3://b/out",
        executor="dask",
        scheduler="tcp://127.0.0.1:8786",
        storage_options={"anon": True},
    )
    assert (cfg.executor, cfg.scheduler, cfg.storage_options) == (
        "dask",
        "tcp://127.0.0.1:8786",
        {"anon": True},
    )
    with pytest.raises(zconvert.ConfigError, match="storage_options"):
        build_config(inputs=["x"], output="o", storage_options="anon")
    with pytest.raises(zconvert.ConfigError, match="executor"):
        build_config(inputs=["x"], output="o", executor="ray")
    with pytest.raises(zconvert.ConfigError, match="scheduler: is only used by the dask"):
        build_config(inputs=["x"], output="o", scheduler="tcp://127.0.0.1:8786")


@pytest.mark.slow
def test_unreachable_scheduler_is_a_config_error_naming_it(seed_dir, tmp_path, monkeypatch):
    import zconvert.run.executors.dask as dask_executor

    monkeypatch.setattr(dask_executor, "CONNECT_TIMEOUT_S", 2)
    with pytest.raises(
        zconvert.ConfigError, match=r"cannot reach the dask scheduler at tcp://127\.0\.0\.1:9"
    ):
        zconvert.convert(seed_dir, tmp_path / "out", executor="dask", scheduler="tcp://127.0.0.1:9")


@pytest.mark.slow
def test_dask_local_cluster_gives_the_local_executors_results(seed_dir, tmp_path):
    progress: list[str] = []
    local = zconvert.convert(seed_dir, tmp_path / "local", executor="local", workers=2)
    dask = zconvert.convert(
        seed_dir,
        tmp_path / "dask",
        executor="dask",
        workers=2,
        on_result=lambda r: progress.append(r.relpath),
    )
    assert local.ok and dask.ok, (local.failed, dask.failed)
    assert sorted(progress) == [r.relpath for r in local.results]  # one report per archive
    assert _comparable(tmp_path / "dask") == _comparable(tmp_path / "local")
    assert len({r.pid for r in dask.results} - {os.getpid()}) >= 1  # not run in this process
    for r in local.results:
        np.testing.assert_array_equal(
            zconvert.open(tmp_path / "dask" / r.relpath)[...], zconvert.open(r.store)[...]
        )


def test_cli_scheduler_address_runs_on_the_running_cluster(cluster, seed_dir, tmp_path):
    bad = make_zip(seed_dir / "bad.zip", {"blob.bin": float_rows(30_000, seed=7)})
    corrupt_crc(bad, "blob.bin")
    status = main(
        [
            "convert",
            str(seed_dir),
            "-o",
            str(tmp_path / "out"),
            "--executor",
            "dask",
            "--scheduler",
            cluster.scheduler_address,
        ]
    )
    assert status == 1  # one archive failed, the run did not
    stores = {e["relpath"]: e for e in read_manifest(tmp_path / "out")["stores"]}
    assert stores["bad.zarr"]["status"] == "failed"
    assert "CRC32" in stores["bad.zarr"]["error"]
    assert not (tmp_path / "out" / "bad.zarr").exists()
    converted = [e for e in stores.values() if e["status"] == "converted"]
    assert len(converted) == 3
    assert {e["pid"] for e in converted} <= _worker_pids(cluster)
    # the cluster keeps running for its owner
    assert len(cluster.scheduler_info["workers"]) == 2


def raise_for_archive_1(task: Task) -> Result:
    """A worker function that raises for one archive (an error the worker did not catch)."""
    if task.archive.endswith("archive_1.zip"):
        raise RuntimeError("boom in archive_1")
    return convert_task(task)


def exit_for_archive_2(task: Task) -> Result:
    """A worker function whose process dies on one archive."""
    if task.archive.endswith("archive_2.zip"):
        os._exit(3)
    return convert_task(task)


def _tasks(seed_dir: Path, out: Path) -> list[Task]:
    from zconvert.run.task_list import task_list

    return task_list(build_config(inputs=[str(seed_dir)], output=str(out)))


def test_task_that_raises_fails_its_archive_only(cluster, seed_dir, tmp_path):
    executor = get_executor("dask", workers=2, scheduler=cluster.scheduler_address)
    results = {
        Path(r.archive).name: r
        for r in executor.map(raise_for_archive_1, _tasks(seed_dir, tmp_path))
    }
    assert results["archive_1.zip"].status == "failed"
    assert results["archive_1.zip"].error == "RuntimeError: boom in archive_1"
    assert results["archive_0.zip"].ok and results["archive_2.zip"].ok


@pytest.mark.slow
def test_worker_death_fails_its_archive_only(seed_dir, tmp_path):
    executor = get_executor("dask", workers=2)  # its own LocalCluster: one retry, then failed
    results = {
        Path(r.archive).name: r
        for r in executor.map(exit_for_archive_2, _tasks(seed_dir, tmp_path))
    }
    assert results["archive_2.zip"].status == "failed"
    assert "died" in results["archive_2.zip"].error
    for name in ("archive_0.zip", "archive_1.zip"):
        assert results[name].ok, results[name].error


def test_dask_workers_read_and_write_s3(cluster, s3, tmp_path):
    data = {}
    for i in range(3):
        arr = float_rows(20_000 + i, seed=i)
        s3.upload(make_zip(tmp_path / f"a{i}.zip", {"blob.bin": arr}), f"in/a{i}.zip")
        data[f"a{i}"] = arr
    report = zconvert.convert(
        s3.url("in/*.zip"),
        s3.url("out"),
        storage_options=s3.storage_options,
        executor="dask",
        scheduler=cluster.scheduler_address,
    )
    assert report.ok, report.failed
    assert {r.pid for r in report.results} <= _worker_pids(cluster)
    import zarr

    for stem, arr in data.items():
        store = zarr.storage.FsspecStore.from_url(
            s3.url(f"out/{stem}.zarr"), storage_options=s3.storage_options, read_only=True
        )
        np.testing.assert_array_equal(zarr.open_group(store, mode="r")["blob"][...], arr)
    assert s3.keys("out/manifest.json")
