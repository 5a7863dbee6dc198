"""``ufd-serve``: a resident detection service (extra ``ufd[serve]``)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer

from ufd.cli.common import (
    VIEWS_HELP,
    TrustKeys,
    handle_errors,
    methods_help,
    provider_help,
    run,
    setup_logging,
    trust,
)
from ufd.runtime.io.decode import DEFAULT_MAX_PIXELS

app = typer.Typer(add_completion=False, rich_markup_mode=None)
MB = 1 << 20


@app.command(
    help=(
        "Serve a bundle over HTTP: POST /v1/detect (multipart 'file' parts or JSON base64 "
        "images) answers one record per image with the fields of ufd-detect's JSONL; "
        "GET /v1/info, /metrics (Prometheus), /healthz, /readyz; a page at / and the API "
        "at /docs. Binds 127.0.0.1 unless told otherwise. Loads and warms the bundle once; "
        "SIGTERM/SIGINT answer every accepted request, then exit 0."
    )
)
@handle_errors
def serve(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory.")],
    host: Annotated[str, typer.Option(help="Address to bind (0.0.0.0: every interface).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    socket_path: Annotated[
        Path | None,
        typer.Option(
            "--socket",
            help="Also listen on this Unix domain socket (mode 0600: this user only), for "
            "one-shot callers on this machine: ufd-detect --server unix:PATH IMAGE.",
        ),
    ] = None,
    method: Annotated[
        str, typer.Option(help="Default when a request names none. " + methods_help())
    ] = "linear",
    views: Annotated[
        int, typer.Option(min=0, help="Default when a request names none. " + VIEWS_HELP)
    ] = 0,
    precision: Annotated[str | None, typer.Option(help="fp32, fp16 or int8.")] = None,
    provider: Annotated[str, typer.Option(help=provider_help())] = "auto",
    threads: Annotated[int | None, typer.Option(min=1, help="onnxruntime threads.")] = None,
    api_key_file: Annotated[
        Path | None,
        typer.Option(help="Require 'Authorization: Bearer KEY' (KEY: this file's first line)."),
    ] = None,
    max_image_mb: Annotated[float, typer.Option(min=0.001, help="Largest image, MB.")] = 32,
    max_request_mb: Annotated[float, typer.Option(min=0.001, help="Largest request, MB.")] = 64,
    max_images: Annotated[int, typer.Option(min=1, help="Most images per request.")] = 64,
    max_pixels: Annotated[
        int, typer.Option(min=1, help="Refuse images with more decoded pixels.")
    ] = DEFAULT_MAX_PIXELS,
    request_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds before a request is answered 504.")
    ] = 60,
    max_batch: Annotated[
        int | None, typer.Option(min=1, help="Images per encoder call (default: provider's).")
    ] = None,
    max_wait_ms: Annotated[
        float | None,
        typer.Option(min=0, help="Wait to fill a batch, ms (default: 0 on the CPU, 2 on GPUs)."),
    ] = None,
    queue_images: Annotated[
        int, typer.Option(min=1, help="Images held at once; beyond it requests get 503.")
    ] = 256,
    decode_workers: Annotated[int, typer.Option(min=1, help="Decoding threads.")] = 2,
    max_connections: Annotated[
        int, typer.Option(min=1, help="Open connections; beyond it 503.")
    ] = 64,
    drain_timeout: Annotated[
        float, typer.Option(min=0, help="Seconds to answer accepted requests at shutdown.")
    ] = 30,
    provenance: Annotated[
        bool, typer.Option(help="Add each image's own provenance (C2PA, XMP...) to records.")
    ] = False,
    cors_origin: Annotated[
        list[str], typer.Option(help="Allow browser calls from this origin (repeatable).")
    ] = [],  # noqa: B006
    trust_key: TrustKeys = [],  # noqa: B006
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logs.")] = 0,
) -> None:
    """Serve (see the command help)."""
    setup_logging(verbose)
    trust(trust_key)
    import uvicorn

    from ufd.runtime.methods import open_bundle
    from ufd.runtime.serve.app import create_app
    from ufd.runtime.serve.config import ServeConfig, read_api_key
    from ufd.runtime.serve.listen import bind_tcp, bind_unix

    open_bundle(bundle)  # a wrong path or a bad manifest fails here, before listening
    config = ServeConfig(
        bundle=bundle,
        host=host,
        port=port,
        method=method,
        views=views,
        precision=precision,
        provider=provider,
        threads=threads,
        api_key=read_api_key(api_key_file) if api_key_file else None,
        max_image_bytes=int(max_image_mb * MB),
        max_request_bytes=int(max_request_mb * MB),
        max_images=max_images,
        max_pixels=max_pixels,
        request_timeout=request_timeout,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        queue_images=queue_images,
        decode_workers=decode_workers,
        max_connections=max_connections,
        drain_timeout=drain_timeout,
        cors_origins=list(cors_origin),
        provenance=provenance,
    )
    sockets = [bind_tcp(host, port)]  # a busy port fails here too, before anything listens
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
            host=host,
            port=port,
            log_level="info" if verbose else "warning",
            access_log=verbose > 1,
            timeout_graceful_shutdown=int(drain_timeout) or None,
            limit_concurrency=max_connections,
        )
    )
    for sig in (signal.SIGINT, signal.SIGTERM):  # uvicorn re-raises them after draining:
        signal.signal(sig, lambda *_: None)  # a drained shutdown then exits 0
    if config.api_key is None and host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(f"warning: listening on {host} without --api-key-file", err=True)
    where = f"http://{host}:{port}" + (f" and unix:{socket_path}" if socket_path else "")
    typer.echo(f"ufd-serve: {bundle} on {where} (loading; see /readyz)", err=True)
    try:
        server.run(sockets=sockets)
    finally:
        if socket_path is not None:
            socket_path.unlink(missing_ok=True)
    if failure:
        raise typer.Exit(failure[0])


def main() -> None:
    """Console-script entry point."""
    run(app)


if __name__ == "__main__":
    main()
