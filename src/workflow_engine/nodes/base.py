"""The node-type contract: an input model and ``async run(ctx, inputs)``; the rest optional."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NoReturn, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from workflow_engine.connections import Connection, ConnectionResolver, NoConnections
from workflow_engine.errors import ExpressionError, NodeError
from workflow_engine.vocabulary import NodeResult

if TYPE_CHECKING:
    import httpx

    # Type-only: the clock module imports asyncio, which validating a definition (and so
    # `wfe validate`) does not otherwise need; the executor passes a clock in.
    from workflow_engine.clock import Clock
    from workflow_engine.definition.expressions import ExpressionEngine, Scope
    from workflow_engine.sandbox.pool import SandboxPools


class NodeInputs(BaseModel):
    """Base of input models: unknown inputs are an error, so a typo is caught at submit time."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


InputsT = TypeVar("InputsT", bound=BaseModel)


async def _discard(_chunk: Any) -> None:
    return None


def _no_sandbox() -> SandboxPools:
    raise NodeError("this executor has no code sandbox", retryable=False, error_type="sandbox")


async def _no_body(_items: list[Any], _max_parallel: int) -> list[Any]:
    raise NodeError("this node has no body to run", retryable=False, error_type="invalid_node")


BODY_CALL = "bodyCall"
"""The scope key of what ``ctx.run_body_once(call=...)`` gave a run: read by its nodes with
``ctx.scope.get(BODY_CALL)``, never by templates (they see ``VISIBLE_NAMES`` only), and never
from data (an ``item`` comes from the run's input; a call only from the node running it)."""


class BodyRun(Protocol):
    async def __call__(
        self,
        index: int,
        item: Any,
        *,
        restore: bool = False,
        variables: Mapping[str, Any] | None = None,
        call: Mapping[str, Any] | None = None,
    ) -> list[NodeResult]: ...


async def _no_call(
    index: int,
    item: Any,
    *,
    restore: bool = False,
    variables: Mapping[str, Any] | None = None,
    call: Mapping[str, Any] | None = None,
) -> list[NodeResult]:
    raise NodeError(
        f"this node has no body to run (run {index})", retryable=False, error_type="invalid_node"
    )


@dataclass(frozen=True, slots=True)
class ChildRequest:
    """A ``workflow`` node's child execution: a stored workflow (``workflow_id``, ``version``)
    or an inline ``definition``, with its ``inputs``."""

    parent_execution_id: str
    parent_node_id: str
    attempt: int
    tenant_id: str
    workflow_id: str | None
    version: int | None
    definition: dict[str, Any] | None
    inputs: dict[str, Any]


class ChildWorkflows(Protocol):
    """Starts child executions (the worker's: ``queue/children.py``)."""

    async def launch(self, request: ChildRequest) -> str:
        """The child's execution id (the same one again for the same parent node and
        attempt); raises ``NodeError`` when it cannot start."""
        ...


class NoChildWorkflows:
    async def launch(self, request: ChildRequest) -> str:
        raise NodeError(
            f"node '{request.parent_node_id}': child workflows run only in the service "
            "(`wfe submit`), not in this run",
            retryable=False,
            error_type="cannot_park",
        )


class Park(Exception):
    """Raised by ``ctx.park``: the node waits (for a moment, for an answer) without holding a
    worker. The run records ``ticket`` as the node's output (status ``waiting``) and resumes
    the node at ``resume_at`` (epoch seconds; None: only when an answer arrives), giving it the
    ticket back as ``ctx.ticket``."""

    def __init__(self, ticket: dict[str, Any], resume_at: float | None) -> None:
        super().__init__("parked")
        self.ticket = ticket
        self.resume_at = resume_at


