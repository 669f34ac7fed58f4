"""One exception per error code of the API, under one root."""

from __future__ import annotations

from typing import Any

from workflow_engine.errors import WorkflowEngineError


class ClientError(WorkflowEngineError):
    """The API answered with an error (or could not be reached: ``status`` 0)."""

    status = 0

    def __init__(
        self, message: str, *, code: str = "error", details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or []


class BadRequest(ClientError):
    status = 400


class Unauthorized(ClientError):
    status = 401


class Forbidden(ClientError):
    status = 403


class NotFoundError(ClientError):
    status = 404


class ConflictError(ClientError):
    status = 409


class PayloadTooLarge(ClientError):
    status = 413


class InvalidRequest(ClientError):
    """422: the definition or the inputs are invalid; ``details`` lists every problem."""

    status = 422


class RateLimited(ClientError):
    status = 429


class ServiceUnavailable(ClientError):
    """503 (Redis or the store is down) or the API cannot be reached: retry later."""

    status = 503


BY_STATUS: dict[int, type[ClientError]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFoundError,
        ConflictError,
        PayloadTooLarge,
        InvalidRequest,
        RateLimited,
        ServiceUnavailable,
    )
}


def error_from_response(status: int, body: Any) -> ClientError:
    error = body.get("error", {}) if isinstance(body, dict) else {}
    cls = BY_STATUS.get(status, ClientError)
    message = error.get("message") or f"HTTP {status}"
    return cls(message, code=error.get("code", "error"), details=error.get("details", []))
