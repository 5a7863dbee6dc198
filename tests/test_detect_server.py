"""``ufd-detect --server``: a running ufd-serve (TCP or its Unix socket) gives the local records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import bad_input_corpus
from serving import serving

DETECT = [sys.executable, "-m", "ufd.cli.detect"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root, _ = bad_input_corpus(tmp_path_factory.mktemp("corpus"))
    return root


@pytest.fixture(scope="module")
def service(full_bundle: Path, tmp_path_factory: pytest.TempPathFactory):
    socket_path = tmp_path_factory.mktemp("sock") / "ufd.sock"
    with serving(full_bundle, "--socket", str(socket_path)) as server:
        yield server, socket_path


def _detect(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*DETECT, *args], capture_output=True, text=True, env=env or os.environ, timeout=300
    )


def _lines(result: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.parametrize("transport", ["unix", "http"])
@pytest.mark.parametrize("method", ["linear", "nn", "traces", "realonly", "fused", "all"])
def test_records_equal_a_local_run(service, full_bundle: Path, corpus: Path, transport, method):
    server, socket_path = service
    url = f"unix:{socket_path}" if transport == "unix" else server.url
    local = _detect(str(full_bundle), str(corpus), "--method", method, "--format", "jsonl")
    remote = _detect("--server", url, str(corpus), "--method", method, "--format", "jsonl")
    assert remote.returncode == local.returncode == 1, remote.stderr  # the corpus has bad files
    assert _lines(remote) == _lines(local)
    assert remote.stderr.splitlines()[-1].endswith(f"({url})")


def test_every_output_format_and_the_typer_path(service, full_bundle: Path, corpus: Path) -> None:
    server, socket_path = service
    for fmt in ("table", "csv"):
        local = _detect(str(full_bundle), str(corpus), "--format", fmt)
        fast = _detect("--server", f"unix:{socket_path}", str(corpus), "--format", fmt)
        typer_path = _detect("--server", server.url, str(corpus), "--format", fmt, "-v")
        assert fast.stdout == local.stdout == typer_path.stdout, fmt


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "table"])
def test_a_client_side_error_never_changes_another_record(
    service, full_bundle: Path, corpus: Path, tmp_path: Path, fmt: str
) -> None:
    """A file that fails here (missing, a folder, empty) comes first: the records after it
    keep every field, in every format, as a local run writes them."""
    _, socket_path = service
    empty, nothing = tmp_path / "empty.png", tmp_path / "no-images"
    empty.write_bytes(b"")
    nothing.mkdir()
    first = [str(tmp_path / "missing.jpg"), str(nothing), str(empty)]
    images = [*first, str(corpus / "rgba.png"), str(corpus / "gray.tiff")]
    local = _detect(str(full_bundle), *images, "--format", fmt, "--method", "all")
    remote = _detect("--server", f"unix:{socket_path}", *images, "--format", fmt, "--method", "all")
    assert remote.returncode == local.returncode == 1, remote.stderr
    assert remote.stdout == local.stdout
    assert "2 scored, 3 failed" in remote.stderr
    if fmt == "jsonl":
        scored = [r for r in _lines(remote) if r["error"] is None]
        assert len(scored) == 2 and all(r["prob"] is not None for r in scored)
        assert _lines(remote)[0]["error"] == "no such file or directory"


def test_ufd_server_in_the_environment(service, full_bundle: Path, corpus: Path) -> None:
    _, socket_path = service
    image = str(corpus / "rgba.png")
    env = os.environ | {"UFD_SERVER": f"unix:{socket_path}"}
    remote = _detect(image, "--format", "jsonl", env=env)
    local = _detect(str(full_bundle), image, "--format", "jsonl")
    assert remote.returncode == 0 and _lines(remote) == _lines(local)
    empty = _detect(
        str(full_bundle), image, "--format", "jsonl", env=os.environ | {"UFD_SERVER": ""}
    )
    assert _lines(empty) == _lines(local)  # empty: a local run


@pytest.mark.parametrize("url", ["unix:/nonexistent/ufd.sock", "http://127.0.0.1:9"])
def test_an_unreachable_service_is_one_line_and_exit_2(url: str, corpus: Path) -> None:
    result = _detect("--server", url, str(corpus))
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot reach ufd-serve at {url}")


def test_local_only_options_are_refused_with_a_server(corpus: Path) -> None:
    result = _detect("--server", "unix:/x.sock", str(corpus), "--precision", "fp32")
    assert result.returncode == 2
    assert "--precision: only for a local run" in result.stderr


def test_the_socket_is_private_and_a_busy_port_is_one_line(service, full_bundle: Path) -> None:
    server, socket_path = service
    assert socket_path.stat().st_mode & 0o777 == 0o600
    busy = subprocess.run(
        [sys.executable, "-m", "ufd.cli.serve", str(full_bundle), "--port", str(server.port)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert busy.returncode == 2
    (line,) = busy.stderr.strip().splitlines()
    assert line == (
        f"error: port {server.port} on 127.0.0.1 is in use (another ufd-serve?); stop it or "
        "choose another with --port"
    )
