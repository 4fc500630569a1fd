"""manifest.json, the document: written in pieces (header, rerun index, one line per store),
read back streaming, and the older indented form still read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zconvert.core.convert_options import ConvertOptions
from zconvert.core.records import ArrayRecord, Result, SkippedMember, Task
from zconvert.run.run_manifest import RunManifest
from zconvert.stores.manifest import (
    INDEX_ROWS_PER_LINE,
    index_row,
    iter_manifest,
    read_manifest,
    read_rerun_index,
    read_results,
)


def _result(i: int, out: Path, status: str = "converted") -> Result:
    name = f'dé, "{i}"/[x]' if i % 7 == 0 else f"a{i}"  # commas, quotes, brackets, unicode
    task = Task(
        archive=f"/in/{name}.zip",
        store=str(out / f"{name}.zarr"),
        relpath=f"{name}.zarr",
        options=ConvertOptions(),
    )
    return Result.of(
        task,
        status,
        arrays=(ArrayRecord(f"b{i}", f"b{i}.bin", (10, 4), "<f4", (10, 4), "none", i, 160),),
        skipped_members=(SkippedMember("README.txt", "not data (.txt: text/document)"),),
        source_size=100 + i,
        source_mtime_ns=1_000 + i,
        source_ctime_ns=2_000 + i,
        options_id="abc",
        error="boom" if status == "failed" else None,
    )


@pytest.mark.parametrize("count", [0, 1, INDEX_ROWS_PER_LINE + 3])
def test_written_manifest_reads_back_entry_by_entry_and_as_one_document(tmp_path, count):
    results = [_result(i, tmp_path, "failed" if i == 2 else "converted") for i in range(count)]
    manifest = RunManifest(tmp_path, ConvertOptions())
    manifest.scan([])
    path = manifest.write(results)
    header, entries = iter_manifest(tmp_path)
    assert header["complete"] is True and header["options"]["codec"] == "blosc-lz4"
    streamed = list(entries)
    expected = sorted(results, key=lambda r: r.relpath)
    assert [Result.from_dict(e) for e in streamed] == expected
    assert read_results(tmp_path) == expected
    whole = json.loads(Path(path).read_text())  # one valid JSON document as well
    assert len(whole["stores"]) == count and len(whole["rerun_index"]["rows"]) == count
    complete, rows = read_rerun_index(path)
    assert complete is True
    assert list(rows) == [index_row(e) for e in streamed]


def test_an_incomplete_run_is_marked_so(tmp_path):
    manifest = RunManifest(tmp_path, ConvertOptions())
    manifest.scan([])
    manifest.write([_result(1, tmp_path)], complete=False)
    assert iter_manifest(tmp_path)[0]["complete"] is False
    assert read_rerun_index(str(tmp_path / "manifest.json"))[0] is False


def test_older_indented_manifest_is_read_whole_and_has_no_index(tmp_path):
    entries = json.loads(json.dumps([_result(i, tmp_path).to_dict() for i in range(3)]))
    document = {"zconvert_version": "0.0.1", "complete": True, "stores": entries}
    (tmp_path / "manifest.json").write_text(json.dumps(document, indent=2))
    header, streamed = iter_manifest(tmp_path)
    assert header == {"zconvert_version": "0.0.1", "complete": True}
    assert list(streamed) == entries
    assert read_rerun_index(str(tmp_path / "manifest.json")) is None
    assert read_manifest(tmp_path)["stores"] == entries


def test_what_is_not_a_manifest_is_refused(tmp_path):
    (tmp_path / "manifest.json").write_text("[1, 2, 3]\n")
    with pytest.raises(ValueError, match="not a manifest"):
        iter_manifest(tmp_path)
    with pytest.raises(FileNotFoundError):
        iter_manifest(tmp_path / "nowhere")
