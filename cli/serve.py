"""``ufd-serve``: a resident detection service (extra ``ufd[serve]``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ufd.cli.common import handle_errors, run, setup_logging, trust
from ufd.cli.options import (
    BundleDir,
    Fps,
    GifAsVideo,
    Keyframes,
    MaxFrames,
    MaxPixels,
    Method,
    Precision,
    Provider,
    Threads,
    TrustKeys,
    Verbose,
    VideoRule,
    VideoTimeout,
    Views,
)
from ufd.runtime.io.policy import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    from ufd.runtime.oip.scaling import ReplicaOptions
    from ufd.runtime.serve.config import ServeConfig

app = typer.Typer(add_completion=False, rich_markup_mode=None)


class Protocol(StrEnum):
    """What ``ufd-serve`` speaks."""

    ufd = "ufd"
    v2 = "v2"


@app.command(
    help=(
        "Serve a bundle over HTTP: POST /v1/detect (multipart 'file' parts or JSON base64 "
        "images) answers one record per image with the fields of ufd-detect's JSONL; "
        "GET /v1/info, /metrics (Prometheus), /healthz, /readyz; a page at / and the API "
        "at /docs. Binds 127.0.0.1 unless told otherwise. Loads and warms the bundle once; "
        "SIGTERM/SIGINT answer every accepted request, then exit 0. --method and --views "
        "are the defaults of requests that name none. --protocol v2 speaks the Open "
        "Inference Protocol (KServe v2, as Triton does) instead, through KServe's own server "
        "(ufd[kserve]): GET /v2/health/live|ready, GET /v2/models/NAME, POST "
        "/v2/models/NAME/infer over REST on --port and gRPC on --grpc-port."
    )
)
@handle_errors
def serve(
    bundle: BundleDir,
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
    protocol: Annotated[
        Protocol,
        typer.Option(
            help="ufd: this service's own API (/v1/detect, the page). v2: the Open Inference "
            "Protocol (KServe v2), for Triton and KServe clients: input 'image' (BYTES, one "
            "encoded image per element), outputs one tensor per record field.",
        ),
    ] = Protocol.ufd,
    grpc_port: Annotated[
        int,
        typer.Option(min=0, max=65535, help="--protocol v2: gRPC port (0: no gRPC)."),
    ] = 8001,
    model_name: Annotated[
        str, typer.Option(help="--protocol v2: the model's name in /v2/models/NAME.")
    ] = "ufd",
    replicas: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="--protocol v2: run the model as this many Ray Serve replicas (on the Ray "
            "cluster of --ray-address, else a local one); each measures its own node's "
            "parity. Needs ufd[kserve-ray].",
        ),
    ] = None,
    max_replicas: Annotated[
        int | None,
        typer.Option(min=1, help="--replicas: autoscale up to this many by requests in flight."),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(help="--replicas: a running Ray cluster (ray start --head's address)."),
    ] = None,
    cpus_per_replica: Annotated[
        float,
        typer.Option(
            min=0.1,
            help=(
                "--replicas: CPUs Ray reserves per replica; each runs that many "
                "threads unless --threads is given."
            ),
        ),
    ] = 1.0,
    method: Method = "linear",
    views: Views = 0,
    precision: Precision = None,
    provider: Provider = "auto",
    threads: Threads = None,
    api_key_file: Annotated[
        Path | None,
        typer.Option(help="Require 'Authorization: Bearer KEY' (KEY: this file's first line)."),
    ] = None,
    max_image_mb: Annotated[float, typer.Option(min=0.001, help="Largest image, MB.")] = 32,
    max_request_mb: Annotated[float, typer.Option(min=0.001, help="Largest request, MB.")] = 64,
    max_images: Annotated[int, typer.Option(min=1, help="Most images per request.")] = 64,
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS,
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
        list[str] | None, typer.Option(help="Allow browser calls from this origin (repeatable).")
    ] = None,
    fps: Fps = 1.0,
    max_frames: MaxFrames = 32,
    keyframes: Keyframes = False,
    video_rule: VideoRule = "mean",
    video_timeout: VideoTimeout = 600.0,
    gif_as_video: GifAsVideo = False,
    trust_key: TrustKeys = None,
    verbose: Verbose = 0,
) -> None:
    """Serve (see the command help)."""
    setup_logging(verbose)
    trust(trust_key)
    from ufd.runtime.serve.config import MB, ServeConfig, read_api_key
    from ufd.runtime.serve.run import serve as run_service
    from ufd.runtime.video.frames import VideoOptions
    from ufd.runtime.video.run import VideoRun

    timeout = min(video_timeout, request_timeout)  # a video never outlives its request
    sampling = VideoOptions(fps, max_frames, keyframes, timeout=timeout, max_pixels=max_pixels)

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
        cors_origins=list(cors_origin or []),
        provenance=provenance,
        video=VideoRun(sampling, video_rule, gifs=gif_as_video),
    )
    say = lambda line: typer.echo(line, err=True)  # noqa: E731
    if protocol is Protocol.ufd and replicas is not None:
        raise typer.BadParameter("--replicas needs --protocol v2", param_hint="--replicas")
    if protocol is Protocol.v2:
        scale = _replica_options(replicas, max_replicas, ray_address, cpus_per_replica)
        v2 = (model_name, grpc_port, scale)
        code = _serve_v2(config, socket_path, cors_origin, v2, say)
    else:
        code = run_service(config, socket_path, verbose, say)
    if code:
        raise typer.Exit(code)


def _replica_options(
    replicas: int | None, max_replicas: int | None, ray_address: str | None, cpus: float
) -> ReplicaOptions | None:
    from ufd.runtime.errors import UsageError

    if replicas is None:
        if max_replicas is not None or ray_address is not None:
            raise UsageError("--max-replicas and --ray-address need --replicas N")
        return None
    if max_replicas is not None and max_replicas < replicas:
        raise UsageError(f"--max-replicas {max_replicas} is below --replicas {replicas}")
    from ufd.runtime.oip.scaling import ReplicaOptions

    return ReplicaOptions(replicas, max_replicas, ray_address, cpus)


def _serve_v2(
    config: ServeConfig,
    socket_path: Path | None,
    cors_origin: list[str] | None,
    v2: tuple[str, int, ReplicaOptions | None],
    say: Callable[[str], None],
) -> int:
    """``--protocol v2``: KServe's server over the bundle (options of the page refused)."""
    from ufd.runtime.errors import UsageError

    model_name, grpc_port, replicas = v2
    if socket_path is not None or cors_origin:
        raise UsageError("--socket and --cors-origin belong to --protocol ufd; leave them out")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", model_name):
        raise UsageError("--model-name: letters, digits, '_', '.', '-' (up to 64)")
    from ufd.runtime.oip.server import V2Options, serve_v2

    return serve_v2(config, V2Options(model_name, grpc_port or None, replicas), say)


def main() -> None:
    """Console-script entry point."""
    run(app)


if __name__ == "__main__":
    main()
