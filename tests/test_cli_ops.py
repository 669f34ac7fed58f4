"""The operations commands (``wfe ls``, ``events``, ``resume``, ``rerun``, ``schedules``,
``--version``), ``submit --wait`` on a waiting or failing execution, the client commands'
default URL and ``wfe dev`` on a taken port: run as a user runs them, against the API served
on a real socket and a worker in this process."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shlex
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import make_settings
from tests.support.processes import WFE, wait_until
from tests.support.served import served
from tests.support.services import RedisServer, free_port
from workflow_engine import __version__
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services
from workflow_engine.config import Settings
from workflow_engine.worker.worker import WorkerService

ROOT = Path(__file__).resolve().parents[1]
FINAL = {"completed", "failed", "cancelled", "skipped"}

FAILING = {
    "id": "failing",
    "nodes": [
        {"id": "ok", "type": "transform", "inputs": {"value": 1}},
        {"id": "boom", "type": "fail", "inputs": {"message": "card declined"}},
    ],
    "edges": [{"source": "ok", "target": "boom"}],
}
ASK_EACH = {
    "id": "ask_each",
    "nodes": [
        {
            "id": "loop",
            "type": "loop",
            "inputs": {
                "items": ["a", "b"],
                "max_parallel": 2,
                "body": {
                    "nodes": [
                        {
                            "id": "ask",
                            "type": "wait_input",
                            "inputs": {
                                "prompt": "ok {{ item }}?",
                                "schema": {"type": "integer", "minimum": 1},
                            },
                        }
                    ],
                    "edges": [],
                    "output": "ask",
                },
            },
        }
    ],
}


@pytest.fixture
def settings(redis_server: RedisServer, tmp_path: Path) -> Settings:
    # a delay longer than 0.2 s parks the execution: waiting for time, not for a person
    return make_settings(redis_server.url, f"sqlite:///{tmp_path}/wfe.db", park_after_s=0.2)


@pytest.fixture
async def base(services: Services) -> AsyncIterator[str]:
    async with served(create_app(services.settings, services)) as address:
        yield f"http://{address}"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFE_") and k != "PORT"}
    return env | extra


async def wfe(base: str | None, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a thread (the API it talks to is served by this test's event loop);
    ``base`` as WFE_API_URL, unless None."""
    extra = env if base is None else {"WFE_API_URL": base, **env}
    return await asyncio.to_thread(
        subprocess.run,
        [WFE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(**extra),
        cwd=ROOT,
    )


def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


async def status_of(base: str, execution_id: str, nodes: bool = False) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base) as api:
        params = {"nodes": "true"} if nodes else {}
        answer = await api.get(f"/api/workflow/status/{execution_id}", params=params)
    body: dict[str, Any] = answer.json()
    return body


