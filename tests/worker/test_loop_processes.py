"""A loop over the real service: ``kill -9`` of the worker running it resumes the unfinished
iterations only. Each item's POST reaches the counting server once, except the ones in flight
at a kill; the iterations' results are stored as ``loop[<index>].<bodyNodeId>``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support.http_server import LocalHttpServer
from tests.support.processes import Process, start_worker, wait_until
from tests.worker.test_durable import reaches, status
from tests.worker.test_durable_processes import events_of
from workflow_engine.api.services import Services
from workflow_engine.queue.submit import Submission
from workflow_engine.vocabulary import ExecutionStatus

ITEMS = 40
KILLS = 2


def loop_workflow(base_url: str) -> dict[str, Any]:
    body = {
        "nodes": [
            {
                "id": "fetch",
                "type": "http",
                "inputs": {
                    "method": "POST",
                    "url": f"{base_url}/echo/{{{{ item }}}}",
                    "json": {"index": "{{ index }}"},
                },
            },
            {"id": "nap", "type": "delay", "inputs": {"seconds": 0.05}},
            {
                "id": "out",
                "type": "transform",
                "inputs": {"value": "{{ nodes.fetch.output.status }}"},
            },
        ],
        "edges": [{"source": "fetch", "target": "nap"}, {"source": "nap", "target": "out"}],
        "output": "out",
    }
    return {
        "id": "looped",
        "nodes": [
            {"id": "loop", "type": "loop", "inputs": {"items": "{{ inputs.items }}", "body": body}},
            {"id": "done", "type": "output", "inputs": {"value": "{{ nodes.loop.output }}"}},
        ],
        "edges": [{"source": "loop", "target": "done"}],
    }


@pytest.fixture
async def counting_server() -> AsyncIterator[LocalHttpServer]:
    server = await LocalHttpServer().start()
    yield server
    await server.stop()


async def test_kill_9_during_a_loop_resumes_the_unfinished_iterations_only(
    services: Services, api: httpx.AsyncClient, counting_server: LocalHttpServer
) -> None:
    settings = services.settings
    env = {"WFE_MAX_STALLED_COUNT": "100"}
    spawned = 0

    def spawn() -> Process:
        nonlocal spawned
        spawned += 1
        return start_worker(settings, WFE_WORKER_ID=f"loop{spawned}", **env)

    worker = await asyncio.to_thread(spawn)
    items = list(range(ITEMS))
    submitted = await services.submitter.submit(
        Submission(loop_workflow(counting_server.base_url), inputs={"items": items})
    )
    execution_id = submitted.execution_id
    try:
        for kill in range(KILLS):
            threshold = (kill + 1) * ITEMS // (KILLS + 2)

            async def iterations_done(at_least: int = threshold) -> bool:
                events = await events_of(settings, execution_id)
                done = {
                    e.data["nodeId"]
                    for e in events
                    if e.type == "node.completed" and str(e.data["nodeId"]).endswith("].out")
                }
                return len(done) >= at_least

            await wait_until(iterations_done, 30, f"{threshold} iterations")
            await asyncio.to_thread(worker.kill)
            worker = await asyncio.to_thread(spawn)

        async def finished() -> bool:
            record = await services.store.get(execution_id)
            return record is not None and record.status is ExecutionStatus.COMPLETED

        await wait_until(finished, 60, "the execution to complete")
    finally:
        await asyncio.to_thread(worker.stop)

    record = await services.store.get(execution_id)
    assert record is not None
    assert record.result == [200] * ITEMS
    hits = {int(path.rsplit("/", 1)[1]): n for path, n in counting_server.hits.items()}
    assert set(hits) == set(items)
    repeated = {item: n for item, n in hits.items() if n > 1}
    print(f"loop kill -9: {KILLS} kills, calls made again for items {sorted(repeated)}")
    # only a call in flight at a kill is made again (max_parallel 1: one per kill at most)
    assert len(repeated) <= KILLS, repeated
    assert all(n == 2 for n in repeated.values()), repeated

    answer = await api.get(f"/api/workflow/status/{execution_id}", params={"nodes": "true"})
    assert answer.status_code == 200
    nodes = {n["nodeId"]: n for n in answer.json()["nodes"]}
    assert nodes["loop[3].fetch"]["status"] == "completed"
    assert nodes["loop[3].fetch"]["output"]["status"] == 200
    assert nodes["loop[3].out"]["output"] == 200
    assert {f"loop[{i}].fetch" for i in items} <= set(nodes)
    assert nodes["loop"]["output"] == [200] * ITEMS
    started = [e for e in await events_of(settings, execution_id) if e.type == "execution.started"]
    assert len(started) == KILLS + 1
    assert all(e.data["resumed"] for e in started[1:])


@pytest.mark.usefixtures("worker")
async def test_a_waiting_iteration_parks_the_execution_and_its_answer_resumes_it(
    api: httpx.AsyncClient,
) -> None:
    body = {
        "nodes": [
            {"id": "ask", "type": "wait_input", "inputs": {"prompt": "ok {{ item }}?"}},
            {"id": "out", "type": "transform", "inputs": {"value": "{{ nodes.ask.output }}"}},
        ],
        "edges": [{"source": "ask", "target": "out"}],
        "output": "out",
    }
    definition = {
        "id": "ask_each",
        "nodes": [
            {
                "id": "loop",
                "type": "loop",
                "inputs": {"items": ["a", "b"], "body": body, "max_parallel": 2},
            }
        ],
    }
    submitted = await api.post("/api/workflow/execute", json={"workflowDefinition": definition})
    execution_id = submitted.json()["executionId"]
    parked = await reaches(api, execution_id, "waiting")
    nodes = {n["nodeId"]: n for n in parked["nodes"]}
    assert nodes["loop"]["output"] == {
        "waitingFor": "iterations",
        "nodes": ["loop[0].ask", "loop[1].ask"],
    }
    assert nodes["loop[1].ask"]["output"]["prompt"] == "ok b?"

    for index, answer in ((1, "yes b"), (0, "yes a")):
        answered = await api.post(
            f"/api/workflow/resume/{execution_id}",
            json={"nodeId": f"loop[{index}].ask", "input": answer},
        )
        assert answered.status_code == 202, answered.json()
        if index == 1:  # the other iteration still waits: the execution parks again

            async def parked_again() -> bool:
                answer = await status(api, execution_id)
                nodes = {n["nodeId"]: n for n in answer["nodes"]}
                out = nodes.get("loop[1].out", {}).get("status")
                return answer["context"]["status"] == "waiting" and out == "completed"

            await wait_until(parked_again, 20, "iteration 1 to finish, iteration 0 to wait")
    final = await reaches(api, execution_id, "completed")
    assert final["result"] == {"loop": ["yes a", "yes b"]}
