"""``ufd-serve``'s HTTP API (FastAPI): the same detection as ``ufd-detect``, resident.

Routes: ``POST /v1/detect``, ``GET /v1/info``, ``GET /metrics`` (these need the
API key when one is set), ``GET /healthz``, ``GET /readyz``, the page at ``/``
and the OpenAPI description at ``/docs``. Every error is JSON ``{"error": ...}``.
The bundle is loaded and warmed in the background: ``/readyz`` answers 503
until it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException

from ufd.runtime import __version__
from ufd.runtime.detector import Detector
from ufd.runtime.errors import UfdError
from ufd.runtime.io.inputs import InputItem
from ufd.runtime.methods import method_class
from ufd.runtime.serve import loading
from ufd.runtime.serve import openapi as openapi_contract
from ufd.runtime.serve.config import ServeConfig
from ufd.runtime.serve.docs import install_docs
from ufd.runtime.serve.engine import Engine, EngineStats, Overloaded
from ufd.runtime.serve.metrics import ServeMetrics
from ufd.runtime.serve.uploads import RequestError, describe_limits, read_detect_request
from ufd.runtime.serve.videos import score_with_videos
from ufd.runtime.transforms import REUPLOAD_NAMES
from ufd.runtime.video.records import video_fields

OnFatal = Callable[[str, int], None]
"""Told why the service cannot go on, and the exit status it should end with."""

logger = logging.getLogger(__name__)
EXIT_BUNDLE, EXIT_INTERNAL = 2, 3
"""How ``ufd-serve`` ends when it cannot serve: the bundle failed to load, or a worker stopped."""


class ServiceState:
    """The loaded detector and engine, once ready."""

    def __init__(self) -> None:
        self.detector: Detector | None = None
        self.engine: Engine | None = None
        self.failure: str | None = None
        self.ready = threading.Event()


def create_app(
    config: ServeConfig,
    open_detector: Callable[[], Detector] | None = None,
    on_fatal: OnFatal = lambda message, code: None,
) -> FastAPI:
    """The service for ``config`` (``open_detector`` replaces bundle loading in tests)."""
    state, metrics = ServiceState(), ServeMetrics()
    opener = open_detector or (lambda: loading.open_detector(config))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader = threading.Thread(
            target=_load, args=(state, config, opener, metrics, on_fatal), daemon=True
        )
        loader.start()
        yield
        if state.engine is not None:
            drained = await asyncio.to_thread(state.engine.stop, config.drain_timeout)
            logger.info("engine stopped (%s)", "drained" if drained else "drain timed out")

    app = FastAPI(
        title="ufd-serve",
        version=__version__,
        description="Universal fake-image detection (UnivFD and friends) as a service.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    install_docs(app, "ufd-serve")

    app.state.ufd = state
    _install_errors(app, metrics)
    _routes(app, config, state, metrics)
    _describe_api(app, config, state)
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization"],
        )
    return app


def _load(
    state: ServiceState,
    config: ServeConfig,
    opener: Callable[[], Detector],
    metrics: ServeMetrics,
    on_fatal: OnFatal,
) -> None:
    """Load the bundle, load every method, run one warm-up image, start the engine."""
    try:
        started = time.perf_counter()
        detector = opener()
        loading.warm(detector, config)
        state.engine = loading.start_engine(
            detector,
            config,
            EngineStats(metrics.on_batch, metrics.on_records),
            on_failure=lambda reason: _worker_died(state, metrics, on_fatal, reason),
        )
        state.detector = detector
        metrics.ready.set(1)
        state.ready.set()
        logger.warning(
            "ready: %s (%s on %s) in %.1f s",
            config.bundle,
            detector.precision,
            detector.provider,
            time.perf_counter() - started,
        )
    except Exception as e:
        state.failure = f"{e}" if isinstance(e, UfdError) else f"{type(e).__name__}: {e}"
        logger.error("cannot serve %s: %s", config.bundle, state.failure, exc_info=True)
        on_fatal(state.failure, EXIT_BUNDLE)


def _describe_api(app: FastAPI, config: ServeConfig, state: ServiceState) -> None:
    """``/openapi.json`` for the bundle being served (its methods and k), once it is loaded."""
    from fastapi.openapi.utils import get_openapi

    from ufd.runtime.registry import method_names

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        detector = state.detector
        methods = detector.methods.available() if detector is not None else method_names()
        k_max = detector.methods.largest_k() if detector is not None else None
        body = openapi_contract.detect_body(
            methods, k_max, config.max_images, config.max_image_bytes
        )
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schema = openapi_contract.complete(schema, body)
        if detector is not None:  # final once the bundle is loaded
            app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


def _worker_died(
    state: ServiceState, metrics: ServeMetrics, on_fatal: OnFatal, reason: str
) -> None:
    """Not ready any more; the process ends non-zero (exit 3) so that a supervisor restarts it."""
    state.failure = reason
    state.ready.clear()
    metrics.ready.set(0)
    on_fatal(reason, EXIT_INTERNAL)


def _install_errors(app: FastAPI, metrics: ServeMetrics) -> None:
    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, exc.status, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        headers = getattr(exc, "headers", None)  # 405 carries Allow
        return JSONResponse({"error": str(exc.detail)}, exc.status_code, headers=headers)

    @app.middleware("http")
    async def measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        route = request.url.path if request.url.path in _ROUTES else "other"
        try:
            response = await call_next(request)
        except Exception as e:
            logger.error("unhandled error on %s: %s", route, e, exc_info=True)
            response = JSONResponse({"error": f"internal error: {type(e).__name__}"}, 500)
        metrics.on_request(route, response.status_code, time.perf_counter() - started)
        return response


_ROUTES = (
    "/",
    "/healthz",
    "/readyz",
    "/metrics",
    "/v1/info",
    "/v1/detect",
    "/docs",
    "/openapi.json",
)


def _routes(app: FastAPI, config: ServeConfig, state: ServiceState, metrics: ServeMetrics) -> None:
    def require_key(request: Request) -> None:
        if not config.key_matches(request.headers.get("authorization")):
            raise RequestError(
                401,
                "missing or wrong API key: send the header Authorization: Bearer KEY",
                {"WWW-Authenticate": "Bearer"},
            )

    def ready_detector() -> tuple[Detector, Engine]:
        if state.detector is None or state.engine is None:
            reason = state.failure or "the bundle is still loading"
            raise RequestError(503, f"not ready: {reason}", {"Retry-After": "5"})
        return state.detector, state.engine

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(resources.files("ufd.runtime.serve").joinpath("page.html").read_text())

    @app.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, Any]:
        return {"status": "alive"}

    @app.get("/readyz", summary="The bundle is loaded and warmed, the worker runs (503 if not)")
    async def readyz() -> JSONResponse:
        engine = state.engine
        if state.ready.is_set() and engine is not None and engine.alive:
            return JSONResponse({"status": "ready"})
        reason = state.failure or (engine and engine.failure) or "loading the bundle"

        return JSONResponse({"error": f"not ready: {reason}"}, 503, headers={"Retry-After": "5"})

    @app.get("/metrics", summary="Prometheus metrics (ufd_*)")
    async def prometheus(request: Request) -> Response:
        require_key(request)
        depth = state.engine.depth if state.engine else 0
        return Response(metrics.exposition(depth), media_type=metrics.content_type)

    @app.get("/v1/info", summary="Model, precisions, methods, thresholds, parity, limits")
    async def info(request: Request) -> dict[str, Any]:
        require_key(request)
        detector, _ = ready_detector()
        return describe(detector, config)

    @app.post("/v1/detect", summary="Score images")
    async def detect(request: Request) -> JSONResponse:
        """One record per image, in request order, with the fields of ufd-detect's JSONL."""
        require_key(request)
        detector, engine = ready_detector()
        headers = request.headers
        parsed = await read_detect_request(
            headers.get("content-type"), headers.get("content-length"), request.stream(), config
        )
        method = parsed.method
        if method is None:
            method = request.query_params.get("method") or config.method
        elif not re.match(openapi_contract.method_pattern(detector.methods.available()), method):
            try:  # an unknown or missing method: the planner's own words
                detector.plan(method[:200], parsed.k, views=parsed.views or 0)
            except UfdError as e:
                raise RequestError(400, str(e)) from e
            raise RequestError(
                400,
                f"method {method[:100]!r}: give all, or methods of this bundle separated by "
                f"commas, no spaces ({', '.join(detector.methods.available())})",
            )

        try:
            views = config.views if parsed.views is None else parsed.views
            methods, options = detector.plan(method, parsed.k, views=views)
        except UfdError as e:
            raise RequestError(400, str(e)) from e
        items = [InputItem(u.name, data=u.data) for u in parsed.images]
        loaded = [detector.methods.get(m) for m in methods]
        scoring = score_with_videos(
            engine, items, methods, options, loaded, config.video, config.provenance
        )
        try:
            records, videos = await asyncio.wait_for(scoring, config.request_timeout)
        except Overloaded as e:
            raise RequestError(503, f"overloaded: {e}; retry shortly", {"Retry-After": "1"}) from e
        except TimeoutError as e:
            raise RequestError(504, f"not answered within {config.request_timeout:g} s") from e
        fields = detector.fields(methods, options.views)
        if videos:
            fields = (*fields[:-1], *video_fields(loaded), "error")
        return JSONResponse({"records": [r.to_dict(fields) for r in records]})


def device_parity(detector: Detector) -> dict[str, Any] | None:
    """The graph this service runs as measured here, and the faster ones auto passed over."""
    if detector.parity is None:
        return None
    passed = [p.to_dict() for p in detector.passed_over]
    return detector.parity.to_dict() | {"passed_over": passed}


def describe(detector: Detector, config: ServeConfig) -> dict[str, Any]:
    """What ``GET /v1/info`` reports."""
    manifest = detector.bundle.manifest
    methods = {}
    for name in detector.methods.available():
        method = detector.methods.get(name)
        calibration = method.entry.calibration
        methods[name] = {
            "summary": method_class(name).summary,
            "fields": list(method_class(name).fields),
            "threshold": method.threshold,
            "calibration": None if calibration is None else vars(calibration),
        }
    return {
        "ufd_version": __version__,
        "model": vars(manifest.model),
        "precisions": manifest.precisions,
        "precision": detector.precision,
        "provider": detector.provider,
        "default_method": config.method,
        "views": {"default": config.views, "available": list(REUPLOAD_NAMES)},
        "methods": methods,
        "parity": {p: vars(r) for p, r in manifest.parity.items()},
        "device_parity": device_parity(detector),
        "notes": manifest.notes,
        "limits": describe_limits(config),
    }
