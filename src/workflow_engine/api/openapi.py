"""The OpenAPI document's shared parts: the bearer key scheme, and the error body
``{"error": {code, message, details}}`` with the statuses each operation can answer with
(SPEC section 4); FastAPI documents the rest from the routes and their models (request
bodies: ``api/schemas.py``; answers: ``api/models.py``, attached by ``responses=``)."""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from workflow_engine.api import models
from workflow_engine.api.schemas import Body

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
    400: "The body is not JSON.",
    401: "No key, or an unknown one (when the server has keys).",
    403: "The key may not do this (another tenant's user, or no admin scope).",
    404: "No such execution, workflow, schedule, connection or queue for this tenant.",
    409: "Conflicts with the current state (already finished, idempotency key reused).",
    413: "The body is larger than WFE_MAX_BODY_BYTES.",
    422: "Invalid: every problem with its JSON path in `details`.",
    429: "The tenant's rate or cap of executions is reached (`Retry-After`).",
    503: "Redis or the store is unreachable: nothing was written; retry.",
}


def _statuses(path: str, method: str, operation: dict[str, Any]) -> list[int]:
    if not path.startswith("/api/"):
        return []
    found = [401, 503]
    if "{" in path:
        found.append(404)
    if operation.get("parameters"):  # a parameter of the wrong type, or out of its bounds
        found.append(422)
    if method in ("post", "put", "patch"):
        found += [413, 422]
    if "requestBody" in operation:
        found.append(400)
    if path.startswith("/api/admin/"):
        found.append(403)
    if path == "/api/workflow/execute":
        found += [403, 404, 409, 429]  # (404: no such stored workflow)
    if path.startswith(("/api/workflow/cancel/", "/api/workflow/resume/", "/api/workflow/rerun/")):
        found.append(409)
    if path == "/api/callbacks/secret":
        found += [403, 404]  # (not the tenant's own key; no key configured)
    return sorted(set(found))


def _model_only(operation: dict[str, Any]) -> None:
    """A route returns a ``dict`` and documents its answer with ``responses={status:
    {"model": ...}}`` (documentation only: the answer is not checked against it);
    FastAPI merges the model's ``$ref`` into the schema it derived from the return
    annotation (``type: object``, ``title``): keep the model alone."""
    for response in operation.get("responses", {}).values():
        for media in response.get("content", {}).values():
            schema = media.get("schema")
            if isinstance(schema, dict) and "$ref" in schema:
                media["schema"] = {"$ref": schema["$ref"]}


def _documented_models() -> list[type[BaseModel]]:
    """The answers' models (``api/models.py``) and the request bodies (``Body``'s subclasses,
    wherever a route defines one)."""
    found = [
        value
        for value in vars(models).values()
        if isinstance(value, type)
        and issubclass(value, BaseModel)
        and value.__module__ == models.__name__
    ]
    pending: list[type[BaseModel]] = [Body]
    while pending:
        subclasses = pending.pop().__subclasses__()
        found += subclasses
        pending += subclasses
    return found


def _examples_by_name() -> dict[str, list[Any]]:
    """Each model's examples by its component's name, as the model states them. FastAPI
    renders the document without any ``null`` (``exclude_none``), in examples too: an
    example's nullable field would go missing, and the example break its own schema."""
    found: dict[str, list[Any]] = {}
    for model in _documented_models():
        schema = model.model_json_schema()
        for name, part in [(model.__name__, schema), *schema.get("$defs", {}).items()]:
            if "examples" in part:
                found[name] = part["examples"]
    return found


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
        for name, examples in _examples_by_name().items():
            if "examples" in components["schemas"].get(name, {}):
                components["schemas"][name]["examples"] = examples
        components["securitySchemes"] = {
            "bearerKey": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key of WFE_API_KEYS (none needed when it is empty).",
            }
        }
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                _model_only(operation)
                if not path.startswith("/api/"):
                    continue
                operation["security"] = [{"bearerKey": []}]
                responses = operation.setdefault("responses", {})
                for status in _statuses(path, method, operation):
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
