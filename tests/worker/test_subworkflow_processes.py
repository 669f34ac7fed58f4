"""The ``workflow`` node (SPEC section 9) over ``wfe worker`` processes as a user runs them:
a child whose worker is ``kill -9``-ed resumes on another worker and still answers its parent
(one child, its side effect not repeated); a parent parked on its child survives the death of
the only worker; cancelling the top of a parent -> child -> grandchild chain cancels all three,
across processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.api.test_subworkflow import executions_of
from tests.support.http_server import LocalHttpServer
from tests.support.processes import Process, start_worker, wait_until
from tests.worker.test_durable import reaches, status
from tests.worker.test_durable_processes import events_of
from workflow_engine.api.services import Services
from workflow_engine.events.model import Event
from workflow_engine.queue.submit import Submission
from workflow_engine.vocabulary import ExecutionStatus

# a killed worker's job is taken over once its lock (2 s in the tests' settings) expired; it may
# be caught in more than one stalled check on a loaded machine: never give up on it here
TAKEOVER = {"WFE_MAX_STALLED_COUNT": "100"}


def calling(child: dict[str, Any], workflow_id: str, **inputs: Any) -> dict[str, Any]:
    """A workflow whose ``call`` node runs ``child`` inline, and whose result is its output."""
    return {
        "id": workflow_id,
        "nodes": [
            {"id": "call", "type": "workflow", "inputs": {"definition": child, "inputs": inputs}},
            {"id": "out", "type": "output", "inputs": {"value": "{{ nodes.call.output }}"}},
        ],
        "edges": [{"source": "call", "target": "out"}],
    }


def own(events: list[Event], kind: str, node_id: str | None = None) -> list[Event]:
    """The execution's own events of that type (not the copies of its children's events)."""
    return [
        e
        for e in events
        if e.type == kind
        and "childExecutionId" not in e.data
        and (node_id is None or e.data.get("nodeId") == node_id)
    ]


async def parked(services: Services, execution_id: str) -> bool:
    """Waiting in the store, and its job a delayed one: no worker holds it."""
    record = await services.store.get(execution_id)
    if record is None or record.status is not ExecutionStatus.WAITING:
        return False
    state = await services.queues[record.queue].getJobState(execution_id)
    return bool(state == "delayed")


async def the_child(api: httpx.AsyncClient, workflow_id: str, wanted: str) -> dict[str, Any]:
    """The one execution of ``workflow_id``, once it has status ``wanted``."""

    async def check() -> dict[str, Any] | None:
        runs = await executions_of(api, workflow_id)
        return runs[0] if len(runs) == 1 and runs[0]["status"] == wanted else None

    found: dict[str, Any] = await wait_until(check, 20, f"the {workflow_id} child to be {wanted}")
    return found


async def stop_all(workers: dict[str, Process]) -> None:
    for worker in workers.values():
        if worker.proc.poll() is None:
            await asyncio.to_thread(worker.stop)


@pytest.fixture
async def counting_server() -> AsyncIterator[LocalHttpServer]:
    server = await LocalHttpServer().start()
    yield server
    await server.stop()


async def test_kill_9_of_the_childs_worker_resumes_it_elsewhere_and_the_parent_gets_its_result(
    services: Services, api: httpx.AsyncClient, counting_server: LocalHttpServer
) -> None:
    """Two workers. The parent starts a child that POSTs to a counting server, then sleeps
    1.5 s (``nap``). Once the parent is parked (waiting, its job delayed: no worker holds it)
    and the child's ``nap`` has started, the worker that runs the child (named in the child's
    ``execution.started`` event) is killed with SIGKILL. Then:

    - the other worker takes the child over (a second ``execution.started``, ``resumed``, from
      the survivor) and the child completes; its end wakes the parent, which completes with the
      child's result as the output of its ``call`` node;
    - exactly one child execution exists for the parent's ``call`` node: the resumed child is
      the same execution, and the parent (parked, never re-run for the kill) started no other;
    - the POST reached the server exactly once: ``nap`` only starts after ``fetch`` was
      checkpointed, so the kill lands after that checkpoint and the resumed child reuses it
      (a kill in the middle of ``fetch`` could legitimately make it twice; this test does not
      leave that to chance)."""
    settings = services.settings
    workers = {
        name: await asyncio.to_thread(start_worker, settings, WFE_WORKER_ID=name, **TAKEOVER)
        for name in ("alpha", "beta")
    }
    child = {
        "id": "fetcher",
        "nodes": [
            {
                "id": "fetch",
                "type": "http",
                "inputs": {
                    "method": "POST",
                    "url": f"{counting_server.base_url}/echo/child",
                    "json": {"n": "{{ inputs.n }}"},
                },
            },
            {"id": "nap", "type": "delay", "inputs": {"seconds": 1.5}},
            {
                "id": "out",
                "type": "output",
                "inputs": {
                    "value": {
                        "status": "{{ nodes.fetch.output.status }}",
                        "method": "{{ nodes.fetch.output.body.method }}",
                        "n": "{{ inputs.n * 2 }}",
                    }
                },
            },
        ],
        "edges": [{"source": "fetch", "target": "nap"}, {"source": "nap", "target": "out"}],
    }
    definition = calling(child, "caller", n="{{ inputs.n }}")
    submitted = await services.submitter.submit(Submission(definition, inputs={"n": 21}))
    parent_id = submitted.execution_id
    try:
        run = await the_child(api, "fetcher", "running")
        child_id = run["executionId"]

        async def child_napping() -> list[Event] | None:
            events = await events_of(settings, child_id)
            return events if own(events, "node.started", "nap") else None

        events = await wait_until(child_napping, 20, "the child to start its nap")
        assert counting_server.hits["/echo/child"] == 1
        await wait_until(lambda: parked(services, parent_id), 20, "the parent to park")
        [started] = own(events, "execution.started")
        holder = started.data["workerId"]
        assert holder in workers
        await asyncio.to_thread(workers.pop(holder).kill)
        [survivor] = workers

        final = await reaches(api, parent_id, "completed")
    finally:
        await stop_all(workers)

    expected = {"status": 200, "method": "POST", "n": 42}
    assert final["result"] == expected
    call = {n["nodeId"]: n for n in final["nodes"]}["call"]
    assert call["status"] == "completed"
    assert call["output"] == expected
    runs = await executions_of(api, "fetcher")
    assert [(r["executionId"], r["parentExecutionId"], r["parentNodeId"]) for r in runs] == [
        (child_id, parent_id, "call")
    ]
    assert runs[0]["status"] == "completed"
    assert (await status(api, child_id))["result"] == expected
    assert counting_server.hits["/echo/child"] == 1
    child_events = await events_of(settings, child_id)
    restarted = own(child_events, "execution.started")
    assert [(e.data["workerId"], e.data["resumed"]) for e in restarted] == [
        (holder, False),
        (survivor, True),
    ]
    assert len(own(child_events, "node.started", "fetch")) == 1  # not run again
    assert len(own(child_events, "execution.completed")) == 1
    parent_events = await events_of(settings, parent_id)
    assert len(own(parent_events, "node.started", "call")) <= 2  # first run, resumed run
    assert len(own(parent_events, "execution.completed")) == 1


@pytest.mark.parametrize("answer_when", ["after the new worker started", "while no worker runs"])
async def test_a_parent_parked_on_its_child_survives_kill_9_of_the_only_worker(
    services: Services, api: httpx.AsyncClient, answer_when: str
) -> None:
    """One worker. The child waits for input (``wait_input``); the parent waits for the child;
    both are parked (no worker holds them). The only worker is killed with SIGKILL; the child
    is answered over the API, either once a new worker runs or while none does (its job then
    waits in the queue for the new worker). The new worker runs the child to its end, whose
    answer wakes the parent: the parent completes on the new worker with the child's answer,
    and there is still exactly one child."""
    settings = services.settings
    workers = {"first": await asyncio.to_thread(start_worker, settings, WFE_WORKER_ID="first")}
    child = {
        "id": "asker",
        "nodes": [
            {"id": "ask", "type": "wait_input", "inputs": {"prompt": "ok?"}},
            {"id": "out", "type": "output", "inputs": {"value": "{{ nodes.ask.output }}"}},
        ],
        "edges": [{"source": "ask", "target": "out"}],
    }
    submitted = await services.submitter.submit(Submission(calling(child, "asking")))
    parent_id = submitted.execution_id
    answer = {"approved": True, "by": "someone"}

    async def answer_the_child() -> None:
        answered = await api.post(f"/api/workflow/resume/{child_id}", json={"input": answer})
        assert answered.status_code == 202, answered.text

    try:
        child_id = (await the_child(api, "asker", "waiting"))["executionId"]
        await wait_until(lambda: parked(services, child_id), 20, "the child to park")
        await wait_until(lambda: parked(services, parent_id), 20, "the parent to park")
        await asyncio.to_thread(workers.pop("first").kill)
        if answer_when == "while no worker runs":
            await answer_the_child()
            still = await services.store.get(parent_id)
            assert still is not None
            assert still.status is ExecutionStatus.WAITING  # nobody ran it meanwhile
        workers["second"] = await asyncio.to_thread(start_worker, settings, WFE_WORKER_ID="second")
        if answer_when == "after the new worker started":
            await answer_the_child()
        final = await reaches(api, parent_id, "completed")
    finally:
        await stop_all(workers)

    assert final["result"] == answer
    assert {n["nodeId"]: n for n in final["nodes"]}["call"]["output"] == answer
    [run] = await executions_of(api, "asker")
    assert (run["executionId"], run["parentExecutionId"], run["parentNodeId"]) == (
        child_id,
        parent_id,
        "call",
    )
    assert run["status"] == "completed"
    for execution_id in (parent_id, child_id):
        started = own(await events_of(settings, execution_id), "execution.started")
        # parked by the first worker, resumed by the one started after the kill
        assert [(e.data["workerId"], e.data["resumed"]) for e in started] == [
            ("first", False),
            ("second", True),
        ], execution_id


async def test_cancelling_the_top_cancels_its_child_and_grandchild_across_processes(
    services: Services, api: httpx.AsyncClient
) -> None:
    """Two workers (delays up to 60 s are not parked). The top and the middle execution are
    parked on their children; the grandchild runs a 30 s ``delay`` in one of the worker
    processes. ``POST /api/workflow/cancel/{top}`` (the API in this process) answers 200 and,
    long before the delay could end, all three are ``cancelled`` in the store, each with its
    own ``execution.cancelled`` event; the grandchild's worker stopped its delay (the node is
    not completed) and both worker processes are still alive and take new work."""
    settings = services.settings
    workers = {
        name: await asyncio.to_thread(
            start_worker, settings, WFE_WORKER_ID=name, WFE_PARK_AFTER_S="60"
        )
        for name in ("left", "right")
    }
    leaf = {"id": "leaf", "nodes": [{"id": "nap", "type": "delay", "inputs": {"seconds": 30}}]}
    middle = calling(leaf, "middle")
    submitted = await services.submitter.submit(Submission(calling(middle, "top")))
    top_id = submitted.execution_id
    try:
        middle_id = (await the_child(api, "middle", "waiting"))["executionId"]
        leaf_id = (await the_child(api, "leaf", "running"))["executionId"]

        async def leaf_napping() -> bool:
            return bool(own(await events_of(settings, leaf_id), "node.started", "nap"))

        await wait_until(leaf_napping, 20, "the grandchild to start its delay")
        await wait_until(lambda: parked(services, top_id), 20, "the top to park")
        await wait_until(lambda: parked(services, middle_id), 20, "the middle to park")

        began = time.monotonic()
        cancelled = await api.post(f"/api/workflow/cancel/{top_id}")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json() == {"executionId": top_id, "status": "cancelled"}
        for execution_id in (top_id, middle_id, leaf_id):
            await reaches(api, execution_id, "cancelled")
        elapsed = time.monotonic() - began
        assert all(w.proc.poll() is None for w in workers.values())
        # the workers still work
        echo = {"id": "after", "nodes": [{"id": "e", "type": "echo", "inputs": {"v": 1}}]}
        after = (await services.submitter.submit(Submission(echo))).execution_id
        done = await reaches(api, after, "completed")
    finally:
        await stop_all(workers)

    assert elapsed < 15, f"the cascade took {elapsed:.1f}s"
    assert done["context"]["status"] == "completed"
    for execution_id in (top_id, middle_id, leaf_id):
        record = await services.store.get(execution_id)
        assert record is not None
        assert record.status is ExecutionStatus.CANCELLED, (execution_id, record.status)
        events = await events_of(settings, execution_id)
        assert len(own(events, "execution.cancelled")) == 1, execution_id
        assert not own(events, "execution.completed"), execution_id
    nap = {n["nodeId"]: n for n in (await status(api, leaf_id))["nodes"]}.get("nap")
    assert nap is None or nap["status"] != "completed", nap
    leaf_events = await events_of(settings, leaf_id)
    assert not own(leaf_events, "node.completed", "nap")
    # each child is linked to the node that started it
    [middle_run] = await executions_of(api, "middle")
    [leaf_run] = await executions_of(api, "leaf")
    assert (middle_run["parentExecutionId"], middle_run["parentNodeId"]) == (top_id, "call")
    assert (leaf_run["parentExecutionId"], leaf_run["parentNodeId"]) == (middle_id, "call")
