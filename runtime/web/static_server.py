"""``ufd-bundle web --serve``: the site on loopback, with the headers WebAssembly threads need.

A page gets ``SharedArrayBuffer`` (and so onnxruntime-web's threads) only when it is
cross-origin isolated: served with ``Cross-Origin-Opener-Policy: same-origin`` and
``Cross-Origin-Embedder-Policy: require-corp``. Any static host that sends those two
headers (and ``application/wasm`` for ``.wasm``) serves the site as well.
"""

from __future__ import annotations

import functools
import http.server
import sys
import threading
from pathlib import Path
from typing import Any

ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class SiteHandler(http.server.SimpleHTTPRequestHandler):
    """Files of the site only (no listings), with the isolation headers."""

    extensions_map = {  # noqa: RUF012 - the base class declares it as a class attribute
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".js": "text/javascript",
        ".wasm": "application/wasm",
        ".onnx": "application/octet-stream",
        ".bin": "application/octet-stream",
        ".json": "application/json",
    }

    isolated = True
    """Send the isolation headers (off: what a static host that cannot set headers serves)."""

    def end_headers(self) -> None:
        """Add the isolation headers to every answer."""
        for name, value in ISOLATION_HEADERS.items() if self.isolated else ():
            self.send_header(name, value)
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def list_directory(self, path: Any) -> None:
        """No folder listings."""
        self.send_error(404, "no listing")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a page load is dozens of requests."""


class PlainSiteHandler(SiteHandler):
    """The site without the isolation headers: the page runs on one thread."""

    isolated = False


class SiteServer(http.server.ThreadingHTTPServer):
    """A threading server that says nothing when a browser drops a download midway."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore connections the browser closed; report anything else."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def make_server(
    site: Path, host: str = "127.0.0.1", port: int = 8000, isolated: bool = True
) -> SiteServer:
    """A threading HTTP server for ``site`` (not started)."""
    handler = functools.partial(SiteHandler if isolated else PlainSiteHandler, directory=str(site))
    return SiteServer((host, port), handler)


def serve_in_background(
    site: Path, host: str = "127.0.0.1", port: int = 0, isolated: bool = True
) -> tuple[Any, str]:
    """Start serving ``site`` on a thread; (server, its URL). ``server.shutdown()`` stops it."""
    server = make_server(site, host, port, isolated)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}/"
