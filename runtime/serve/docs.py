"""The API's pages, ``/docs`` (Swagger UI) and ``/redoc``, working offline.

FastAPI's defaults load Swagger UI and ReDoc from a CDN: on a device or an
air-gapped server they are blank pages. Here their files come from an installed
package (``fastapi-offline``, MIT, in ``ufd[serve]``) and are served under
``/docs-assets/``, so the pages need nothing but this service.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException

ASSETS = "/docs-assets"
_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")


def install_docs(app: FastAPI, title: str) -> None:
    """Add ``/docs``, ``/redoc`` and their assets (the app is made with ``docs_url=None``)."""

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{title}: API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{title}: API",
            redoc_js_url=f"{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/favicon.png",
            with_google_fonts=False,
        )

    @app.get(ASSETS + "/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        if name not in FILES:  # a fixed list: a request never names any other file
            raise HTTPException(404, f"no such asset: {name}")
        data = resources.files("fastapi_offline").joinpath("static", name).read_bytes()
        suffix = name[name.rindex(".") :]
        headers = {"Cache-Control": "public, max-age=86400"}
        return Response(data, media_type=_TYPES[suffix], headers=headers)
