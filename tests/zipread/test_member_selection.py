"""Which members of an archive are data: --include/--exclude (flags and YAML), operating-system
metadata and documents skipped and listed, per-member dtype/shape rules, and which files a folder
search finds."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

import zconvert
from zconvert.core.errors import ConfigError

from ..cli.test_cli import zconvert as cli
from ..conftest import float_rows, make_zip

VALUES = float_rows(1000, seed=3)
STAMPS = np.arange(1000, dtype="<i8") * 1_000_000
APPLEDOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00" + b"Mac OS X        " + bytes(4072)
# 32 bytes: whole float32 rows of the default (-1, 4), so nothing but its name says it is text.
README = b"Measured 2026-11-30 on rig 12.\r\n"
assert len(README) == 32
NOT_DATA = "; add --include to convert it"


def _mixed(path: Path) -> Path:
    """Data beside what real archives carry: a README, a JSON sidecar, a second data folder."""
    return make_zip(
        path,
        {
            "run1/values.bin": VALUES,
            "run1/more.bin": VALUES[:500],
            "run1/meta.json": b'{"instrument": "x"}',
            "README.txt": README,
        },
    )


def _arrays(store: Path) -> dict[str, np.ndarray]:
    return {
        name: np.asarray(zconvert.open(store, name)[...]) for name in zconvert.array_names(store)
    }


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def test_documents_beside_the_data_are_skipped_and_listed_with_why(tmp_path):
    """The README used to become a 2 x 4 float32 array named README."""
    archive = _mixed(tmp_path / "in" / "a.zip")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("run1/plot.PNG", bytes(64))  # extensions in any case
    out = tmp_path / "out"
    plan = cli("plan", str(tmp_path / "in"), "-o", str(out))
    assert f"skip member README.txt: not data (.txt: text/document){NOT_DATA}" in plan.stdout
    proc = cli("convert", str(tmp_path / "in"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    arrays = _arrays(out / "a.zarr")
    assert sorted(arrays) == ["run1/more", "run1/values"]
    np.testing.assert_array_equal(arrays["run1/values"], VALUES)
    reasons = {s["member"]: s["reason"] for s in _manifest(out)["stores"][0]["skipped_members"]}
    assert reasons == {
        "README.txt": f"not data (.txt: text/document){NOT_DATA}",
        "run1/meta.json": f"not data (.json: structured text){NOT_DATA}",
        "run1/plot.PNG": f"not data (.png: image){NOT_DATA}",
    }
    assert "README.txt: not data" in cli("inspect", str(out / "a.zarr")).stdout
    # a rerun selects the same members, so the store is current
    assert "0 converted, 1 skipped" in cli("convert", str(tmp_path / "in"), "-o", str(out)).stderr


@pytest.mark.parametrize(
    "include, converted",
    [
        ((), False),
        (("*.bin", "README.txt"), True),
        (("*.bin", "README*"), True),
    ],
    ids=["default", "named", "glob"],
)
def test_readme_converts_only_when_an_include_pattern_matches_it(tmp_path, include, converted):
    archive = _mixed(tmp_path / "in" / "a.zip")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("__MACOSX/._README.txt", APPLEDOUBLE)  # metadata: skipped whatever matches
    report = zconvert.convert(archive, tmp_path / "out", executor="serial", include=include)
    assert report.ok, [r.error for r in report.failed]
    arrays = _arrays(tmp_path / "out" / "a.zarr")
    assert ("README" in arrays) is converted
    if converted:
        np.testing.assert_array_equal(arrays["README"], np.frombuffer(README, "<f4").reshape(2, 4))
    reasons = {s.member: s.reason for s in report.results[0].skipped_members}
    assert reasons["__MACOSX/._README.txt"].startswith("macOS")
    assert ("README.txt" in reasons) is not converted


def test_archive_of_only_documents_fails_in_one_line(tmp_path):
    make_zip(tmp_path / "in" / "a.zip", {"README.txt": README, "notes.md": README[:16]})
    proc = cli("convert", str(tmp_path / "in"), "-o", str(tmp_path / "out"))
    assert proc.returncode == 1
    line = [ln for ln in proc.stderr.splitlines() if "failed: " in ln]
    assert len(line) == 1 and "a.zip" in line[0], proc.stderr
    assert "no member left to convert, 2 skipped" in line[0], line[0]
    assert "README.txt: not data (.txt: text/document)" in line[0], line[0]
    assert not (tmp_path / "out" / "a.zarr").exists()


def test_include_by_flag_converts_the_matching_members_and_lists_the_rest(tmp_path):
    _mixed(tmp_path / "in" / "a.zip")
    out = tmp_path / "out"
    proc = cli("convert", str(tmp_path / "in"), "-o", str(out), "--include", "*.bin")
    assert proc.returncode == 0, proc.stderr
    arrays = _arrays(out / "a.zarr")
    assert sorted(arrays) == ["run1/more", "run1/values"] or sorted(arrays) == ["more", "values"]
    np.testing.assert_array_equal(arrays[sorted(arrays)[1]], VALUES)
    skipped = _manifest(out)["stores"][0]["skipped_members"]
    assert {s["member"] for s in skipped} == {"run1/meta.json", "README.txt"}
    assert all("include" in s["reason"] for s in skipped), skipped
    shown = cli("inspect", str(out)).stdout + cli("inspect", str(out / "a.zarr")).stdout
    assert "README.txt" in shown and "run1/meta.json" in shown


def test_exclude_flags_repeat_and_apply_after_include(tmp_path):
    _mixed(tmp_path / "in" / "a.zip")
    out = tmp_path / "out"
    proc = cli(
        "convert",
        str(tmp_path / "in"),
        "-o",
        str(out),
        "--exclude",
        "*.json",
        "--exclude",
        "README*",
        "--exclude",
        "run1/more.bin",
    )
    assert proc.returncode == 0, proc.stderr
    arrays = _arrays(out / "a.zarr")
    assert len(arrays) == 1
    np.testing.assert_array_equal(next(iter(arrays.values())), VALUES)
    reasons = {s["member"]: s["reason"] for s in _manifest(out)["stores"][0]["skipped_members"]}
    assert set(reasons) == {"run1/meta.json", "README.txt", "run1/more.bin"}
    assert all("exclude" in r for r in reasons.values()), reasons


def test_yaml_include_exclude_and_members_rules(tmp_path):
    make_zip(
        tmp_path / "in" / "a.zip",
        {
            "values.bin": VALUES,
            "stamps.i8": STAMPS,
            "grid.bin": np.arange(60, dtype="<u2"),
            "notes.txt": b"not data",
        },
    )
    out = tmp_path / "out"
    run = tmp_path / "run.yaml"
    run.write_text(
        f"inputs: [{tmp_path / 'in'}]\noutput: {out}\n"
        "exclude: ['*.txt']\n"
        "members:\n"
        "  - {match: '*.i8', dtype: <i8, shape: [-1]}\n"
        "  - {match: 'grid.bin', dtype: <u2, shape: [-1, 3, 4]}\n"
        "  - {match: '*.bin', dtype: <u2}\n"  # never reached for grid.bin: first match wins
    )
    assert cli("config", "--check", str(run)).returncode == 0
    proc = cli("convert", "--config", str(run))
    assert proc.returncode == 0, proc.stderr
    store = out / "a.zarr"
    names = zconvert.array_names(store)
    stamps = zconvert.open(store, next(n for n in names if n.startswith("stamps")))
    assert stamps.dtype == np.dtype("<i8") and stamps.shape == (1000,)
    np.testing.assert_array_equal(stamps[...], STAMPS)
    grid = zconvert.open(store, "grid")
    assert grid.dtype == np.dtype("<u2") and grid.shape == (5, 3, 4)
    np.testing.assert_array_equal(grid[...], np.arange(60, dtype="<u2").reshape(5, 3, 4))
    # the third rule matches values.bin: its bytes read as <u2 with the run's shape (-1, 4)
    values = zconvert.open(store, "values")
    assert values.dtype == np.dtype("<u2") and values.shape == (2000, 4)
    # a rerun from the same file is a no-op; changing a rule redoes the store and says so
    assert "0 converted, 1 skipped" in cli("convert", "--config", str(run)).stderr
    run.write_text(run.read_text().replace("dtype: <u2}", "dtype: <i2}"))
    plan = cli("plan", "--config", str(run))
    assert "options changed: members" in plan.stdout, plan.stdout


@pytest.mark.parametrize(
    "body, key, words",
    [
        ("include: 5", "include", "list of globs"),
        ("exclude: ['']", "exclude", "non-empty"),
        ("members: {match: x}", "members", "a list of"),
        ("members: [5]", "members[0]", "not a mapping"),
        ("members: [{dtype: <i8}]", "members[0].match", "is required"),
        ("members: [{match: '*.bin'}]", "members[0]", "needs dtype or shape"),
        ("members: [{match: '*.bin', dtype: U4}]", "members[0].dtype", "numeric"),
        ("members: [{match: '*.bin', shape: [4, -1]}]", "members[0].shape", "impossible"),
        ("members: [{match: '*.bin', rows: 5}]", "members[0]", "unknown key rows"),
    ],
)
def test_config_check_refuses_bad_selection_and_rules_in_one_line(tmp_path, body, key, words):
    run = tmp_path / "run.yaml"
    (tmp_path / "in").mkdir()
    run.write_text(f"inputs: [{tmp_path / 'in'}]\noutput: {tmp_path / 'out'}\n{body}\n")
    proc = cli("config", "--check", str(run))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"run.yaml: {key}: " in lines[0] and words in lines[0], lines[0]


def test_members_flag_takes_json_rules(tmp_path):
    make_zip(tmp_path / "in" / "a.zip", {"stamps.i8": STAMPS, "values.bin": VALUES})
    out = tmp_path / "out"
    rules = json.dumps([{"match": "*.i8", "dtype": "<i8", "shape": [-1]}])
    proc = cli("convert", str(tmp_path / "in"), "-o", str(out), "--members", rules)
    assert proc.returncode == 0, proc.stderr
    arrays = _arrays(out / "a.zarr")
    np.testing.assert_array_equal(arrays[next(n for n in arrays if "stamps" in n)], STAMPS)
    np.testing.assert_array_equal(arrays["values"], VALUES)


def test_finder_archive_converts_and_lists_what_it_skipped(tmp_path):
    """macOS Finder's "Compress": AppleDouble twins under __MACOSX/, .DS_Store, folder entries."""
    archive = tmp_path / "in" / "run.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("run/", b"")
        zf.writestr("run/values.bin", VALUES.tobytes())
        zf.writestr("run/.DS_Store", b"\x00\x00\x00\x01Bud1" + bytes(200))
        zf.writestr("__MACOSX/", b"")
        zf.writestr("__MACOSX/run/", b"")
        zf.writestr("__MACOSX/run/._values.bin", APPLEDOUBLE)
        zf.writestr("run/Thumbs.db", bytes(64))
    out = tmp_path / "out"
    proc = cli("convert", str(archive), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    arrays = _arrays(out / "run.zarr")
    assert len(arrays) == 1
    np.testing.assert_array_equal(next(iter(arrays.values())), VALUES)
    skipped = {s["member"] for s in _manifest(out)["stores"][0]["skipped_members"]}
    assert {"run/.DS_Store", "__MACOSX/run/._values.bin", "run/Thumbs.db"} <= skipped
    assert "__MACOSX/run/._values.bin" in cli("inspect", str(out / "run.zarr")).stdout
    assert cli("verify", str(out)).returncode == 0


def test_include_that_matches_nothing_fails_the_archive_in_one_line(tmp_path):
    _mixed(tmp_path / "in" / "a.zip")
    proc = cli("convert", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--include", "*.f32")
    assert proc.returncode == 1
    assert "a.zip" in proc.stderr and "*.f32" in proc.stderr, proc.stderr
    assert not (tmp_path / "out" / "a.zarr").exists()


# --- which files a folder search finds --------------------------------------------------------


def test_folder_search_finds_zip_and_npz_in_any_case_and_depth(tmp_path):
    inp = tmp_path / "in"
    make_zip(inp / "a.zip", {"x.bin": VALUES})
    make_zip(inp / "deep" / "B.ZIP", {"x.bin": VALUES})
    inp.joinpath("deep", "sub").mkdir(parents=True)
    np.savez(inp / "c.npz", x=VALUES)  # numpy appends .npz to any other name
    (inp / "c.npz").rename(inp / "deep" / "sub" / "c.NPZ")
    (inp / "notes.txt").write_text("not an archive")
    make_zip(inp / "d.jar", {"x.bin": VALUES})  # other suffixes: only when named
    report = zconvert.convert(inp, tmp_path / "out")
    assert sorted(r.relpath for r in report.converted) == [
        "a.zarr",
        "deep/B.zarr",
        "deep/sub/c.zarr",
    ]
    report = zconvert.convert(inp / "d.jar", tmp_path / "out2")
    assert [r.relpath for r in report.converted] == ["d.zarr"]


def test_folder_search_skips_appledouble_twins_of_archives(tmp_path):
    """A Mac copying to a FAT/exFAT drive leaves `._a.zip` (AppleDouble, not a ZIP) beside a.zip."""
    inp = tmp_path / "in"
    make_zip(inp / "a.zip", {"x.bin": VALUES})
    (inp / "._a.zip").write_bytes(APPLEDOUBLE)
    make_zip(inp / "__MACOSX" / "b.zip", {"x.bin": VALUES})
    report = zconvert.convert(inp, tmp_path / "out")
    assert [r.relpath for r in report.results] == ["a.zarr"]


@pytest.mark.parametrize("how", ["empty", "other-files"])
def test_folder_without_archives_is_an_error_naming_where_and_which_suffixes(tmp_path, how):
    inp = tmp_path / "in"
    inp.mkdir()
    if how == "other-files":
        (inp / "data.tar").write_bytes(b"x" * 100)
        (inp / "sub").mkdir()
        (inp / "sub" / "b.bin").write_bytes(b"x" * 16)
    proc = cli("convert", str(inp), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(inp) in lines[0] and "*.zip" in lines[0] and "*.npz" in lines[0], lines[0]
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match=r"no archives \(\*\.zip, \*\.npz\) found"):
        zconvert.convert(inp, tmp_path / "out")


def test_zip_and_npz_of_one_name_are_refused_not_overwritten(tmp_path):
    inp = tmp_path / "in"
    make_zip(inp / "a.zip", {"x.bin": VALUES})
    np.savez(inp / "a.npz", x=VALUES[:10])
    proc = cli("convert", str(inp), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "a.zip" in line and "a.npz" in line and "a.zarr" in line and "rename" in line, line
    assert not (tmp_path / "out" / "a.zarr").exists()
