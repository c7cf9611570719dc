"""The OpenAPI document as the app really answers: every error body and the statuses each route can return.

FastAPI documents only successes and its own 422 (with ``detail`` as an array, which we never send). Every
error we send is ``{"code", "detail": str, ...}`` (api/errors.py); a validation error adds ``errors``.
Statuses per route follow from what the route is: authenticated routes can answer 401/403, routes with an id
in the path 404, writes 409 (state) and 413 (body size), multipart uploads 415, every route 422 and 429.
"""
from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMAS = {
    "Error": {"type": "object", "required": ["code", "detail"], "additionalProperties": True,
              "properties": {"code": {"type": "string", "description": "stable snake_case code"},
                             "detail": {"type": "string", "description": "human text"}}},
    "ValidationIssue": {"type": "object", "properties": {"loc": {"type": "array", "items": {}},
                                                         "msg": {"type": "string"}, "type": {"type": "string"}}},
    # A request that fails schema validation has code "validation_error" and ``errors``; a value refused by a
    # domain rule (also 422) has its own code and no ``errors``.
    "InvalidInputError": {"type": "object", "required": ["code", "detail"], "additionalProperties": True,
                          "properties": {"code": {"type": "string"}, "detail": {"type": "string"},
                                         "errors": {"type": "array",
                                                    "items": {"$ref": "#/components/schemas/ValidationIssue"}}}},
}
DESCRIPTIONS = {400: "Refused by a business rule", 401: "Not authenticated", 403: "Not allowed for this role",
                404: "Not found, or not yours", 409: "The current state does not allow this",
                413: "Body or file too large, or a quota reached", 415: "File type not accepted",
                422: "Invalid input", 429: "Too many requests", 503: "A dependency is unavailable"}
WRITE_METHODS = {"post", "put", "patch", "delete"}


def _statuses(path: str, method: str, op: dict[str, Any]) -> set[int]:
    out = {400, 422, 429, 503}
    if op.get("security") or path.startswith("/v1/auth/"):
        out |= {401, 403}
    if "{" in path:
        out.add(404)
    if method in WRITE_METHODS:
        out |= {404, 409, 413}
    if "multipart/form-data" in op.get("requestBody", {}).get("content", {}):
        out.add(415)
    return out


def _error_response(status: int) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/InvalidInputError"} if status == 422 else ERROR
    return {"description": DESCRIPTIONS[status], "content": {"application/json": {"schema": schema}}}


def document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with honest error responses (built once)."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas.update(ERROR_SCHEMAS)
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            responses = op.setdefault("responses", {})
            for status in sorted(_statuses(path, method, op)):
                responses[str(status)] = _error_response(status)
    app.openapi_schema = doc
    return doc


def install(app: FastAPI) -> None:
    """Serve ``document`` at /openapi.json."""
    app.openapi = lambda: document(app)  # type: ignore[method-assign]
