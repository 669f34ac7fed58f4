"""The HTTP API (FastAPI): submit, observe and cancel executions."""

from workflow_engine.api.app import create_app

__all__ = ["create_app"]
