"""Start KServe's REST and gRPC servers for one bundle, bound where ``ufd-serve`` binds.

KServe's ``ModelServer`` listens on every interface; ufd binds 127.0.0.1 unless
told otherwise, so this module assembles the same pieces (``DataPlane``,
``RESTServer``, the gRPC servicer) with the address, the API key and the
request-size bound of :class:`~ufd.runtime.serve.config.ServeConfig`. The
protocol itself (routes, tensors, binary extension, error codes) is KServe's.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from grpc import aio
from kserve import ModelRepository
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.errors import InferenceError
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from kserve.protocol.rest.server import RESTServer

from ufd.runtime.oip.model import UfdModel
from ufd.runtime.oip.scaling import ReplicaOptions
from ufd.runtime.serve.config import ServeConfig

logger = logging.getLogger(__name__)
OPEN_PATHS = ("/v2/health/live", "/v2/health/ready")
"""Routes a probe may call without the API key (Kubernetes liveness and readiness)."""

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class V2Options:
    """What ``--protocol v2`` adds to ufd-serve's settings.

    Attributes:
        model_name: the model's name in ``/v2/models/NAME``.
        grpc_port: the gRPC port; ``None``: REST only.
        replicas: run the model as Ray Serve replicas (``None``: in this process).
    """

    model_name: str = "ufd"
    grpc_port: int | None = 8001
    replicas: ReplicaOptions | None = None


def serve_v2(config: ServeConfig, options: V2Options, say: Callable[[str], None]) -> int:
    """Load the bundle, then serve it over v2 REST (and gRPC) until SIGTERM/SIGINT: 0.

    Raises:
        UfdError: the bundle does not load, or the replicas do not start (before
            anything listens).
    """
    name = options.model_name
    if options.replicas is None:
        model: Any = UfdModel(name, config)
        model.load()
    else:
        from ufd.runtime.oip.replicas import deploy

        model = deploy(config, name, options.replicas)
    repository = ModelRepository()
    repository.update(model)
    dataplane = DataPlane(model_registry=repository)
    extension = ModelRepositoryExtension(model_registry=repository)
    rest = _RestServer(FASTAPI_APP_IMPORT_STRING, dataplane, extension, config.port)
    rest.config.host = config.host
    rest.config.limit_concurrency = config.max_connections
    rest.config.timeout_graceful_shutdown = int(config.drain_timeout) or None
    _guard(config)
    rpc = (
        _GrpcServer(config, options.grpc_port, dataplane, extension) if options.grpc_port else None
    )
    for sig in (signal.SIGINT, signal.SIGTERM):  # uvicorn re-raises them after draining:
        signal.signal(sig, lambda *_: None)  # a drained shutdown then exits 0
    where = f"http://{config.host}:{config.port}/v2/models/{name}"
    where += f" and grpc {config.host}:{options.grpc_port}" if options.grpc_port else ""
    if options.replicas is not None:
        where += f" ({options.replicas.replicas} Ray Serve replicas)"
    say(f"ufd-serve: {config.bundle} on {where} (Open Inference Protocol v2)")
    asyncio.run(_run(rest, rpc, model))
    if options.replicas is not None:
        from ufd.runtime.oip.replicas import shutdown

        shutdown()
    return 0


async def _run(rest: RESTServer, rpc: _GrpcServer | None, model: Any) -> None:
    started = asyncio.create_task(rpc.start()) if rpc else None
    try:
        await rest.start()  # returns once SIGTERM/SIGINT has drained the REST requests
    finally:
        if rpc is not None and started is not None:
            await rpc.stop()
            started.cancel()
        if isinstance(model, UfdModel):
            await asyncio.to_thread(model.stop)


def _guard(config: ServeConfig) -> None:
    """Bound every request body and, with a key, require it (health probes excepted)."""
    import kserve.model_server

    kserve.model_server.app.add_middleware(_Limits, config=config)


class _RestServer(RESTServer):  # type: ignore[misc]
    """KServe's REST server; a BYTES tensor it cannot read as text is a short 400."""

    def _add_exception_handlers(self, app: Any) -> None:
        super()._add_exception_handlers(app)
        app.add_exception_handler(InferenceError, _inference_error)
        try:  # with --replicas: a replica that dies under a request
            from ray.exceptions import RayActorError
        except ImportError:
            return
        app.add_exception_handler(RayActorError, _replica_lost)


