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
from workflow_engine.client.models import (
    ActiveExecution,
    Cancelled,
    Context,
    Event,
    ExecutionPage,
    NodeResult,
    Progress,
    Stats,
    Status,
    Submitted,
)

__all__ = [
    "ActiveExecution",
    "AsyncWorkflowEngineClient",
    "BadRequest",
    "Cancelled",
    "ClientError",
    "ConflictError",
    "Context",
    "Event",
    "ExecutionPage",
    "Forbidden",
    "InvalidRequest",
    "NodeResult",
    "NotFoundError",
    "PayloadTooLarge",
    "Progress",
    "RateLimited",
    "ServiceUnavailable",
    "Stats",
    "Status",
    "Submitted",
    "Unauthorized",
    "WorkflowEngineClient",
]
