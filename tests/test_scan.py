"""ufd-scan: the same rows as ufd-detect, error rows, resume after a kill, exactly once.

The local engine runs here; the Ray engine runs on a local Ray instance
(``num_cpus=2``) and is marked slow (``make test`` runs it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest
from helpers import bad_input_corpus, fault_env, random_image
from typer.testing import CliRunner

from ufd.cli.detect import app as detect_app
from ufd.cli.index import app as index_app
from ufd.cli.scan import app as scan_app
from ufd.runtime.bundle_ops.parity_check import check_parity
from ufd.runtime.methods import open_bundle
from ufd.runtime.scan.stages import GRAPH_COLUMNS

runner = CliRunner()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root, _ = bad_input_corpus(tmp_path_factory.mktemp("scan-corpus"))
    for i in range(6):
        random_image(root / f"photo{i}.png", (260 + 10 * i, 240), seed=40 + i)
    return root


def rows(out: Path) -> list[dict]:
    """The dataset's records, as JSON records have them: map columns (nn_source_share) as
    dicts, without the graph columns (:func:`graphs` reads those)."""
    found = ds.dataset(out, format="parquet").to_table().to_pylist()
    for row in found:
        for name in GRAPH_COLUMNS:
            row.pop(name)
        for key, value in row.items():
            if isinstance(value, list) and value and isinstance(value[0], tuple):
                row[key] = dict(value)
    return found


def graphs(out: Path) -> dict[str, tuple[str | None, str | None]]:
    """Path -> (graph_precision, graph_sha256) of each row."""
    table = ds.dataset(out, format="parquet").to_table(columns=["path", *GRAPH_COLUMNS])
    return {r["path"]: tuple(r[c] for c in GRAPH_COLUMNS) for r in table.to_pylist()}


def assert_scored_by(out: Path, bundle: Path, precision: str) -> None:
    """Every scored row names ``precision``'s graph (and its sha256); error rows none."""
    manifest = open_bundle(bundle).manifest
    sha = manifest.files[manifest.encoder(precision).file].sha256
    records = {r["path"]: r for r in rows(out)}
    for path, graph in graphs(out).items():
        assert graph == ((None, None) if records[path]["error"] else (precision, sha)), path


def detect_records(bundle: Path, *args: str) -> dict[str, dict]:
    result = runner.invoke(detect_app, [str(bundle), *args, "--format", "jsonl", "-q"])
    return {r["path"]: r for r in map(json.loads, result.stdout.splitlines())}


def scan(*args: str) -> object:
    return runner.invoke(scan_app, [str(a) for a in args])


def test_local_scan_rows_equal_ufd_detect(full_bundle: Path, corpus: Path, tmp_path) -> None:
    out = tmp_path / "scan"
    result = scan(full_bundle, corpus, "--out", out, "--method", "all", "--shard-rows", "7")
    assert result.exit_code == 1, result.output  # the corpus has bad files: exit 1, like detect
    assert "scored" in result.stderr and "images/s" in result.stderr
    expected = detect_records(full_bundle, str(corpus), "--method", "all")
    got = rows(out)
    assert len(got) == len(expected) and {r["path"] for r in got} == set(expected)
    for row in got:
        assert row == expected[row["path"]], row["path"]  # same fields, values and errors
    fields = list(next(iter(expected.values())))
    assert ds.dataset(out).schema.names == [*fields, *GRAPH_COLUMNS]
    assert sum(r["error"] is not None for r in got) >= 6
    assert_scored_by(out, full_bundle, check_parity(full_bundle, "cpu").auto)  # as detect here
    assert json.loads((out / "_scan.json").read_text())["precision"] == "auto"