async def _replica_lost(request: Any, error: Exception) -> Any:
    """A replica stopped while it held the request: 503, retry (Ray Serve starts another)."""
    from fastapi.responses import JSONResponse

    logger.warning("a replica stopped under a request: %s", str(error).splitlines()[0])
    message = "a replica stopped while scoring this request (Ray Serve starts another); retry it"
    return JSONResponse({"error": message}, 503, {"Retry-After": "1"})


async def _inference_error(request: Any, error: InferenceError) -> Any:
    """A REST BYTES tensor that is not UTF-8 text: a client's error, said briefly.

    KServe answers it 500 with the whole tensor in the message (raw image bytes
    through the binary extension).
    """
    from fastapi.responses import JSONResponse

    reason = str(error.reason or error)
    if "Failed to encode" in reason and "UTF-8" in reason:
        return JSONResponse(
            {"error": "BYTES over REST are text: send each image file base64-encoded"}, 400
        )
    return JSONResponse({"error": reason[:2000]}, 500)


class _Limits:
    """ASGI middleware: 413 over ``max_request_bytes`` (declared or streamed), 401 without key."""

    def __init__(self, app: App, config: ServeConfig) -> None:
        self.app, self.config = app, config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if scope["path"] not in OPEN_PATHS and not self.config.key_matches(
            headers.get("authorization")
        ):
            await _answer(send, 401, "this server needs 'Authorization: Bearer KEY'")
            return
        limit = self.config.max_request_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _answer(send, 413, f"request larger than {limit} bytes")
            return
        started = False

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, _counted(receive, limit), tracked)
        except _TooLarge as e:
            if started:
                raise
            await _answer(send, 413, str(e))


def _counted(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def counted() -> dict[str, Any]:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise _TooLarge(f"request larger than {limit} bytes")
        return message

    return counted


class _TooLarge(Exception):
    pass


async def _answer(send: Send, status: int, error: str) -> None:
    import json

    body = json.dumps({"error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _KeyInterceptor(aio.ServerInterceptor):  # type: ignore[misc]
    """gRPC: every call but the health checks carries ``authorization: Bearer KEY``."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        metadata = dict(details.invocation_metadata or ())
        open_call = details.method.endswith(("/ServerLive", "/ServerReady"))
        if open_call or self.config.key_matches(metadata.get("authorization")):
            return await continuation(details)

        async def refuse(request: Any, context: aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "authorization: Bearer KEY needed")

        return grpc.unary_unary_rpc_method_handler(refuse)


class _GrpcServer:
    """KServe's v2 gRPC servicer on ``host:port``, with ufd's message bound and key."""

    def __init__(
        self,
        config: ServeConfig,
        port: int,
        dataplane: DataPlane,
        extension: ModelRepositoryExtension,
    ) -> None:
        self.config, self.port = config, port
        self.servicer = InferenceServicer(dataplane, extension)
        self.server: aio.Server | None = None

    async def start(self) -> None:
        limit = self.config.max_request_bytes
        interceptors = [ExceptionToStatusInterceptor()]
        if self.config.api_key is not None:
            interceptors.insert(0, _KeyInterceptor(self.config))
        self.server = aio.server(
            futures.ThreadPoolExecutor(max_workers=4),
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
            ],
        )
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            self.servicer, self.server
        )
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        self.server.add_insecure_port(f"{host}:{self.port}")
        await self.server.start()
        await self.server.wait_for_termination()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=self.config.drain_timeout)
