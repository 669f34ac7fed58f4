"""The error shape of SPEC section 4 — ``{"error": {"code", "message", "details"}}`` — and the
mapping from exceptions to status codes. Never a stack trace."""

from __future__ import annotations

from typing import Any

import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from workflow_engine.api.responses import FastJSONResponse
from workflow_engine.definition.expressions import join_path
from workflow_engine.errors import (
    AnswerValidationError,
    DefinitionError,
    InputValidationError,
    InvalidRequest,
)
from workflow_engine.jsonvalues import MAX_DEPTH
from workflow_engine.monitor.logging import get_logger
from workflow_engine.queue.fairness import TenantBusy
from workflow_engine.queue.queues import UnknownQueue
from workflow_engine.queue.submit import Conflict, NotFound, QueueFull, QueueUnavailable
from workflow_engine.store.base import StoreUnavailable

log = get_logger(__name__)


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> FastJSONResponse:
    return FastJSONResponse(
        {"error": {"code": code, "message": message, "details": details or []}},
        status_code=status,
        headers=headers,
    )


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "invalid",
    429: "rate_limited",
    503: "unavailable",
}


def _request_problems(exc: RequestValidationError) -> tuple[bool, list[dict[str, Any]]]:
    """(malformed JSON?, problems with JSON paths into the body or the query)."""
    problems = []
    malformed = False
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            malformed = True
        loc = list(err.get("loc", ()))
        where = loc.pop(0) if loc and loc[0] in {"body", "query", "path", "header"} else "body"
        path = ""
        for part in loc:
            path = f"{path}[{part}]" if isinstance(part, int) else join_path(path, str(part))
        message = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            message = f"unknown field '{loc[-1]}'" if loc else message
        problems.append({"path": path or "$", "message": message, "code": where})
    return malformed, problems


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> FastJSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(_: Request, exc: RequestValidationError) -> FastJSONResponse:
        malformed, problems = _request_problems(exc)
        if malformed:
            return error_response(400, "bad_request", "the request body is not valid JSON")
        return error_response(422, "invalid", "the request is invalid", problems)

    @app.exception_handler(DefinitionError)
    async def definition_invalid(_: Request, exc: DefinitionError) -> FastJSONResponse:
        error = invalid_definition(exc, "workflowDefinition")
        return error_response(error.status, error.code, error.message, error.details)

    @app.exception_handler(InputValidationError)
    async def inputs_invalid(_: Request, exc: InputValidationError) -> FastJSONResponse:
        details = [p.to_dict() for p in exc.problems]
        return error_response(
            422, "invalid_inputs", f"the inputs have {len(details)} problem(s)", details
        )

    @app.exception_handler(InvalidRequest)
    async def request_impossible(_: Request, exc: InvalidRequest) -> FastJSONResponse:
        details = [p.to_dict() for p in exc.problems]
        return error_response(422, "invalid", "the request is invalid", details)

    @app.exception_handler(AnswerValidationError)
    async def answer_invalid(_: Request, exc: AnswerValidationError) -> FastJSONResponse:
        details = [p.to_dict() for p in exc.problems]
        return error_response(
            422, "invalid_answer", f"the answer has {len(details)} problem(s)", details
        )

    @app.exception_handler(NotFound)
    async def not_found(_: Request, exc: NotFound) -> FastJSONResponse:
        return error_response(404, "not_found", str(exc))

    @app.exception_handler(QueueFull)
    async def queue_full(_: Request, exc: QueueFull) -> FastJSONResponse:
        return error_response(429, "rate_limited", str(exc), headers={"Retry-After": "1"})

    @app.exception_handler(TenantBusy)
    async def tenant_busy(_: Request, exc: TenantBusy) -> FastJSONResponse:
        return error_response(
            429, "rate_limited", str(exc), headers={"Retry-After": str(exc.retry_after_s)}
        )

    @app.exception_handler(Conflict)
    async def conflict(_: Request, exc: Conflict) -> FastJSONResponse:
        return error_response(409, "conflict", str(exc))

    async def unavailable(_: Request, exc: Exception) -> FastJSONResponse:
        what = "the state store" if isinstance(exc, StoreUnavailable) else "Redis"
        log.warning("dependency unavailable", error=repr(exc))
        return error_response(
            503,
            "unavailable",
            f"{what} is unreachable; nothing was changed, retry later",
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(UnknownQueue)
    async def unknown_queue(_: Request, exc: UnknownQueue) -> FastJSONResponse:
        log.error("queue not declared here", error=str(exc))
        return error_response(503, "unavailable", str(exc), headers={"Retry-After": "1"})

    for exc_type in (
        StoreUnavailable,
        QueueUnavailable,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
    ):
        app.add_exception_handler(exc_type, unavailable)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> FastJSONResponse:
        if isinstance(exc.__cause__, RecursionError):
            # FastAPI's JSON parsing gave up on the nesting (~1000 levels): well-formed JSON
            # past the bound of SPEC section 8, as a shallower one is (api/schemas.py)
            return error_response(
                422,
                "invalid",
                "the request is invalid",
                [
                    {
                        "path": "$",
                        "message": f"nested deeper than {MAX_DEPTH} levels",
                        "code": "too_deep",
                    }
                ],
            )
        code = _STATUS_CODES.get(exc.status_code, "error")
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, code, str(exc.detail), headers=headers)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> FastJSONResponse:
        log.exception("unhandled error", path=request.url.path)
        return error_response(500, "internal", "internal error")


def invalid_definition(exc: DefinitionError, root: str) -> ApiError:
    """422 listing every problem of a definition, each path under ``root`` (the body's field
    that holds the definition)."""
    details = [{**p.to_dict(), "path": _under(root, p.path)} for p in exc.problems]
    message = f"the workflow definition has {len(details)} problem(s)"
    return ApiError(422, "invalid_definition", message, details)


def _under(root: str, path: str) -> str:
    if path == "$":
        return root
    return f"{root}{path}" if path.startswith("[") else f"{root}.{path}"
