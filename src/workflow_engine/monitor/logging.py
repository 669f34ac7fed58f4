"""Structured logging. Library code logs through stdlib loggers wrapped by structlog (so nothing
prints unless the application configures logging); only the CLI calls ``configure_logging``."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog


def get_logger(name: str, **context: Any) -> structlog.stdlib.BoundLogger:
    """A named logger; bind ``executionId``/``nodeId`` once and every line carries them."""
    logger: structlog.stdlib.BoundLogger = structlog.wrap_logger(
        logging.getLogger(name),
        wrapper_class=structlog.stdlib.BoundLogger,
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.stdlib.add_log_level,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
    )
    return logger.bind(**context) if context else logger


def configure_logging(level: str = "INFO", *, json: bool = False) -> None:
    """Send every log line to stderr: JSON in production, pretty in a terminal."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if json else _identity,
            renderer,
        ],
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _identity(_logger: Any, _name: str, event: Any) -> Any:
    return event
