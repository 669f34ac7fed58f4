"""One run of a compiled workflow: ready nodes on at most ``max_parallel`` asyncio tasks, each
node tried within its retry policy, its end classified, its dependants released.

A task that finishes a node and makes exactly one successor ready runs it itself, so a chain
costs no task creation.
"""

from __future__ import annotations

import asyncio
from collections import ChainMap, deque
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, ValidationError

from workflow_engine.definition.expressions import Scope
from workflow_engine.definition.model import MAX_BACKOFF_S
from workflow_engine.definition.validate import pydantic_problems
from workflow_engine.engine.hooks import (
    ExecutionHooks,
    NodeFinished,
    NodeLogged,
    NodeRetrying,
    NodeStarted,
    NodeStreamed,
    ProgressChanged,
)
from workflow_engine.engine.loop import Iteration, LoopBudget, LoopRunner
from workflow_engine.engine.results import ExecutionOutcome
from workflow_engine.engine.scheduler import GraphState, edge_active
from workflow_engine.errors import ExpressionError, NodeError, NodeInputError, NodeTimeoutError
from workflow_engine.jsonvalues import json_size_below
from workflow_engine.monitor.logging import get_logger
from workflow_engine.nodes.base import NodeContext, Park
from workflow_engine.plan import NodePlan, WorkflowPlan
from workflow_engine.vocabulary import (
    FINAL_NODE_STATUSES,
    ExecutionError,
    ExecutionStatus,
    NodeResult,
    NodeStatus,
    Progress,
    iso,
)

if TYPE_CHECKING:
    from workflow_engine.engine.executor import Executor

log = get_logger(__name__)

RELEASE_REASON = "released to the queue"
WAITING_FOR_RETRY = "retry"
"""The ticket of a node parked between two attempts (its backoff longer than ``park_after``)."""


async def _discard_chunk(_chunk: Any) -> None:
    return None


class _Stop(Exception):
    """Internal: the run is stopping; the node must not start its work."""


