"""Parked executions hold no worker memory: ten thousand of them wait on ``wait_input`` with
one worker process, whose peak RSS stays under 300 MB, and the API resumes any of them."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import httpx
import pytest

from tests.support.processes import start_worker, wait_until
from workflow_engine.api.services import Services
from workflow_engine.queue.submit import Submission

PARKED = 10_000
RSS_LIMIT_MB = 300

DEFINITION = {
    "id": "ask_a_number",
    "nodes": [
        {
            "id": "ask",
            "type": "wait_input",
            "inputs": {"prompt": "A number?", "schema": {"type": "integer"}},
        },
        {"id": "double", "type": "output", "inputs": {"value": "{{ nodes.ask.output * 2 }}"}},
    ],
    "edges": [{"source": "ask", "target": "double"}],
}


def memory_mb(pid: int) -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory of a process."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in {"VmRSS", "VmHWM"}:
            values[name] = int(rest.split()[0]) / 1024
    return values


@pytest.mark.timeout(600)  # 10,000 runs: two minutes is not enough on a busy 2-core machine
async def test_ten_thousand_parked_executions_with_one_worker(
    services: Services, api: httpx.AsyncClient
) -> None:
    settings = services.settings
    worker = await asyncio.to_thread(start_worker, settings, WFE_QUEUES__WORKFLOW__CONCURRENCY="64")
    try:
        ids: list[str] = []
        for _ in range(PARKED // 250):
            batch = await asyncio.gather(
                *(services.submitter.submit(Submission(DEFINITION)) for _ in range(250))
            )
            ids += [s.execution_id for s in batch]

        async def all_parked() -> bool:  # recorded waiting, and each a delayed job in Redis
            waiting = (await services.store.count_by_status())["waiting"]
            delayed = (await services.queues.counts())["workflow"]["delayed"]
            return waiting == delayed == PARKED

        await wait_until(all_parked, 600, f"{PARKED} executions to park")
        memory = memory_mb(worker.proc.pid)
        print(
            f"{PARKED} parked executions, one worker: RSS {memory['VmRSS']:.0f} MB, "
            f"peak {memory['VmHWM']:.0f} MB"
        )
        assert memory["VmHWM"] < RSS_LIMIT_MB

        chosen = random.Random(7).sample(ids, 3)
        for number, execution_id in enumerate(chosen):
            answered = await api.post(
                f"/api/workflow/resume/{execution_id}", json={"input": number}
            )
            assert answered.status_code == 202, answered.text

        async def resumed() -> bool:
            records = [await services.store.get(i) for i in chosen]
            return all(r is not None and r.status == "completed" for r in records)

        await wait_until(resumed, 30, "the answered executions to complete")
        for number, execution_id in enumerate(chosen):
            record = await services.store.get(execution_id)
            assert record is not None
            assert record.result == number * 2
    finally:
        await asyncio.to_thread(worker.stop)