async def reaches(base: str, execution_id: str, *statuses: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        status = await status_of(base, execution_id)
        return status if status["context"]["status"] in statuses else None

    found: dict[str, Any] = await wait_until(check, 30, f"{execution_id} to be {statuses}")
    return found


async def asks(base: str, execution_id: str, node_id: str) -> None:
    """Until the execution waits, and its node ``node_id`` waits for an answer."""

    async def check() -> bool:
        status = await status_of(base, execution_id, nodes=True)
        nodes = {n["nodeId"]: n for n in status["nodes"]}
        node = nodes.get(node_id, {})
        return status["context"]["status"] == "waiting" and node.get("status") == "waiting"

    await wait_until(check, 30, f"{node_id} to wait for an answer")


async def submitted(base: str, *args: str) -> str:
    done = await wfe(base, "submit", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def answer_commands(stderr: str) -> list[list[str]]:
    """The ``wfe resume ...`` commands ``submit --wait`` printed, as argv."""
    return [
        shlex.split(line.split("answer: ", 1)[1])
        for line in stderr.splitlines()
        if "answer: wfe resume " in line
    ]


# -- wfe --version, the default URL -----------------------------------------------------------


async def test_version_prints_the_package_version() -> None:
    done = await wfe(None, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"workflow-engine {__version__}\n"


async def test_client_commands_default_to_the_host_and_port_the_server_uses(base: str) -> None:
    port = base.rsplit(":", 1)[1]
    for env in ({"WFE_PORT": port}, {"WFE_PORT": port, "WFE_HOST": "0.0.0.0"}, {"PORT": port}):
        done = await wfe(None, "stats", **env)
        assert done.returncode == 0, (env, done.stderr)
        assert "executions" in json.loads(done.stdout)
    closed = str(free_port())
    # --url / WFE_API_URL win over WFE_PORT
    done = await wfe(base, "stats", WFE_PORT=closed)
    assert done.returncode == 0, done.stderr
    done = await wfe(None, "stats", "--url", base, WFE_PORT=closed)
    assert done.returncode == 0, done.stderr
    refused = await wfe(None, "stats", WFE_PORT=closed, WFE_HOST="::1")
    assert refused.returncode == 1
    assert f"cannot reach http://[::1]:{closed}" in refused.stderr


# -- wfe ls -----------------------------------------------------------------------------------


async def test_ls_lists_the_tenants_executions_newest_first(base: str) -> None:
    first = await submitted(base, "examples/if_else.json")
    second = await submitted(base, "examples/diamond.json")
    third = await submitted(base, "examples/if_else.json")

    listed = await wfe(base, "ls")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (third, "pending", "if_else"),
        (second, "pending", "diamond"),
        (first, "pending", "if_else"),
    ]
    assert all(r[3].endswith("Z") for r in rows)  # createdAt

    only = await wfe(base, "ls", "--workflow-id", "diamond")
    assert [line.split("\t")[0] for line in only.stdout.splitlines()] == [second]
    assert (await wfe(base, "ls", "--status", "completed")).stdout == ""
    pending = await wfe(base, "ls", "--status", "pending", "--limit", "2")
    assert [line.split("\t")[0] for line in pending.stdout.splitlines()] == [third, second]
    assert "more with a larger --limit" in pending.stderr
    as_json = json.loads((await wfe(base, "ls", "--json")).stdout)
    assert [(c["executionId"], c["workflowId"]) for c in as_json] == [
        (third, "if_else"),
        (second, "diamond"),
        (first, "if_else"),
    ]
    wrong = await wfe(base, "ls", "--status", "sleeping")
    assert wrong.returncode == 2
    assert "sleeping" in wrong.stderr


# -- submit --wait ----------------------------------------------------------------------------


async def test_submit_wait_on_a_wait_input_prints_how_to_answer_then_resume_answers_it(
    base: str, worker: WorkerService
) -> None:
    waited = await wfe(
        base, "submit", "examples/approval.json", "-i", "order=A1", "-i", "amount=120", "--wait"
    )
    assert waited.returncode == 3, waited.stderr
    assert waited.stdout == ""
    assert "is waiting for input" in waited.stderr
    assert "ask: Refund 120 for order A1?" in waited.stderr
    [command] = answer_commands(waited.stderr)
    execution_id = command[2]
    assert command == [
        "wfe",
        "resume",
        execution_id,
        "--input",
        '{"approved": true, "note": "..."}',
    ]
    assert (await status_of(base, execution_id))["context"]["status"] == "waiting"

    not_json = await wfe(base, "resume", execution_id, "--input", "{approved: yes}")
    assert not_json.returncode == 2
    assert "--input is not JSON" in not_json.stderr
    breaks_schema = await wfe(base, "resume", execution_id, "--input", '{"approved": "x"}')
    assert breaks_schema.returncode == 1
    assert "error 422" in breaks_schema.stderr
    assert "input.approved: 'x' is not of type 'boolean'" in breaks_schema.stderr

    answered = await wfe(base, *command[1:])  # exactly as printed
    assert answered.returncode == 0, answered.stderr
    assert json.loads(answered.stdout) == {
        "executionId": execution_id,
        "nodeId": "ask",
        "status": "resumed",
    }
    final = await reaches(base, execution_id, *FINAL)
    assert final["result"] == {"order": "A1", "status": "refunded", "note": "..."}
    again = await wfe(base, "resume", execution_id, "--input", "{}")
    assert again.returncode == 1
    assert "error 409" in again.stderr


async def test_submit_wait_names_each_waiting_iteration_with_its_node(
    base: str, worker: WorkerService, tmp_path: Path
) -> None:
    waited = await wfe(base, "submit", str(write(tmp_path / "ask.json", ASK_EACH)), "--wait")
    assert waited.returncode == 3, waited.stderr
    assert "loop[0].ask: ok a?" in waited.stderr
    assert "loop[1].ask: ok b?" in waited.stderr
    commands = answer_commands(waited.stderr)
    execution_id = commands[0][2]
    assert commands == [
        ["wfe", "resume", execution_id, "--node", node, "--input", "1"]
        for node in ("loop[0].ask", "loop[1].ask")
    ]
    for command in commands:
        await asks(base, execution_id, command[4])  # (not while it runs on the first answer)
        answered = await wfe(base, *command[1:])
        assert answered.returncode == 0, answered.stderr
    assert (await reaches(base, execution_id, *FINAL))["result"] == {"loop": [1, 1]}


async def test_submit_wait_follows_a_wait_for_time_to_the_end(
    base: str, worker: WorkerService, tmp_path: Path
) -> None:
    nap = {"id": "nap", "nodes": [{"id": "nap", "type": "delay", "inputs": {"seconds": 0.5}}]}
    done = await wfe(base, "submit", str(write(tmp_path / "nap.json", nap)), "--wait")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"nap": {"delayed": 0.5}}
    [execution_id] = [line.split("\t")[0] for line in (await wfe(base, "ls")).stdout.splitlines()]
    events = await wfe(base, "events", execution_id)
    assert "execution.waiting" in [json.loads(line)["type"] for line in events.stdout.splitlines()]


async def test_submit_wait_on_a_failure_names_the_node_on_stderr_and_prints_nothing(
    base: str, worker: WorkerService, tmp_path: Path
) -> None:
    failed = await wfe(base, "submit", str(write(tmp_path / "f.json", FAILING)), "--wait")
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert "execution failed at node 'boom': card declined" in failed.stderr


# -- wfe events -------------------------------------------------------------------------------


async def test_events_prints_what_is_recorded_and_follow_waits_for_the_end(
    base: str, worker: WorkerService
) -> None:
    execution_id = await submitted(
        base, "examples/approval.json", "-i", "order=B2", "-i", "amount=5"
    )
    await reaches(base, execution_id, "waiting")

    so_far = await wfe(base, "events", execution_id)  # returns though the execution waits
    assert so_far.returncode == 0, so_far.stderr
    recorded = [json.loads(line) for line in so_far.stdout.splitlines()]
    assert recorded[0]["type"] == "execution.queued"
    assert recorded[-1]["type"] == "execution.waiting"
    assert {e["executionId"] for e in recorded} == {execution_id}
    assert recorded[-1]["data"]["nodes"][0]["prompt"] == "Refund 5 for order B2?"

    async with following(base, execution_id) as follower:
        for event in recorded:  # the replay first
            assert json.loads(await next_line(follower))["id"] == event["id"]
        async with httpx.AsyncClient(base_url=base) as api:
            resumed = await api.post(
                f"/api/workflow/resume/{execution_id}", json={"input": {"approved": False}}
            )
        assert resumed.status_code == 202
        rest = []
        while (line := await next_line(follower)) != "":
            rest.append(json.loads(line))
    assert rest[0]["type"] == "execution.started"
    assert rest[-1]["type"] == "execution.completed"
    assert rest[-1]["data"]["result"] == {"order": "B2", "status": "rejected", "note": ""}

    ended = await wfe(base, "events", execution_id)  # an ended execution: all, to its end
    assert [json.loads(line) for line in ended.stdout.splitlines()] == [*recorded, *rest]
    unknown = await wfe(base, "events", "exec_nope")
    assert unknown.returncode == 1
    assert "error 404" in unknown.stderr


async def next_line(follower: asyncio.subprocess.Process, timeout: float = 30) -> str:
    """The next line ``wfe events --follow`` printed ("" once it exited), with a deadline."""
    assert follower.stdout is not None
    raw = await asyncio.wait_for(follower.stdout.readline(), timeout)
    return raw.decode()


@asynccontextmanager
async def following(base: str, execution_id: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """``wfe events ID --follow`` as a child process, which must exit 0 by the block's end."""
    follower = await asyncio.create_subprocess_exec(
        WFE,
        "events",
        execution_id,
        "--follow",
        env=_env(WFE_API_URL=base),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        yield follower
        assert await asyncio.wait_for(follower.wait(), 30) == 0
    finally:
        if follower.returncode is None:
            follower.kill()
            await follower.wait()


# -- wfe rerun ------------------------------------------------------------------------------


async def test_rerun_from_a_node_prints_the_new_execution_id(
    base: str, worker: WorkerService
) -> None:
    first = await wfe(base, "submit", "examples/if_else.json", "-i", "total=20", "--wait")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"tier": "std", "total": 20}
    [execution_id] = [line.split("\t")[0] for line in (await wfe(base, "ls")).stdout.splitlines()]

    rerun = await wfe(base, "rerun", execution_id, "--from", "check")
    assert rerun.returncode == 0, rerun.stderr
    new_id = rerun.stdout.strip()
    assert new_id.startswith("exec_")
    assert new_id != execution_id
    final = await reaches(base, new_id, *FINAL)
    assert final["context"]["metadata"] == {"rerunOf": execution_id, "fromNode": "check"}
    assert final["result"] == {"tier": "std", "total": 20}

    # given inputs replace the first ones (`order`, from which it runs again, reads them)
    with_inputs = await wfe(base, "rerun", execution_id, "--from", "order", "-i", "total=500")
    assert with_inputs.returncode == 0, with_inputs.stderr
    final = await reaches(base, with_inputs.stdout.strip(), *FINAL)
    assert final["result"] == {"tier": "vip", "total": 500}

    unknown = await wfe(base, "rerun", execution_id, "--from", "nope")
    assert unknown.returncode == 1
    assert "fromNode: the workflow has no node 'nope'" in unknown.stderr


# -- wfe schedules --------------------------------------------------------------------------


async def test_schedules_lists_and_removes_schedules(base: str) -> None:
    definition = json.loads((ROOT / "examples/diamond.json").read_text())
    async with httpx.AsyncClient(base_url=base) as api:
        hourly = await api.post(
            "/api/workflow/execute",
            json={"workflowDefinition": definition, "repeat": {"every": 3_600_000}},
        )
        weekly = await api.post(
            "/api/workflow/execute",
            json={
                "workflowDefinition": definition,
                "repeat": {"cron": "0 9 * * 1", "tz": "Europe/Paris", "limit": 3},
            },
        )
    ids = {hourly.json()["scheduleId"], weekly.json()["scheduleId"]}

    listed = await wfe(base, "schedules")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split("\t")[0]: line.split("\t") for line in listed.stdout.splitlines()}
    assert set(rows) == ids
    assert rows[hourly.json()["scheduleId"]][1:2] == ["every 3600000ms"]
    assert rows[weekly.json()["scheduleId"]][1:4] == [
        "cron 0 9 * * 1 Europe/Paris limit 3",
        weekly.json()["nextRunAt"],
        "diamond",
    ]
    as_json = json.loads((await wfe(base, "schedules", "--json")).stdout)
    assert {s["scheduleId"] for s in as_json} == ids

    removed = await wfe(base, "schedules", "rm", hourly.json()["scheduleId"])
    assert removed.returncode == 0, removed.stderr
    assert f"deleted schedule {hourly.json()['scheduleId']}" in removed.stderr
    left = await wfe(base, "schedules")
    assert [line.split("\t")[0] for line in left.stdout.splitlines()] == [
        weekly.json()["scheduleId"]
    ]
    again = await wfe(base, "schedules", "rm", hourly.json()["scheduleId"])
    assert again.returncode == 1
    assert "error 404" in again.stderr


# -- a taken port ---------------------------------------------------------------------------


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def _one_line_about(port: int, done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"port {port} on 127.0.0.1 is taken" in done.stderr
    assert "--port N or WFE_PORT=N" in done.stderr


def test_dev_and_api_on_a_taken_port_say_so_in_one_line(taken_port: int, tmp_path: Path) -> None:
    for argv, env in (
        ([WFE, "dev", "--port", str(taken_port)], {}),
        ([WFE, "dev"], {"WFE_PORT": str(taken_port)}),
        ([WFE, "api", "--port", str(taken_port)], {}),
    ):
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=60, env=_env(**env), cwd=tmp_path
        )
        _one_line_about(taken_port, done)
    assert not (tmp_path / ".wfe").exists()  # nothing started


def test_scripts_dev_on_a_taken_port_says_so_in_one_line(taken_port: int) -> None:
    venv = Path(sys.prefix)
    stamp = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    if not (venv / f".installed-{stamp}").exists():  # (scripts/_env.sh's test)
        pytest.skip("scripts/dev would install the project into this venv first")
    done = subprocess.run(
        [str(ROOT / "scripts/dev"), "--port", str(taken_port)],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(WFE_VENV=str(venv)),
    )
    _one_line_about(taken_port, done)
