"""Every engine takes the graph ``ufd-detect`` takes on the host that runs it.

Both branches of ``auto`` run on every host: a parity cache written for the test
(:mod:`parity_helpers`) makes int8 keep the bundle's tolerance "here" (as on
AVX-512 VNNI) or break it (as on AVX2 without VNNI). Local and Ray scans must then
score every row with the graph ``ufd-detect`` takes, equal records included, and
say which graph scored each row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import random_image
from parity_helpers import pretend_measured
from test_scan import assert_scored_by, detect_records, rows, scan

EXPECTED = {True: "int8", False: "int8-portable"}


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for i in range(5):
        random_image(folder / f"p{i}.png", (250 + 7 * i, 240), seed=70 + i)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    return folder


@pytest.fixture
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A parity cache of this test's own (subprocesses and Ray workers inherit it)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("UFD_CACHE_DIR", str(folder))
    return folder


def _as_measured(bundle: Path, int8_keeps_it: bool) -> None:
    pretend_measured(bundle, "int8", keeps=int8_keeps_it)
    pretend_measured(bundle, "int8-portable", keeps=True)


def _check_equal(out: Path, bundle: Path, photos: Path, precision: str) -> None:
    expected = detect_records(bundle, str(photos))  # ufd-detect, auto, on this host
    got = rows(out)
    assert len(got) == len(expected) == 6
    for row in got:
        assert row == expected[row["path"]], row["path"]
    assert_scored_by(out, bundle, precision)


@pytest.mark.parametrize("int8_keeps_it", [True, False])
def test_a_local_scan_takes_the_graph_detect_takes_here(
    tiny_bundle: Path, photos: Path, tmp_path: Path, own_cache: Path, int8_keeps_it: bool
) -> None:
    _as_measured(tiny_bundle, int8_keeps_it)
    out = tmp_path / "scan"
    result = scan(tiny_bundle, photos, "--out", out, "--workers", "2", "--shard-rows", "2")
    assert result.exit_code == 1, result.output  # the broken file: an error row
    precision = EXPECTED[int8_keeps_it]
    assert f"graph: {precision} (auto, measured on this host)" in result.stderr
    assert f"5 by {precision}" in result.stderr
    _check_equal(out, tiny_bundle, photos, precision)
    assert json.loads((out / "_scan.json").read_text())["precision"] == "auto"


def _ray_scan(bundle: Path, folder: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "ufd.cli.scan", str(bundle), str(folder), "--out", str(out)]
    command += ["--engine", "ray", "--shard-rows", "2", *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=os.environ)


@pytest.mark.slow
@pytest.mark.parametrize("int8_keeps_it", [True, False])
def test_ray_actors_measure_their_node_and_match_detect(
    tiny_bundle: Path, photos: Path, tmp_path: Path, own_cache: Path, int8_keeps_it: bool
) -> None:
    _as_measured(tiny_bundle, int8_keeps_it)
    out = tmp_path / "scan"
    result = _ray_scan(tiny_bundle, photos, out)
    assert result.returncode == 1, result.stderr[-3000:]
    precision = EXPECTED[int8_keeps_it]
    assert "graph: auto: each node measures its own" in result.stderr
    _check_equal(out, tiny_bundle, photos, precision)


@pytest.mark.slow
def test_an_explicit_precision_runs_on_ray_and_each_node_warns_with_the_figure(
    tiny_bundle: Path, photos: Path, tmp_path: Path, own_cache: Path
) -> None:
    _as_measured(tiny_bundle, int8_keeps_it=False)
    out = tmp_path / "scan"
    result = _ray_scan(tiny_bundle, photos, out, "--precision", "int8")
    assert result.returncode == 1, result.stderr[-3000:]
    warned = [line for line in result.stderr.splitlines() if "asked for by name" in line]
    assert len(warned) == 1 and "int8 breaks the bundle's tolerance there" in warned[0]
    assert "cosine 0.99015" in warned[0] and warned[0].startswith("WARNING")
    assert_scored_by(out, tiny_bundle, "int8")


def test_resuming_a_dataset_of_an_older_ufd_goes_on_with_its_graph(
    tiny_bundle: Path, photos: Path, tmp_path: Path, own_cache: Path
) -> None:
    """Datasets made before recorded the precision auto resolved to; they stay one graph's."""
    _as_measured(tiny_bundle, int8_keeps_it=False)  # auto would take int8-portable now
    out = tmp_path / "scan"
    first = sorted(photos.glob("p[01].png"))
    assert scan(tiny_bundle, *first, "--out", out).exit_code == 0
    meta = out / "_scan.json"
    old = json.loads(meta.read_text())
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    old["precision"] = "int8"
    old["encoder_sha256"] = manifest["files"]["encoder.int8.onnx"]["sha256"]
    meta.write_text(json.dumps(old))
    result = scan(tiny_bundle, photos, "--out", out, "--resume")
    assert result.exit_code == 1, result.output
    assert "graph: int8 (as the scan being resumed)" in result.stderr
    later = {str(p) for p in photos.glob("p[234].png")}
    by_path = {r["path"]: r for r in rows(out)}
    ours = detect_records(tiny_bundle, *sorted(later), "--precision", "int8")
    assert all(by_path[p] == ours[p] for p in later)


def test_a_resumed_scan_with_another_graph_is_refused(
    tiny_bundle: Path, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scan"
    assert scan(tiny_bundle, photos / "p0.png", "--out", out).exit_code == 0
    other = scan(tiny_bundle, photos / "p0.png", "--out", out, "--resume", "--precision", "fp32")
    assert other.exit_code == 2 and "other settings (encoder_sha256, precision)" in other.stderr