def test_workers_and_features_feed_ufd_index(
    full_bundle: Path, corpus: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scan"
    result = scan(
        full_bundle,
        corpus,
        "--out",
        out,
        "--workers",
        "2",
        "--features",
        "--precision",
        "fp32",
        "--shard-rows",
        "5",
    )
    assert result.exit_code == 1, result.output
    expected = detect_records(full_bundle, str(corpus), "--precision", "fp32")
    table = rows(out)
    for row in table:
        feature = row.pop("feature")
        assert row["path"] in expected
        for key, value in expected[row["path"]].items():
            assert (
                row[key] == pytest.approx(value, abs=1e-6)
                if isinstance(value, float)
                else row[key] == value
            )
        assert (feature is None) == (row["error"] is not None)
    bundle = tmp_path / "b"
    shutil.copytree(full_bundle, bundle)
    ok = sum(r["error"] is None for r in table)
    result = runner.invoke(index_app, [str(bundle), "--real-only", "--real-features", str(out)])
    assert result.exit_code == 0, result.output
    assert f"indexed {ok} real" in result.stdout


def test_inputs_from_lists_and_uris(full_bundle: Path, corpus: Path, tmp_path: Path) -> None:
    photos = sorted(str(p) for p in corpus.glob("photo*.png"))
    (tmp_path / "list.txt").write_text("# my images\n" + "\n".join(photos[:3]) + "\n\n")
    (tmp_path / "list.csv").write_text("path,label\n" + "".join(f"{p},x\n" for p in photos[3:]))
    uris = [f"file://{p}" for p in photos[:2]]
    for listing, expected in (("list.txt", photos[:3]), ("list.csv", photos[3:])):
        out = tmp_path / f"out-{listing}"
        result = scan(full_bundle, "--from-list", tmp_path / listing, "--out", out)
        assert result.exit_code == 0, result.output
        assert sorted(r["path"] for r in rows(out)) == expected
    out = tmp_path / "uris"
    result = scan(full_bundle, *uris, "file:///no/such.png", "--out", out)
    by_path = {r["path"]: r for r in rows(out)}
    offline = detect_records(full_bundle, *photos[:2])
    for uri, path in zip(uris, photos[:2], strict=True):
        assert by_path[uri]["logit"] == offline[path]["logit"]  # same bytes, same score
    assert by_path["file:///no/such.png"]["error"] == "no such file or directory"


def test_out_must_be_new_or_resumed_with_the_same_settings(full_bundle: Path, corpus, tmp_path):
    out = tmp_path / "scan"
    assert scan(full_bundle, corpus / "photo0.png", "--out", out).exit_code == 0
    again = scan(full_bundle, corpus / "photo0.png", "--out", out)
    assert again.exit_code == 2 and "--resume" in again.stderr
    other = scan(full_bundle, corpus / "photo0.png", "--out", out, "--resume", "--method", "nn")
    assert other.exit_code == 2 and "other settings (methods)" in other.stderr
    done = scan(full_bundle, corpus / "photo0.png", "--out", out, "--resume")
    assert done.exit_code == 0 and "0 inputs to scan (1 done before)" in done.stderr
    not_a_folder = scan(full_bundle, corpus / "photo0.png", "--out", corpus / "photo1.png")
    assert not_a_folder.exit_code == 2 and "not a folder" in not_a_folder.stderr
    fresh = scan(full_bundle, corpus / "photo1.png", "--out", out, "--overwrite")
    assert fresh.exit_code == 0 and [r["path"] for r in rows(out)] == [str(corpus / "photo1.png")]


def _scan_command(bundle: Path, folder: Path, out: Path, *engine: str) -> list[str]:
    """ufd-scan in its own process, one image a batch, two rows a shard."""
    return [
        sys.executable,
        "-m",
        "ufd.cli.scan",
        str(bundle),
        str(folder),
        "--out",
        str(out),
        "--shard-rows",
        "2",
        "--batch-size",
        "1",
        *engine,
    ]


def _killed_then_resumed(bundle: Path, folder: Path, out: Path, *engine: str) -> list[dict]:
    cmd = _scan_command(bundle, folder, out, *engine)
    # the scan waits once two shards are written (faults): the kill comes half way, every time
    env = os.environ | fault_env("pause-after-shards=2")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 120
    while len(list(out.glob("part-*.parquet"))) < 2:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no shard was ever written"
        time.sleep(0.02)
    at_kill = len(list(out.glob("part-*.parquet")))
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL and 2 <= at_kill < 20  # killed half way
    result = subprocess.run([*cmd, "--resume"], capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    assert "done before)" in result.stderr
    return rows(out)


@pytest.fixture(scope="module")
def forty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("forty")
    for i in range(40):
        random_image(folder / f"img{i:02d}.png", (240, 240), seed=i)
    return folder


def test_local_resume_after_a_kill_scans_each_input_once(full_bundle, forty, tmp_path) -> None:
    got = _killed_then_resumed(full_bundle, forty, tmp_path / "scan")
    names = sorted(Path(r["path"]).name for r in got)
    assert names == [f"img{i:02d}.png" for i in range(40)] and all(r["error"] is None for r in got)


@pytest.mark.slow
def test_ray_engine_rows_equal_ufd_detect(full_bundle: Path, corpus: Path, tmp_path) -> None:
    out = tmp_path / "scan"
    cmd = [
        sys.executable,
        "-m",
        "ufd.cli.scan",
        str(full_bundle),
        str(corpus),
        "--out",
        str(out),
        "--engine",
        "ray",
        "--method",
        "all",
        "--shard-rows",
        "4",
        "--features",
        "--object-store-mb",
        "256",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr  # bad files are error rows, exit 1
    expected = detect_records(full_bundle, str(corpus), "--method", "all")
    got = rows(out)
    assert len(got) == len(expected)
    for row in got:
        feature = row.pop("feature")
        assert row == expected[row["path"]], row["path"]
        assert (feature is None) == (row["error"] is not None)
        if feature is not None:
            assert np.isfinite(feature).all() and len(feature) == 768
    assert_scored_by(out, full_bundle, check_parity(full_bundle, "cpu").auto)  # as detect here


@pytest.mark.slow
def test_ray_resume_after_a_kill_scans_each_input_once(full_bundle, forty, tmp_path) -> None:
    got = _killed_then_resumed(full_bundle, forty, tmp_path / "scan", "--engine", "ray")
    names = sorted(Path(r["path"]).name for r in got)
    assert names == [f"img{i:02d}.png" for i in range(40)]


@pytest.mark.slow
def test_ray_actors_must_leave_a_cpu_for_decoding(full_bundle: Path, corpus: Path, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "ufd.cli.scan",
        str(full_bundle),
        str(corpus / "photo0.png"),
        "--out",
        str(tmp_path / "scan"),
        "--engine",
        "ray",
        "--workers",
        "2",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "leave no CPU for the decoding tasks" in result.stderr


def _scan_with_a_killed_worker(
    bundle: Path, folder: Path, tmp_path: Path, is_worker, *engine: str
) -> tuple[list[dict], str]:
    """Scan; once two shards exist (every writer waits there), SIGKILL one worker, go on."""
    import psutil

    out, release = tmp_path / "scan", tmp_path / "release"
    cmd = _scan_command(bundle, folder, out, *engine)
    env = os.environ | fault_env("pause-after-shards=2") | {"UFD_TEST_RELEASE": str(release)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    deadline = time.monotonic() + 300
    while len(list(out.glob("part-*.parquet"))) < 2:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "no shard was ever written"
        time.sleep(0.05)
    while not (workers := [p for p in psutil.process_iter(["cmdline"]) if is_worker(p, proc.pid)]):
        assert time.monotonic() < deadline, "no worker process found"
        time.sleep(0.05)
    workers[0].kill()
    release.touch()
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return rows(out), err


def test_a_killed_local_worker_still_gives_one_row_per_input(
    full_bundle: Path, forty: Path, tmp_path: Path
) -> None:
    def is_worker(process, scan_pid: int) -> bool:
        try:
            return process.ppid() == scan_pid and "spawn_main" in " ".join(process.cmdline())
        except (OSError, ValueError):
            return False

    got, err = _scan_with_a_killed_worker(
        full_bundle, forty, tmp_path, is_worker, "--workers", "2", "--threads", "1"
    )
    names = sorted(Path(r["path"]).name for r in got)
    assert names == [f"img{i:02d}.png" for i in range(40)] and all(r["error"] is None for r in got)
    assert "a scan worker died" in err and "40 scored, 0 failed" in err


@pytest.mark.slow
def test_a_killed_ray_actor_still_gives_one_row_per_input(
    full_bundle: Path, forty: Path, tmp_path: Path
) -> None:
    def is_actor(process, scan_pid: int) -> bool:
        try:
            line = " ".join(process.cmdline())
        except (OSError, ValueError):
            return False
        return line.startswith("ray::") and "Scorer" in line

    got, _ = _scan_with_a_killed_worker(full_bundle, forty, tmp_path, is_actor, "--engine", "ray")
    names = sorted(Path(r["path"]).name for r in got)
    assert names == [f"img{i:02d}.png" for i in range(40)] and all(r["error"] is None for r in got)


def test_scan_counts_what_folders_held_that_is_not_an_image(tiny_bundle: Path, tmp_path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    random_image(folder / "a.png", (64, 64), seed=1)
    (folder / "notes.txt").write_text("not an image")
    (folder / "model.xyz").write_bytes(b"\0" * 16)
    out = tmp_path / "scan"
    result = scan(tiny_bundle, folder, "--out", out, "-v")
    assert result.exit_code == 0, result.output
    assert "1 scored, 0 failed; 2 skipped: 2 not an image format" in result.stderr
    assert f"skipped {folder / 'notes.txt'}" in result.stderr  # -v lists them
    assert [r["path"] for r in rows(out)] == [str(folder / "a.png")]
