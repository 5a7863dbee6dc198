"""The service's OpenAPI contract: every body, every answer and every error it can give.

``/openapi.json`` describes exactly what ``POST /v1/detect`` accepts for the
bundle being served (its methods, the ``k`` its banks allow, the request
limits) and every status each route can answer, so that a client (and
schemathesis, in the tests) can rely on it: a request the schema allows is
answered 200, anything else gets a documented 4xx with ``{"error": ...}``.
"""

from __future__ import annotations

from typing import Any

from ufd.runtime.serve.uploads import MAX_NAME, MAX_VIEWS

ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}
RECORD = {
    "type": "object",
    "properties": {"path": {"type": "string"}, "error": {"type": ["string", "null"]}},
    "required": ["path", "error"],
    "additionalProperties": True,
}


def error(description: str) -> dict[str, Any]:
    """A documented error answer."""
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


UNAUTHORIZED = {401: error("missing or wrong API key (Authorization: Bearer KEY)")}
NOT_READY = {503: error("not ready (loading), the worker stopped, or full: retry later")}
RESPONSES: dict[str, dict[int, dict[str, Any]]] = {
    "/healthz": {},
    "/readyz": NOT_READY,
    "/metrics": UNAUTHORIZED,
    "/v1/info": UNAUTHORIZED | NOT_READY,
    "/v1/detect": UNAUTHORIZED
    | NOT_READY
    | {
        400: error(
            "malformed: bad JSON, multipart or base64, no image, unknown method, bad k or views"
        ),
        413: error("too large: an image, the body, or too many images"),
        415: error("not multipart/form-data or application/json"),
        504: error("not answered within --request-timeout"),
    },
}
METRICS_CONTENT = {"text/plain": {"schema": {"type": "string"}}}


def method_pattern(methods: tuple[str, ...]) -> str:
    """A regular expression for ``all`` or a comma-separated list of ``methods``."""
    names = "|".join(sorted(methods, key=len, reverse=True))
    return f"^(all|({names})(,({names}))*)$"


def detect_body(
    methods: tuple[str, ...], k_max: int | None, max_images: int, max_image_bytes: int
) -> dict[str, Any]:
    """The request body of ``POST /v1/detect`` for a bundle offering ``methods``."""
    method = {"type": "string", "pattern": method_pattern(methods), "example": ",".join(methods)}
    k: dict[str, Any] = {"type": "integer", "minimum": 1}
    if k_max is not None:
        k["maximum"] = k_max
    json_k = k | {"type": ["integer", "null"]}  # JSON may say null: the default k, method
    json_method = method | {"type": ["string", "null"]}
    views: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": MAX_VIEWS}
    json_views = views | {"type": ["integer", "null"]}  # null: the service's --views
    files = {  # one or more parts; multipart cannot tell one part from a list of one
        "minItems": 1,
        "maxItems": max_images,
        "items": {  # any bytes: what does not decode gets an error record, not a 4xx
            "format": "binary",
            "maxLength": max_image_bytes,
        },
    }
    image = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": MAX_NAME},
            "data": {
                "type": "string",
                "format": "byte",
                "maxLength": (max_image_bytes + 2) // 3 * 4,
            },
        },
        "required": ["data"],
        "additionalProperties": False,
    }
    images = {"type": "array", "minItems": 1, "maxItems": max_images, "items": image}
    return {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": files, "method": method, "k": k, "views": views},
                    "required": ["file"],
                    "additionalProperties": False,
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "images": images,
                        "method": json_method,
                        "k": json_k,
                        "views": json_views,
                    },
                    "required": ["images"],
                    "additionalProperties": False,
                }
            },
        },
    }


def detect_answer() -> dict[str, Any]:
    """The 200 answer of ``POST /v1/detect``: one record per image, in order."""
    records = {"type": "array", "items": {"$ref": "#/components/schemas/Record"}}
    schema = {"type": "object", "properties": {"records": records}, "required": ["records"]}
    return {
        "description": "one record per image",
        "content": {"application/json": {"schema": schema}},
    }


def complete(schema: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's generated schema, with the detect body, the answers and the shared types."""
    paths = schema["paths"]
    for path, item in paths.items():
        for operation in item.values():
            operation.setdefault("responses", {}).update(
                {str(code): answer for code, answer in RESPONSES.get(path, {}).items()}
            )
    detect = paths["/v1/detect"]["post"]
    detect["requestBody"] = body
    detect["responses"]["200"] = detect_answer()
    paths["/metrics"]["get"]["responses"]["200"]["content"] = METRICS_CONTENT
    shared = schema.setdefault("components", {}).setdefault("schemas", {})
    shared |= {"Error": ERROR, "Record": RECORD}
    return schema
