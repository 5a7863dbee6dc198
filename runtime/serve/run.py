"""Run ``ufd-serve``: bind, serve until told to stop, drain, say why it ended.

:func:`serve` is what the command calls (and what a program embedding the
service can call): it binds the TCP port (and the Unix socket) before anything
loads, so a busy port fails at once; loads the bundle in the background
(``/readyz`` says when it is ready); answers every accepted request on
SIGTERM/SIGINT before it returns 0; and returns 2 when the bundle does not load
or 3 when the encoder worker stopped.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from pathlib import Path

from ufd.runtime.methods import open_bundle
from ufd.runtime.serve.app import create_app
from ufd.runtime.serve.config import ServeConfig
from ufd.runtime.serve.listen import bind_tcp, bind_unix

logger = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(
    config: ServeConfig,
    socket_path: Path | None = None,
    verbose: int = 0,
    say: Callable[[str], None] = logger.warning,
) -> int:
    """Serve ``config`` until SIGTERM/SIGINT (drained: 0) or a fatal error (2 or 3).

    Args:
        config: the service's settings.
        socket_path: also listen on this Unix socket (mode 0600).
        verbose: uvicorn's log level (info from 1) and access log (from 2).
        say: where the one-line announcements go.

    Raises:
        BundleError: the bundle cannot be opened (before anything listens).
        UsageError: the port or the socket cannot be bound.
    """
    import uvicorn

    open_bundle(config.bundle)  # a wrong path or a bad manifest fails here, before listening
    sockets = [bind_tcp(config.host, config.port)]
    if socket_path is not None:
        sockets.append(bind_unix(socket_path))
    failure: list[int] = []

    def fatal(message: str, code: int) -> None:
        """The bundle did not load (2) or a worker stopped (3): end the process with it."""
        failure.append(code)
        server.should_exit = True

    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config, on_fatal=fatal),
            host=config.host,
            port=config.port,
            log_level="info" if verbose else "warning",
            access_log=verbose > 1,
            timeout_graceful_shutdown=int(config.drain_timeout) or None,
            limit_concurrency=config.max_connections,
        )
    )
    for sig in (signal.SIGINT, signal.SIGTERM):  # uvicorn re-raises them after draining:
        signal.signal(sig, lambda *_: None)  # a drained shutdown then exits 0
    if config.api_key is None and config.host not in LOOPBACK:
        say(f"warning: listening on {config.host} without --api-key-file")
    where = f"http://{config.host}:{config.port}"
    where += f" and unix:{socket_path}" if socket_path else ""
    say(f"ufd-serve: {config.bundle} on {where} (loading; see /readyz)")
    try:
        server.run(sockets=sockets)
    finally:
        if socket_path is not None:
            socket_path.unlink(missing_ok=True)
    return failure[0] if failure else 0
