"""The Python SDK for the workflow-engine HTTP API."""

from workflow_engine.client.client import AsyncWorkflowEngineClient, WorkflowEngineClient
from workflow_engine.client.errors import (
    BadRequest,
    ClientError,
    ConflictError,
    Forbidden,
    InvalidRequest,
    NotFoundError,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
)
from workflow_engine.client.models import Event

__all__ = [
    "AsyncWorkflowEngineClient",
    "BadRequest",
    "ClientError",
    "ConflictError",
    "Event",
    "Forbidden",
    "InvalidRequest",
    "NotFoundError",
    "PayloadTooLarge",
    "RateLimited",
    "ServiceUnavailable",
    "Unauthorized",
    "WorkflowEngineClient",
]
