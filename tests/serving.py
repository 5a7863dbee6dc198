"""Start and stop real ``ufd-serve`` processes on 127.0.0.1 for the tests."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from helpers import fault_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, headers: dict | None = None) -> tuple[int, dict | str]:
    """(status, JSON or text) of a GET."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, body, kind = response.status, response.read(), response.headers["content-type"]
    except urllib.error.HTTPError as e:
        status, body, kind = e.code, e.read(), e.headers.get("content-type", "")
    text = body.decode()
    return status, json.loads(text) if "json" in (kind or "") else text


def post(url: str, body: bytes, content_type: str | None, headers: dict | None = None):
    """(status, JSON, response headers) of a POST."""
    headers = dict(headers or {})
    if content_type:
        headers["Content-Type"] = content_type
    request = urllib.request.Request(url, body, headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), e.headers


class Server:
    """A running ``ufd-serve`` subprocess."""

    def __init__(
        self,
        bundle: Path,
        *args: str,
        ready: bool = True,
        faults: str | None = None,
        port: int | None = None,
        ready_path: str = "/readyz",
    ) -> None:
        """Start ``ufd-serve``; ``faults``: ``UFD_TEST_FAULTS`` for it (ufd.runtime.faults)."""
        self.port = port or free_port()
        self.ready_path = ready_path

        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [
            sys.executable,
            "-m",
            "ufd.cli.serve",
            str(bundle),
            "--port",
            str(self.port),
            "--provider",
            "cpu",
            *args,
        ]
        env = os.environ | (fault_env(faults) if faults else {})
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )

        if ready:
            self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"ufd-serve exited {self.proc.returncode}: {self.stderr()}")
            with contextlib.suppress(OSError):
                if get(self.url + self.ready_path)[0] == 200:
                    return
            time.sleep(0.1)
        raise AssertionError("ufd-serve never became ready")

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return ""
        return self.proc.stderr.read() if self.proc.stderr else ""

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@contextlib.contextmanager
def serving(bundle: Path, *args: str) -> Iterator[Server]:
    server = Server(bundle, *args)
    try:
        yield server
    finally:
        server.stop()


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "ufdtest") -> bytes:
    """A multipart/form-data body; ``filename`` None makes a plain field."""
    chunks = []
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (
            f'; filename="{filename}"' if filename is not None else ""
        )
        chunks += [
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode(),
            data,
            b"\r\n",
        ]
    return b"".join([*chunks, f"--{boundary}--\r\n".encode()])


def schemathesis_command(url: str, examples: int, seed: int, *args: str) -> list[str]:
    """schemathesis on a running service's ``/openapi.json``: every check, a fixed seed."""
    return [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(Path(__file__).resolve().parent.parent / "schemathesis.toml"),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(examples),
        "--seed",
        str(seed),
        *args,
    ]
