"""The OpenAPI document's shared parts: the bearer key scheme, and the error body
``{"error": {code, message, details}}`` with the statuses each operation can answer with
(SPEC section 4); FastAPI documents the rest from the routes and their models."""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "example": "invalid"},
                "message": {"type": "string", "example": "the request is invalid"},
                "details": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "path": {"type": "string", "example": "nodes[0].type"},
                            "message": {"type": "string"},
                            "code": {"type": "string"},
                        },
                    },
                },
            },
        }
    },
}
ERRORS: Final[dict[int, str]] = {
    401: "No key, or an unknown one (when the server has keys).",
    403: "The key may not do this (another tenant's user, or no admin scope).",
    404: "No such execution, workflow, schedule, connection or queue for this tenant.",
    409: "Conflicts with the current state (already finished, idempotency key reused).",
    413: "The body is larger than WFE_MAX_BODY_BYTES.",
    422: "Invalid: every problem with its JSON path in `details`.",
    429: "The tenant's rate or cap of executions is reached (`Retry-After`).",
    503: "Redis or the store is unreachable: nothing was written; retry.",
}


def _statuses(path: str, method: str) -> list[int]:
    if not path.startswith("/api/"):
        return []
    found = [401, 503]
    if "{" in path:
        found.append(404)
    if method in ("post", "put", "patch"):
        found += [413, 422]
    if path.startswith("/api/admin/"):
        found.append(403)
    if path == "/api/workflow/execute":
        found += [403, 409, 429]
    if path.startswith(("/api/workflow/cancel/", "/api/workflow/resume/")):
        found.append(409)
    return sorted(set(found))


def install_openapi(app: FastAPI) -> None:
    """Add the bearer scheme and the documented errors to ``app``'s OpenAPI document."""

    def document() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
        components["securitySchemes"] = {
            "bearerKey": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key of WFE_API_KEYS (none needed when it is empty).",
            }
        }
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                if not path.startswith("/api/"):
                    continue
                operation["security"] = [{"bearerKey": []}]
                responses = operation.setdefault("responses", {})
                for status in _statuses(path, method):
                    if status == 422:  # (FastAPI's own 422 is not the shape we answer with)
                        responses.pop("422", None)
                    responses.setdefault(
                        str(status),
                        {
                            "description": ERRORS[status],
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Error"}
                                }
                            },
                        },
                    )
        if "HTTPValidationError" not in str(schema.get("paths")):  # (and what only it uses)
            components["schemas"].pop("HTTPValidationError", None)
            components["schemas"].pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = document  # type: ignore[method-assign]