class WorkflowRun:
    def __init__(
        self,
        executor: Executor,
        plan: WorkflowPlan,
        inputs: dict[str, Any],
        *,
        execution_id: str,
        attempt: int,
        metadata: dict[str, Any],
        hooks: ExecutionHooks | None,
        restored: Mapping[str, NodeResult],
        prior_attempts: Mapping[str, int],
        timeout: float | None,
        max_parallel: int,
        tenant_id: str = "anonymous",
        iteration: Iteration | None = None,
        loop_budget: LoopBudget | None = None,
    ) -> None:
        """``iteration``: this run is one iteration of a loop's body (``engine/loop.py``);
        ``loop_budget``: the execution's, shared with its loops' iterations."""
        self.executor = executor
        self.plan = plan
        self.inputs = inputs
        self.execution_id = execution_id
        self.attempt = attempt
        self.metadata = metadata
        self.tenant_id = tenant_id
        self.hooks = hooks if hooks is not None else ExecutionHooks()
        # the per-node events are built only for hooks that override them: with nobody
        # listening, building them was a fifth of a node's cost (benchmarks/executor.py)
        self._reports_start = _listens(self.hooks, "on_node_start")
        self._reports_finish = _listens(self.hooks, "on_node_complete")
        # (an iteration's progress is its loop node's, reported by the execution's run)
        self._reports_progress = iteration is None and _listens(self.hooks, "on_progress")
        self._reports_stream = _listens(self.hooks, "on_node_stream")
        self._reports_log = _listens(self.hooks, "on_node_log")
        self.timeout = timeout
        self.max_parallel = max_parallel
        self._restored = restored
        self._prior = dict(prior_attempts)
        self._tickets: dict[str, Any] = {}
        self._parked: dict[str, float | None] = {}
        self._clock = executor.clock
        self._state = GraphState(plan)
        self._reopened: set[str] = set()
        """Nodes a recursive edge runs again: a setter's last writes hold meanwhile."""
        self.loop_budget = (
            loop_budget if loop_budget is not None else LoopBudget(executor.limits.max_loop_results)
        )
        self.body_usage: dict[str, int] | None = None
        """What the ``llm`` nodes of this run's loop iterations used (``engine/loop.py``)."""
        self.prefix = iteration.prefix if iteration is not None else ""
        """Before the ids of this run's node results (an iteration's: ``loop[3].``)."""
        prefix = self.prefix
        self.results: dict[str, NodeResult] = {
            node_id: NodeResult(prefix + node_id, p.type_name, p.definition.name)
            for node_id, p in plan.nodes.items()
        }
        self._nodes_ns: dict[str, Any] = {
            node_id: MappingProxyType({"status": "pending", "output": None, "error": None})
            for node_id in plan.nodes
        }
        if iteration is None:
            self._scope = executor.expressions.scope(
                inputs=inputs,
                nodes=self._nodes_ns,
                vars=plan.variables,  # a node downstream of a setter gets its own (``_scope_of``)
                execution={
                    "id": execution_id,
                    "workflow_id": plan.workflow_id,
                    "attempt": attempt,
                    "metadata": metadata,
                },
            )
        else:  # the loop's scope, the body's nodes over the nodes outside (a body id shadows)
            self._scope = dict(iteration.scope)
            self._scope["nodes"] = ChainMap(self._nodes_ns, iteration.scope["nodes"])
            self._scope["item"] = iteration.item
            self._scope["index"] = iteration.index
        self._queue: deque[str] = deque()
        self._workers: set[asyncio.Task[None]] = set()
        self._in_work: set[asyncio.Task[Any]] = set()
        self._done: asyncio.Future[None] | None = None
        self._finished_order: dict[str, None] = {}
        """The ended nodes, in the order they ended (once each: a re-run moves it last)."""
        self._current: str | None = None
        self._stopping = False
        self._cancel_reason: str | None = None
        self._released = False
        self._failure: ExecutionError | None = None
        self._outcome: ExecutionOutcome | None = None
        self._started_at = 0.0

    # -- control --------------------------------------------------------------------------

    def cancel(self, reason: str = "cancelled") -> None:
        """Stop the run: in-flight nodes are cancelled (an HTTP request is aborted) and the
        outcome is ``cancelled``. Safe to call from any task, any number of times; the first
        stop wins."""
        if self._outcome is not None or self._stopping:
            return
        self._cancel_reason = reason
        self._abort()

    def release(self) -> None:
        """Stop the run so that it can resume elsewhere (its worker is shutting down): as
        ``cancel``, with ``outcome.released`` set, unless the run was already stopping."""
        if self._outcome is not None or self._stopping:
            return
        self._released = True
        self.cancel(RELEASE_REASON)

    def _abort(self) -> None:
        """Stop: cancel the nodes in flight and conclude (``_drain`` gives them a grace)."""
        self._stopping = True
        for task in list(self._in_work):
            task.cancel()
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    @property
    def progress(self) -> Progress:
        return Progress(self._current, tuple(self._finished_order), len(self.plan.nodes))

    @property
    def restored(self) -> Mapping[str, NodeResult]:
        """The results this run started from (by node id without ``prefix``)."""
        return self._restored

    @property
    def prior_attempts(self) -> Mapping[str, int]:
        return self._prior

    def iteration(
        self,
        body: WorkflowPlan,
        iteration: Iteration,
        *,
        restored: Mapping[str, NodeResult],
        prior_attempts: Mapping[str, int],
    ) -> WorkflowRun:
        """A run of a loop's ``body`` for one item: this execution's, with its hooks."""
        return WorkflowRun(
            self.executor,
            body,
            self.inputs,
            execution_id=self.execution_id,
            attempt=self.attempt,
            metadata=self.metadata,
            hooks=self.hooks,
            restored=restored,
            prior_attempts=prior_attempts,
            timeout=None,
            max_parallel=body.definition.max_parallel,
            tenant_id=self.tenant_id,
            iteration=iteration,
            loop_budget=self.loop_budget,
        )

    # -- the run --------------------------------------------------------------------------

    async def wait(self) -> ExecutionOutcome:
        """Run to the end and return the outcome. Raises ``InputValidationError`` (before
        anything runs) when the inputs break the definition's ``input_schema``."""
        if self._outcome is not None:
            return self._outcome
        self.plan.check_inputs(self.inputs)
        self._started_at = self._clock.now()
        self._done = asyncio.get_running_loop().create_future()
        try:
            if not self._stopping:
                await self._begin()
            if not self._workers and not self._done.done():
                self._done.set_result(None)
            try:
                async with asyncio.timeout(self.timeout):
                    await self._done
            except TimeoutError:
                self._failure = ExecutionError(
                    f"execution timed out after {self.timeout:g}s", "timeout", self._current
                )
                self._abort()
        except asyncio.CancelledError:
            self._cancel_reason = self._cancel_reason or "cancelled"
            self._abort()
            await self._drain()
            raise
        await self._drain()
        return await self._conclude()

    async def _begin(self) -> None:
        restored: dict[str, tuple[NodeStatus, str | None]] = {}
        for node_id, result in self._restored.items():
            if node_id not in self.results:
                continue
            if result.status is NodeStatus.WAITING:  # parked: it runs again
                ticket = result.output if isinstance(result.output, dict) else {}
                if ticket.get("waitingFor") == WAITING_FOR_RETRY:  # its next attempt is due
                    self._prior[node_id] = result.attempt
                else:  # the same attempt goes on, with its ticket
                    self._tickets[node_id] = ticket
                    self._prior[node_id] = max(result.attempt - 1, 0)
                self.results[node_id].started_at = result.started_at
                continue
            if result.status not in FINAL_NODE_STATUSES:
                continue
            if result.status is NodeStatus.CANCELLED or (
                result.status is NodeStatus.FAILED
                and self.plan.nodes[node_id].definition.on_error == "fail"
            ):
                continue  # it runs again
            self.results[node_id] = result
            self._publish(node_id, result)
            restored[node_id] = (result.status, self._chosen(node_id, result))
            self._finished_order[node_id] = None
        settled = self._state.start(restored)
        await self._skip(settled.skipped)
        self._queue.extend(settled.ready)
        if self._state.recursive:
            self._resume_cycles(restored)
            await self._run_due_cycles()
        self._spawn(len(self._queue))

    def _spawn(self, count: int) -> None:
        count = min(count, self.max_parallel - len(self._workers), len(self._queue))
        for _ in range(count):
            task = asyncio.ensure_future(self._worker(self._queue.popleft()))
            self._workers.add(task)

    async def _worker(self, node_id: str | None) -> None:
        try:
            while node_id is not None and not self._stopping:
                result = await self._execute(node_id)
                try:
                    await self._complete(node_id, result)
                except Exception as exc:  # a hook could not record it: the run cannot go on
                    self._internal_failure(node_id, exc)
                    return
                node_id = self._queue.popleft() if self._queue and not self._stopping else None
                if node_id is None and self._idle_with_cycles_due():
                    await self._run_due_cycles()
                    node_id = self._queue.popleft() if self._queue else None
                    self._spawn(len(self._queue))
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._workers.discard(task)
            if not self._workers and self._done is not None and not self._done.done():
                if self._stopping or not self._queue:
                    self._done.set_result(None)
                else:  # pragma: no cover - defensive: never leave ready nodes unclaimed
                    self._spawn(len(self._queue))

    async def _drain(self) -> None:
        """Wait for the worker tasks. When stopping, a node gets ``cancel_grace`` seconds to
        honour its cancellation; one that ignores it is abandoned (and ends ``cancelled``)."""
        if not self._workers:
            return
        grace = self.executor.cancel_grace if self._stopping else None
        _, pending = await asyncio.wait(set(self._workers), timeout=grace)
        if pending:
            log.warning(
                "nodes ignored cancellation; abandoned",
                executionId=self.execution_id,
                grace_s=grace,
            )

    # -- one node: inputs, attempts, how it ended -------------------------------------------

    async def _execute(self, node_id: str) -> NodeResult:
        """Run one node to a final status, or to ``waiting`` when it parks. Its result is not
        touched again once the run is over (a node that ignored its cancellation)."""
        plan_node = self.plan.nodes[node_id]
        result = self.results[node_id]
        result.status = NodeStatus.RUNNING
        if result.started_at is None:  # (a parked node keeps its first start)
            result.started_at = self._clock.now()
        self._current = node_id
        try:
            try:
                inputs = self._resolve_inputs(plan_node, result)
            finally:  # a node whose inputs fail has started too
                if self._reports_start:
                    await self.hooks.on_node_start(self._start_event(plan_node, result))
            if not await self._attempts(plan_node, result, inputs):
                return result  # parked, or abandoned by a run that is over
        except NodeError as exc:
            if self._outcome is not None:
                return result
            self._classify_failure(plan_node, result, exc)
        except (asyncio.CancelledError, _Stop):
            if self._outcome is not None:
                return result
            result.status = NodeStatus.CANCELLED
            result.completed_at = self._clock.now()
            if self._stopping:
                return result
            raise
        result.completed_at = self._clock.now()
        return result

    def _resolve_inputs(self, plan_node: NodePlan, result: NodeResult) -> BaseModel:
        """The node's inputs, templates rendered and checked against its type's model
        (``result.input`` keeps the rendered form)."""
        node_id = plan_node.id
        try:
            # one evaluation for the budget, bounded by the node's timeout too: the event loop
            # is back within min(budget, timeout) whatever the node's templates do
            raw = (
                self.executor.expressions.resolve(
                    plan_node.resolve,
                    self._scope if not plan_node.upstream_setters else self._scope_of(plan_node),
                    plan_node.definition.timeout,
                )
                if plan_node.resolve is not None
                else plan_node.definition.inputs
            )
            result.input = raw
            return plan_node.node_type.Inputs.model_validate(raw)
        except ExpressionError as exc:
            raise NodeError(
                f"node '{node_id}': {exc}", retryable=False, error_type=exc.error_type
            ) from exc
        except ValidationError as exc:
            details = "; ".join(str(p) for p in pydantic_problems(exc, "inputs"))
            raise NodeInputError(f"node '{node_id}': invalid inputs: {details}") from exc

    def _scope_of(self, plan_node: NodePlan) -> Scope:
        """The run's scope with ``vars`` as the node sees them: the writes of the setters
        upstream of it over the defaults (SPEC section 9). Only for a node with such setters:
        the others share the run's scope, whose ``vars`` are the defaults."""
        scope = dict(self._scope)
        scope["vars"] = self._variables(plan_node.upstream_setters)
        return scope

    def _variables(self, setters: tuple[str, ...]) -> dict[str, Any]:
        """The defaults, then the writes of each of ``setters`` that completed, in plan order
        (the later one wins a variable two parallel setters write). Read from the setters'
        outputs, so a resumed run, whose restored setters carry theirs, sees the same."""
        values = dict(self._scope["vars"])  # (an iteration's: what its loop gave it)
        for setter in setters:
            result = self.results[setter]
            output = result.output
            ran = result.status is NodeStatus.COMPLETED or setter in self._reopened
            if not ran or not isinstance(output, dict):
                continue
            for name in self.plan.variable_writes[setter]:
                if name in output:
                    values[name] = output[name]
        return values

    def _start_event(self, plan_node: NodePlan, result: NodeResult) -> NodeStarted:
        return NodeStarted(
            self.execution_id,
            result.node_id,
            plan_node.type_name,
            result.input,
            result.started_at or 0.0,
            self._prior.get(plan_node.id, 0) + 1,
        )

    async def _attempts(self, plan_node: NodePlan, result: NodeResult, inputs: Any) -> bool:
        """Try the node within its retry policy. True once it completed; False when it parked
        (``waiting``) or the run ended meanwhile. Raises the error of its last attempt, or
        ``_Stop`` when the run stops between attempts."""
        node_id = plan_node.id
        retry = plan_node.definition.retry
        first = self._prior.get(node_id, 0) + 1
        # a node interrupted by a crash runs at least once more
        last = max(retry.attempts if retry is not None else 1, first)
        task = asyncio.current_task()
        assert task is not None
        for attempt in range(first, last + 1):
            result.attempt = attempt
            if self._stopping:
                raise _Stop
            try:
                self._in_work.add(task)  # stopping the run cancels the node's work
                try:
                    output = await self._attempt(plan_node, inputs, attempt)
                finally:
                    self._in_work.discard(task)
            except Park as parked:
                result.status = NodeStatus.WAITING
                result.output = parked.ticket
                self._parked[node_id] = parked.resume_at
                return False
            except NodeError as exc:
                error = exc
            except Exception as exc:
                error = NodeError(f"{type(exc).__name__}: {exc}", error_type="exception")
            else:
                if self._outcome is not None:  # abandoned, and the run is over
                    return False
                check_output_size(node_id, output, self.executor.max_output_bytes)
                result.output = output
                result.status = NodeStatus.COMPLETED
                return True
            if not error.retryable or attempt == last:
                raise error
            if await self._before_retry(plan_node, result, attempt, error, task):
                return False  # parked until the next attempt is due
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _attempt(self, plan_node: NodePlan, inputs: Any, attempt: int) -> Any:
        """One try of the node: its output in JSON form, or an exception."""
        node_id = self.prefix + plan_node.id
        scope = self._scope if not plan_node.upstream_setters else self._scope_of(plan_node)
        ctx = NodeContext(
            execution_id=self.execution_id,
            workflow_id=self.plan.workflow_id,
            node_id=node_id,
            node_type=plan_node.type_name,
            attempt=attempt,
            metadata=self.metadata,
            clock=self._clock,
            expressions=self.executor.expressions,
            scope=scope,
            http_client=self.executor.http_client,
            emit_stream=self._streamer(node_id),
            emit_log=self._logger(node_id),
            sandboxes=self.executor.sandboxes,
            ticket=self._tickets.get(plan_node.id),
            park_after=self.executor.park_after,
            tenant_id=self.tenant_id,
            connections=self.executor.connections,
            children=self.executor.children,
        )
        if plan_node.body is not None:
            runner = LoopRunner(self, plan_node, scope)
            ctx.run_body, ctx.run_body_once = runner, runner.once
        timeout = plan_node.definition.timeout
        if timeout is None:
            output = await plan_node.node_type.run(ctx, inputs)
        else:
            try:
                async with asyncio.timeout(timeout):
                    output = await plan_node.node_type.run(ctx, inputs)
            except TimeoutError:
                raise NodeTimeoutError(f"node '{node_id}' timed out after {timeout}s") from None
        # a model's JSON form, made here so that a failure to make it fails the attempt
        return output.model_dump(mode="json") if isinstance(output, BaseModel) else output

    async def _before_retry(
        self,
        plan_node: NodePlan,
        result: NodeResult,
        attempt: int,
        error: NodeError,
        task: asyncio.Task[Any],
    ) -> bool:
        """Report the failed attempt and wait out the backoff (stopping the run cancels
        ``task``'s wait). A backoff longer than the executor's ``park_after`` parks the node
        instead, as a long ``delay`` does (no worker held): True then."""
        retry = plan_node.definition.retry
        assert retry is not None  # only a node with a retry policy has a next attempt
        delay = retry.delay_before(attempt + 1)
        if error.retry_after is not None:  # the server said when (bounded as a backoff is)
            delay = max(delay, min(error.retry_after, MAX_BACKOFF_S))
        log.info(
            "node attempt failed; retrying",
            executionId=self.execution_id,
            nodeId=plan_node.id,
            attempt=attempt,
            delay=delay,
            error=str(error),
        )
        await self.hooks.on_node_retry(
            NodeRetrying(self.execution_id, result.node_id, attempt, error.to_dict(), delay)
        )
        park_after = self.executor.park_after
        if park_after is not None and delay > park_after:
            retry_at = self._clock.now() + delay
            result.status = NodeStatus.WAITING
            result.output = {
                "waitingFor": WAITING_FOR_RETRY,
                "retryAt": iso(retry_at),
                "error": error.to_dict(),
            }
            self._parked[plan_node.id] = retry_at
            return True
        self._in_work.add(task)
        try:
            await self._clock.sleep(delay)
        finally:
            self._in_work.discard(task)
        return False

    def _classify_failure(self, plan_node: NodePlan, result: NodeResult, exc: NodeError) -> None:
        """A node's last attempt failed: ``cancelled`` when that was its reaction to the run
        stopping, else ``failed`` (with its ``default_output`` under ``on_error: continue``)."""
        if self._stopping:
            result.status = NodeStatus.CANCELLED
            return
        definition = plan_node.definition
        result.status = NodeStatus.FAILED
        result.error = exc.to_dict()
        if exc.output is not None:
            result.output = exc.output
        elif definition.on_error == "continue":
            result.output = definition.default_output
        log.info(
            "node failed",
            executionId=self.execution_id,
            nodeId=plan_node.id,
            error=str(exc),
            errorType=exc.error_type,
        )

    def _streamer(self, node_id: str) -> Callable[[Any], Awaitable[None]]:
        if not self._reports_stream:
            return _discard_chunk
        hooks, execution_id = self.hooks, self.execution_id

        async def emit(chunk: Any) -> None:
            await hooks.on_node_stream(NodeStreamed(execution_id, node_id, chunk))

        return emit

    def _logger(self, node_id: str) -> Callable[[str], Awaitable[None]]:
        if not self._reports_log:
            return _discard_chunk
        hooks, execution_id = self.hooks, self.execution_id

        async def emit(text: str) -> None:
            await hooks.on_node_log(NodeLogged(execution_id, node_id, text))

        return emit

    # -- after a node ---------------------------------------------------------------------

    def _chosen(self, node_id: str, result: NodeResult) -> str | None:
        if (
            result.status is NodeStatus.COMPLETED
            and self.plan.nodes[node_id].node_type.chooses_branch
        ):
            output = result.output
            branch = output.get("branch") if isinstance(output, dict) else None
            return branch if isinstance(branch, str) else None
        return None

    async def _finished(self, result: NodeResult) -> None:
        if self._reports_finish:
            await self.hooks.on_node_complete(NodeFinished(self.execution_id, result))

    def _publish(self, node_id: str, result: NodeResult) -> None:
        self._nodes_ns[node_id] = MappingProxyType(
            {"status": str(result.status), "output": result.output, "error": result.error}
        )

    async def _complete(self, node_id: str, result: NodeResult) -> None:
        if result.status is NodeStatus.CANCELLED or self._outcome is not None:
            return
        self._publish(node_id, result)
        if result.status is NodeStatus.WAITING:  # its successors wait with it
            await self._finished(result)
            return
        self._finished_order[node_id] = None
        definition = self.plan.nodes[node_id].definition
        if result.status is NodeStatus.FAILED and definition.on_error == "fail":
            error = result.error or {}
            if self._failure is None and self._cancel_reason is None:
                self._failure = ExecutionError(
                    error.get("message", "node failed"), error.get("type", "node_error"), node_id
                )
            self._abort()
            await self._finished(result)
            return
        settled = self._state.settle(node_id, result.status, self._chosen(node_id, result))
        if self._reports_finish:
            await self._finished(result)
        if self._state.exhausted:  # max_run_times: nothing more starts
            self._queue.clear()
        await self._skip(settled.skipped)
        if self._reports_progress:
            await self.hooks.on_progress(ProgressChanged(self.execution_id, self.progress))
        if settled.ready and node_id not in self.plan.pure_nodes:
            await self.hooks.checkpoint()  # a resumed run must not run this node again
        if not self._stopping:
            self._queue.extend(settled.ready)
            # this worker goes on with one of them itself
            self._spawn(len(self._queue) - 1)

    # -- recursive edges (FastGPT's cycles) ----------------------------------------------------

    def _idle_with_cycles_due(self) -> bool:
        """This worker is the last one, nothing is queued, and a recursive edge is due: the
        cycle runs again now, when none of its nodes can be running."""
        return (
            bool(self._state.loops_due)
            and not self._stopping
            and not self._queue
            and len(self._workers) <= 1
            and not self._parked
        )

    async def _run_due_cycles(self) -> None:
        settled = self._state.drain()
        await self._reopen(settled.rearmed)
        self._queue.extend(settled.ready)

    def _resume_cycles(self, restored: Mapping[str, tuple[NodeStatus, str | None]]) -> None:
        """A resumed run: a restored node whose recursive edge is active, and whose target has
        not run since it ended, makes the target due again (the run stopped in between)."""
        for node_id, (status, chosen) in restored.items():
            ended = self.results[node_id].completed_at or 0.0
            for target, branch in self.plan.nodes[node_id].loops_back:
                on_error = self.plan.nodes[node_id].definition.on_error
                target_ended = self.results[target].completed_at
                ran_since = target in restored and (target_ended or 0.0) > ended
                due = edge_active(branch, status, on_error, chosen) and not ran_since
                if due and target not in self._state.loops_due:
                    self._state.loops_due.append(target)

    async def _reopen(self, node_ids: list[str]) -> None:
        """Nodes a recursive edge runs again: pending (recorded so: a resumed run runs them
        again), their next run a first attempt. Their last outputs (a setter's writes too)
        stay visible until they run again, as in FastGPT."""
        self._reopened.update(node_ids)
        for node_id in node_ids:
            result = self.results[node_id]
            result.status = NodeStatus.PENDING
            result.started_at = result.completed_at = None
            result.error = None
            self._prior.pop(node_id, None)
            self._tickets.pop(node_id, None)
            self._finished_order.pop(node_id, None)
            await self._finished(result)

    async def _skip(self, skipped: list[str]) -> None:
        now = self._clock.now()
        for node_id in skipped:
            result = self.results[node_id]
            result.status = NodeStatus.SKIPPED
            result.completed_at = now
            self._publish(node_id, result)
            self._finished_order[node_id] = None
        for node_id in skipped:
            await self._finished(self.results[node_id])

    def _internal_failure(self, node_id: str, exc: Exception) -> None:
        log.error(
            "recording a node failed; stopping the run",
            executionId=self.execution_id,
            nodeId=node_id,
            error=repr(exc),
        )
        if self._failure is None:
            self._failure = ExecutionError(
                f"could not record node '{node_id}': {exc}", "internal", node_id
            )
        self._abort()

    async def _conclude(self) -> ExecutionOutcome:
        now = self._clock.now()
        parked = bool(self._parked) and self._failure is None and self._cancel_reason is None
        stopped: list[NodeResult] = []
        for result in self.results.values():
            if parked:
                break  # the nodes not run yet wait for the parked ones
            if result.status not in FINAL_NODE_STATUSES:
                result.status = NodeStatus.CANCELLED
                result.completed_at = now
            if result.status is NodeStatus.CANCELLED:
                stopped.append(result)
        for result in stopped:
            await self._finished(result)
        error: ExecutionError | None = None
        result_value: Any = None
        if self._failure is not None:
            status, error = ExecutionStatus.FAILED, self._failure
        elif self._cancel_reason is not None:
            status = ExecutionStatus.CANCELLED
            error = ExecutionError(self._cancel_reason, "cancelled")
        elif parked:
            status = ExecutionStatus.WAITING
        else:
            status, result_value = ExecutionStatus.COMPLETED, self._result_value()
        self._outcome = ExecutionOutcome(
            execution_id=self.execution_id,
            workflow_id=self.plan.workflow_id,
            status=status,
            result=result_value,
            error=error,
            nodes=self.results,
            progress=self.progress,
            started_at=self._started_at,
            completed_at=now,
            metadata=self.metadata,
            parked=dict(self._parked) if parked else {},
            released=self._released and status is ExecutionStatus.CANCELLED,
            variables=self._variables(self.plan.setters)
            if self.plan.variables and not self.prefix
            else None,
            body_usage=self.body_usage,
        )
        return self._outcome

    def _result_value(self) -> Any:
        """The ``value`` of the one output node that ran; a dict by node id if several ran;
        else the outputs of the completed sink nodes."""
        ran = [n for n in self.plan.output_nodes if self.results[n].status is NodeStatus.COMPLETED]
        if len(ran) == 1:
            return self.results[ran[0]].output
        if ran:
            return {n: self.results[n].output for n in ran}
        return {
            n: self.results[n].output
            for n in self.plan.sinks
            if self.results[n].status is NodeStatus.COMPLETED
        }


def check_output_size(node_id: str, output: Any, limit: int | None) -> None:
    """Fail the node (``output_limit``) when its output's JSON form is larger than ``limit``.
    orjson measures it (microseconds for a small output, far less than a walk in Python for a
    big one); a value orjson cannot write is estimated from below instead."""
    if limit is None:
        return
    try:
        size = len(orjson.dumps(output, option=orjson.OPT_NON_STR_KEYS))
    except (TypeError, orjson.JSONEncodeError):
        size = json_size_below(output, limit + 1)
    if size > limit:
        raise NodeError(
            f"node '{node_id}': its output is larger than {limit} bytes (JSON)",
            retryable=False,
            error_type="output_limit",
        )


def _listens(hooks: ExecutionHooks, name: str) -> bool:
    """Whether ``hooks`` overrides the hook ``name`` (the base class's does nothing)."""
    return getattr(type(hooks), name) is not getattr(ExecutionHooks, name)
