"""The state store: executions and node results. ``open_store(url)`` picks the backend."""

from __future__ import annotations

from typing import Any

from workflow_engine.config import ConfigError
from workflow_engine.store.base import StateStore
from workflow_engine.store.errors import IllegalTransition, StoreError, StoreUnavailable
from workflow_engine.store.records import ExecutionRecord, Page

__all__ = [
    "ExecutionRecord",
    "IllegalTransition",
    "Page",
    "StateStore",
    "StoreError",
    "StoreUnavailable",
    "normalize_url",
    "open_store",
]

_DRIVERS = {
    "sqlite": ("sqlite+aiosqlite", "aiosqlite", "workflow-engine (aiosqlite is a core dependency)"),
    "postgresql": ("postgresql+asyncpg", "asyncpg", "workflow-engine[postgres]"),
    "mongodb": ("mongodb", "pymongo", "workflow-engine[mongo]"),
    "mongodb+srv": ("mongodb+srv", "pymongo", "workflow-engine[mongo]"),
}


def _backend(scheme: str) -> str:
    """``postgresql+asyncpg`` -> ``postgresql``; ``mongodb+srv`` is a backend of its own."""
    return scheme if scheme == "mongodb+srv" else scheme.split("+")[0]


def normalize_url(url: str) -> str:
    """``sqlite:///x.db`` -> ``sqlite+aiosqlite:///x.db``; ``postgres://`` and ``postgresql://``
    -> ``postgresql+asyncpg://``; ``mongodb://`` and ``mongodb+srv://`` as they are."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(f"store URL {url!r} has no scheme (sqlite:///path or postgresql://...)")
    base = _backend(scheme)
    if base == "postgres":
        base = "postgresql"
    if base in _DRIVERS:
        return f"{_DRIVERS[base][0]}://{rest}"
    return url


def open_store(url: str, **options: Any) -> StateStore:
    """The store for ``url``; its driver is imported only now, and a missing one is an error that
    names the extra to install."""
    url = normalize_url(url)
    base = _backend(url.split("://")[0])
    if base not in _DRIVERS:
        raise ConfigError(
            f"unsupported store URL scheme {base!r}: use sqlite://, postgresql:// or mongodb://"
        )
    _, module, extra = _DRIVERS[base]
    try:
        __import__(module)
    except ImportError:
        raise ConfigError(f"the {base} store needs {module}: pip install '{extra}'") from None
    if base.startswith("mongodb"):
        from workflow_engine.store.mongo import MongoStore

        return MongoStore(url, **options)
    if base == "postgresql":
        from workflow_engine.store.postgres import PostgresStore

        return PostgresStore(url, **options)
    from workflow_engine.store.sqlite import SqliteStore

    return SqliteStore(url, **options)
