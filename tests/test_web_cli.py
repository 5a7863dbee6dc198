"""``ufd-bundle web``: what it writes, what it refuses (one line, exit 2), and ``--serve``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ufd.cli.bundle import app as bundle_app
from ufd.runtime.web import ort_package

runner = CliRunner()


def web(*args: object):
    return runner.invoke(bundle_app, ["web", *map(str, args)])


def test_writes_the_site_and_says_what_a_visit_downloads(
    tiny_bundle: Path, ort_tarball: Path, tmp_path: Path
) -> None:
    out = tmp_path / "site"
    result = web(tiny_bundle, out, "--ort-tarball", ort_tarball, "--precision", "int8")
    assert result.exit_code == 0, result.output
    assert "a visit downloads" in result.stdout and "onnxruntime-web 1.31.1 (MIT)" in result.stdout
    site = json.loads((out / "web.json").read_text())
    assert [g["precision"] for g in site["graphs"]] == ["int8"]
    assert (out / "model" / "encoder.int8.onnx").is_file()
    assert not (out / "model" / "encoder.fp32.onnx").exists()
    source = json.loads((out / "ort" / "SOURCE.json").read_text())
    assert source["version"] == ort_package.ORT_WEB_VERSION
    assert source["tarball_sha256"] == ort_package.ORT_WEB_SHA256
    assert set(source["files"]) == set(ort_package.WASM_FILES)
    again = web(tiny_bundle, out, "--ort-tarball", ort_tarball)  # a page built before: replaced
    assert again.exit_code == 0, again.output
    assert (out / "model" / "encoder.fp32.onnx").is_file()


def test_without_npm_it_says_what_to_do(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("UFD_CACHE_DIR", str(tmp_path / "cache"))
    result = web(tiny_bundle, tmp_path / "site")
    assert result.exit_code == 2
    assert "npm is not installed" in result.stderr and "--ort-tarball" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "site").exists()


def test_a_tarball_that_is_not_the_pinned_one_is_refused(tiny_bundle: Path, tmp_path: Path) -> None:
    fake = tmp_path / ort_package.TARBALL
    fake.write_bytes(b"not onnxruntime-web")
    result = web(tiny_bundle, tmp_path / "site", "--ort-tarball", fake)
    assert result.exit_code == 2 and "not the pinned onnxruntime-web" in result.stderr


def test_a_folder_holding_other_things_is_refused(
    tiny_bundle: Path, ort_tarball: Path, tmp_path: Path
) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    (out / "web.json").write_text('{"someone": "else"}')  # another tool's web.json
    result = web(tiny_bundle, out, "--ort-tarball", ort_tarball)
    assert result.exit_code == 2 and "not a page ufd built" in result.stderr
    assert (out / "notes.txt").read_text() == "keep me"


def test_a_bundle_without_a_linear_head_is_refused(
    tiny_bundle: Path, ort_tarball: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "headless"
    shutil.copytree(tiny_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    del manifest["methods"]["linear"]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    result = web(bundle, tmp_path / "site", "--ort-tarball", ort_tarball)
    assert result.exit_code == 2 and "linear head" in result.stderr
    assert not (tmp_path / "site").exists()  # refused before anything was written


def test_a_precision_a_browser_does_not_run_is_refused(
    tiny_bundle: Path, ort_tarball: Path, tmp_path: Path
) -> None:
    result = web(
        tiny_bundle, tmp_path / "site", "--ort-tarball", ort_tarball, "--precision", "fp16"
    )
    assert result.exit_code == 2 and "a browser runs int8" in result.stderr


def test_serve_sends_the_headers_threads_need(
    tiny_bundle: Path, ort_tarball: Path, tmp_path: Path
) -> None:
    out = tmp_path / "site"
    command = [sys.executable, "-m", "ufd.cli.bundle", "web", str(tiny_bundle), str(out)]
    command += ["--ort-tarball", str(ort_tarball), "--serve", "--port", "0"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert process.stdout is not None
        url = ""
        for line in process.stdout:
            if line.startswith("serving "):
                url = line.split()[1]
                break
        assert url.startswith("http://127.0.0.1:"), "no serving line"
        with urllib.request.urlopen(url) as response:
            assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
            assert response.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
            assert b"ufd-web/page.js" in response.read()
        with urllib.request.urlopen(url + "ort/ort-wasm-simd-threaded.wasm") as response:
            assert response.headers["Content-Type"] == "application/wasm"
        with pytest.raises(urllib.error.HTTPError) as listing:
            urllib.request.urlopen(url + "model/")
        assert listing.value.code == 404  # no folder listings
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
