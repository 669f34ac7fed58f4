"""Compiles definitions and starts runs: the same code in ``wfe run`` and in every worker.
A run itself (``WorkflowRun``) is in ``engine/run.py``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from workflow_engine.clock import Clock, SystemClock
from workflow_engine.connections import ConnectionResolver, NoConnections
from workflow_engine.definition.expressions import ExpressionEngine
from workflow_engine.definition.model import WorkflowDefinition
from workflow_engine.definition.validate import Limits
from workflow_engine.egress import EgressPolicy
from workflow_engine.engine.hooks import ExecutionHooks
from workflow_engine.engine.results import ExecutionOutcome
from workflow_engine.engine.run import WorkflowRun
from workflow_engine.ids import new_execution_id
from workflow_engine.nodes.base import ChildWorkflows, NoChildWorkflows
from workflow_engine.nodes.registry import NodeRegistry
from workflow_engine.plan import Compiler, WorkflowPlan
from workflow_engine.sandbox.limits import SandboxLimits
from workflow_engine.vocabulary import NodeResult

if TYPE_CHECKING:
    import httpx

    from workflow_engine.sandbox.pool import SandboxPools

__all__ = ["DEFAULT_HTTP_TIMEOUT", "Executor", "WorkflowRun"]

DEFAULT_HTTP_TIMEOUT = 30.0
DEFAULT_MAX_OUTPUT_BYTES = 4 * 1024 * 1024


class Executor:
    """Compiles definitions and starts runs. Owns the shared resources nodes use (the HTTP client)
    unless given them. Use as ``async with Executor() as ex:`` or call ``aclose()``."""

    def __init__(
        self,
        registry: NodeRegistry | None = None,
        *,
        expressions: ExpressionEngine | None = None,
        clock: Clock | None = None,
        http_client: httpx.AsyncClient | None = None,
        limits: Limits | None = None,
        cancel_grace: float = 2.0,
        park_after: float | None = None,
        max_output_bytes: int | None = DEFAULT_MAX_OUTPUT_BYTES,
        egress: EgressPolicy | None = None,
        connections: ConnectionResolver | None = None,
        sandbox: SandboxLimits | None = None,
    ) -> None:
        """``park_after``: None, runs cannot park (``wfe run``: a ``delay`` sleeps, a
        ``wait_input`` fails); else waits longer than that many seconds park the execution.
        ``max_output_bytes``: a node output larger than that (JSON) fails the node.
        ``egress``: what the HTTP client may connect to; None, what ``wfe run`` allows (public
        addresses and loopback). Not used with ``http_client``.
        ``connections``: where nodes find the connections they name (none by default).
        ``sandbox``: the limits of ``code`` node runs (SPEC 9; defaults when None)."""
        self.cancel_grace = cancel_grace
        self.max_output_bytes = max_output_bytes
        self.park_after = park_after
        self.compiler = Compiler(registry, expressions=expressions, limits=limits)
        self.registry = self.compiler.registry
        self.expressions = self.compiler.expressions
        self.limits = self.compiler.limits
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._http = http_client
        self._owns_http = http_client is None
        self.egress = egress if egress is not None else EgressPolicy().with_loopback()
        self.connections: ConnectionResolver = (
            connections if connections is not None else NoConnections()
        )
        self.children: ChildWorkflows = NoChildWorkflows()
        """Starts the ``workflow`` node's child executions: set by a worker."""

        self.sandbox_limits = sandbox if sandbox is not None else SandboxLimits()
        self._sandboxes: SandboxPools | None = None

    def sandboxes(self) -> SandboxPools:
        """The warm sandbox processes of ``code`` nodes (none start before the first run)."""
        if self._sandboxes is None:
            from workflow_engine.sandbox.pool import SandboxPools

            self._sandboxes = SandboxPools(self.sandbox_limits)
        return self._sandboxes

    def http_client(self) -> httpx.AsyncClient:
        if self._http is None:
            # (on first use: ``wfe run`` of a graph without HTTP never pays for httpx)
            from workflow_engine.egress_transport import guarded_client

            self._http = guarded_client(self.egress, timeout=DEFAULT_HTTP_TIMEOUT)
        return self._http

    async def aclose(self) -> None:
        if self._sandboxes is not None:
            await self._sandboxes.aclose()
            self._sandboxes = None
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> Executor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    def compile(self, definition: Mapping[str, Any] | WorkflowDefinition) -> WorkflowPlan:
        """Validate and compile; raises ``DefinitionError`` listing every problem."""
        return self.compiler.compile(definition)

    def start(
        self,
        plan: WorkflowPlan,
        inputs: Mapping[str, Any] | None = None,
        *,
        execution_id: str | None = None,
        attempt: int = 1,
        metadata: Mapping[str, Any] | None = None,
        hooks: ExecutionHooks | None = None,
        restored: Mapping[str, NodeResult] | None = None,
        prior_attempts: Mapping[str, int] | None = None,
        timeout: float | None = None,
        max_parallel: int | None = None,
        tenant_id: str = "anonymous",
    ) -> WorkflowRun:
        """Prepare a run; ``await run.wait()`` executes it, ``run.cancel()`` stops it.

        ``restored`` holds node results of an earlier run (a checkpoint): final ones are not
        run again and their outputs are visible downstream; ``waiting`` ones run again with
        their ticket. ``prior_attempts`` counts the attempts an interrupted run made of a node,
        so that its attempt numbers go on. ``tenant_id``: whose connections nodes may use.
        """
        return WorkflowRun(
            self,
            plan,
            dict(inputs or {}),
            execution_id=execution_id or new_execution_id(),
            attempt=attempt,
            metadata=dict(metadata or {}),
            hooks=hooks,
            restored=restored or {},
            prior_attempts=prior_attempts or {},
            timeout=timeout,
            max_parallel=max_parallel or plan.definition.max_parallel,
            tenant_id=tenant_id,
        )

    async def run(
        self, plan: WorkflowPlan, inputs: Mapping[str, Any] | None = None, **options: Any
    ) -> ExecutionOutcome:
        return await self.start(plan, inputs, **options).wait()