@dataclass(slots=True, eq=False)
class NodeContext:
    """What a running node may use. Built by the executor for every attempt."""

    execution_id: str
    workflow_id: str
    node_id: str
    node_type: str
    attempt: int
    metadata: Mapping[str, Any]
    clock: Clock
    expressions: ExpressionEngine
    scope: Scope
    http_client: Callable[[], httpx.AsyncClient]
    emit_stream: Callable[[Any], Awaitable[None]] = field(default=_discard)
    emit_log: Callable[[str], Awaitable[None]] = field(default=_discard)
    sandboxes: Callable[[], SandboxPools] = field(default=_no_sandbox)
    """The executor's warm sandbox processes (the ``code`` node), started on first use."""
    ticket: Mapping[str, Any] | None = None
    """What this node parked with in an earlier run (an answer added, when one came)."""
    park_after: float | None = None
    """Waits longer than this many seconds should park; None: this run cannot park."""
    tenant_id: str = "anonymous"
    """The tenant the execution belongs to (whose connections the node may use)."""
    connections: ConnectionResolver = field(default_factory=NoConnections)
    """Where named connections (base URL, key) are found: ``await ctx.connection(name)``."""
    run_body: Callable[[list[Any], int], Awaitable[list[Any]]] = field(default=_no_body)
    """For a node with a sub-graph (``subgraph_field``): run it once per item, at most
    ``max_parallel`` at a time, and return the outputs in item order (the executor's)."""
    run_body_once: BodyRun = field(default=_no_call)
    """For a node with a sub-graph: run it once, as run ``index`` (its nodes recorded as
    ``<nodeId>[<index>].<bodyNodeId>``) with ``item``; the results of its nodes that ran, in
    the order they ended. ``restore``: what an earlier attempt finished of run ``index`` is
    restored, and a run that waits parks the node (as a loop's iteration); without it the
    run starts afresh (a model's tool call) and cannot wait. ``variables``: the run sees these
    execution variables (over the node's own view of them). ``call``: what the run's nodes
    find under ``ctx.scope[BODY_CALL]`` (a model's tool call)."""
    children: ChildWorkflows = field(default_factory=NoChildWorkflows)
    """Starts child executions (the ``workflow`` node); the worker's, else none."""

    @property
    def can_park(self) -> bool:
        return self.park_after is not None

    def park(self, ticket: dict[str, Any], resume_at: float | None = None) -> NoReturn:
        """Wait without holding a worker: the execution becomes ``waiting`` and this node runs
        again (with ``ctx.ticket``) at ``resume_at``, or when an answer is delivered."""
        if self.park_after is None:
            raise NodeError(
                f"node '{self.node_id}' ({self.node_type}) needs to wait durably, which this "
                "run cannot do: submit it to the service (`wfe submit`) instead of `wfe run`",
                retryable=False,
                error_type="cannot_park",
            )
        raise Park(ticket, resume_at)

    async def connection(self, name: str) -> Connection:
        """The connection ``name`` of this execution's tenant; fails the node (error type
        ``config``, not retried) when there is none."""
        found = await self.connections.resolve(self.tenant_id, name)
        if found is None:
            raise NodeError(
                f"node '{self.node_id}': no connection named '{name}' (configure it with "
                f"WFE_CONNECTIONS__{name.upper()}__BASE_URL and __API_KEY, or store one)",
                retryable=False,
                error_type="config",
            )
        return found

    async def stream(self, chunk: Any) -> None:
        """Publish a piece of output before the node finishes (a ``node.stream`` event)."""
        await self.emit_stream(chunk)

    async def log(self, text: str) -> None:
        """Publish text the node's code printed (a ``node.log`` event)."""
        await self.emit_log(text)

    def evaluate(self, expression: str) -> Any:
        """Evaluate a bare expression (``nodes.a.output.total > 100``) in this node's scope.
        An expression that fails fails the node, without retries (the same inputs give the
        same answer): error type ``expression``, or ``expression_limit`` past its budget."""
        try:
            return self.expressions.evaluate(expression, self.scope)
        except ExpressionError as exc:
            raise NodeError(
                f"node '{self.node_id}': {exc}", retryable=False, error_type=exc.error_type
            ) from exc

    @property
    def http(self) -> httpx.AsyncClient:
        """The executor's shared HTTP client (connection pooling across nodes)."""
        return self.http_client()

    async def sleep(self, seconds: float) -> None:
        await self.clock.sleep(seconds)


class NodeType(ABC, Generic[InputsT]):
    """A kind of node. Subclasses set ``type_name`` and ``Inputs`` and implement ``run``.

    Optional:
    - ``chooses_branch``: the output is ``{"branch": name}`` and picks the outgoing edges;
    - ``bare_expression_fields``: input paths (``branches[*].when``) holding bare expressions that
      the node evaluates itself with ``ctx.evaluate``; they are checked, not rendered;
    - ``declared_branches(inputs)``: the branch names the node can choose, for validation;
    - ``pure``: the node has no effect outside the run (its output depends on its inputs
      only), so running it again after a crash cannot be noticed. The executor does not wait
      for a pure node's checkpoint before its dependants start;
    - ``sets_variables``: the node sets execution variables (SPEC section 9): the keys of its
      ``values`` input (an object, its values templated) name them, and its output is the
      variables after the update. The nodes downstream of it see its writes in ``vars``;
    - ``subgraph_field``: the input holding a sub-graph (``loop``'s ``body``): validated and
      compiled as a workflow of its own, run by the executor through ``ctx.run_body``;
    - ``body_carries_variables``: the node runs its body one run after another
      (``ctx.run_body_once(..., variables=...)``), each seeing the variables the run before
      wrote, so setters may run in the body (in another body, runs in parallel would race);
    - ``verbatim_fields``: top-level inputs passed to the node as written, their templates not
      rendered nor checked (``workflow``'s inline ``definition``: its templates are the child's).
    """

    type_name: ClassVar[str]
    version: ClassVar[int] = 1
    description: ClassVar[str] = ""
    Inputs: ClassVar[type[BaseModel]]
    chooses_branch: ClassVar[bool] = False
    bare_expression_fields: ClassVar[frozenset[str]] = frozenset()
    pure: ClassVar[bool] = False
    sets_variables: ClassVar[bool] = False
    subgraph_field: ClassVar[str | None] = None
    body_carries_variables: ClassVar[bool] = False
    verbatim_fields: ClassVar[frozenset[str]] = frozenset()

    @abstractmethod
    async def run(self, ctx: NodeContext, inputs: InputsT) -> Any:
        """Do the work; return JSON-shaped output or raise (``NodeError`` says whether to retry)."""

    def declared_branches(self, inputs: Mapping[str, Any]) -> set[str] | None:
        return None

    def variables_written(self, inputs: Mapping[str, Any]) -> frozenset[str]:
        """The variables a node that ``sets_variables`` writes: the keys of its ``values``."""
        values = inputs.get("values")
        return frozenset(values) if isinstance(values, dict) else frozenset()
