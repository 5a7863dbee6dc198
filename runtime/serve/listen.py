"""Where ``ufd-serve`` listens: a TCP port, and optionally a Unix domain socket.

Both are bound here, before the service starts or says anything, so that a port
already in use is one clear error (exit 2), never uvicorn's log and a crash.
A Unix socket (``--socket PATH``) is for callers on the same machine that run
once per image (``ufd-detect --server unix:PATH``): no TCP handshake, and only
the user that started the service (and root) may connect (mode 0600).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

from ufd.runtime.errors import UsageError

BACKLOG = 2048


def bind_tcp(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on ``host:port``.

    Raises:
        UsageError: the port is in use, or the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise UsageError(
                f"port {port} on {host} is in use (another ufd-serve?); stop it or choose "
                "another with --port"
            ) from e
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror}") from e
    sock.set_inheritable(True)
    return sock


def bind_unix(path: Path) -> socket.socket:
    """A listening-ready Unix domain socket at ``path``, readable by this user only.

    A socket file left by a service that died is replaced; one a live service
    listens on is not.

    Raises:
        UsageError: the path is in use, is not a socket, or cannot be bound.
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise UsageError(f"--socket {path} exists and is not a socket; choose another path")
        if _answers(path):
            raise UsageError(f"--socket {path} is in use by a running service; choose another path")
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with _private_umask():
            sock.bind(str(path))
    except OSError as e:
        sock.close()
        raise UsageError(f"cannot listen on --socket {path}: {e.strerror}") from e
    return sock


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def _private_umask() -> Iterator[None]:
    old = os.umask(0o177)  # the socket file is created 0600
    try:
        yield
    finally:
        os.umask(old)
