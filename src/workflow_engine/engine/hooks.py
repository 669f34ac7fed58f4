"""Progress hooks. Payloads are dataclasses so that a new field never breaks a hook."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workflow_engine.vocabulary import NodeResult, Progress


@dataclass(frozen=True, slots=True)
class NodeStarted:
    execution_id: str
    node_id: str
    node_type: str
    input: Any
    started_at: float
    attempt: int = 1
    """The first attempt of this run (more than 1 when an earlier run was interrupted)."""


@dataclass(frozen=True, slots=True)
class NodeRetrying:
    execution_id: str
    node_id: str
    attempt: int
    """The attempt that failed; the next one is ``attempt + 1``."""
    error: dict[str, Any]
    delay: float


@dataclass(frozen=True, slots=True)
class NodeStreamed:
    """A piece of output a node produced before finishing (an LLM token, an SSE message)."""

    execution_id: str
    node_id: str
    chunk: Any


@dataclass(frozen=True, slots=True)
class NodeLogged:
    """Text a node's user code printed (the ``code`` node's ``print``/``console.log``)."""

    execution_id: str
    node_id: str
    text: str


@dataclass(frozen=True, slots=True)
class NodeFinished:
    """A node reached a final status (completed, failed, skipped, cancelled) or parked
    (waiting, its output the ticket it resumes from)."""

    execution_id: str
    result: NodeResult


@dataclass(frozen=True, slots=True)
class ProgressChanged:
    execution_id: str
    progress: Progress


class ExecutionHooks:
    """Override what you need; every hook defaults to nothing. Hooks run inline in the executor:
    a slow hook slows the execution, so hand heavy work to a queue or a batch."""

    async def on_node_start(self, event: NodeStarted) -> None:
        return None

    async def on_node_retry(self, event: NodeRetrying) -> None:
        return None

    async def on_node_complete(self, event: NodeFinished) -> None:
        return None

    async def on_node_stream(self, event: NodeStreamed) -> None:
        return None

    async def on_node_log(self, event: NodeLogged) -> None:
        return None

    async def on_progress(self, event: ProgressChanged) -> None:
        return None

    async def checkpoint(self) -> None:
        """Awaited before the nodes that depend on finished ones start: return once what was
        reported so far is recorded well enough for a resumed run to restore it."""
        return None
