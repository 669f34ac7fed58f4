"""Issue 15: the ``code`` node's sandbox (SPEC §9) under attack, on a real worker. Each attack
fails its node with a clear error (type ``sandbox`` or ``timeout``), leaks nothing, and another
execution on the same worker completes while it runs."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis.asyncio as aioredis

from tests.conftest import make_settings
from tests.support.processes import wait_until
from tests.support.services import RedisServer
from workflow_engine.api.services import Services
from workflow_engine.config import Settings
from workflow_engine.events.model import Event, decode_entry
from workflow_engine.keys import Keys
from workflow_engine.queue.submit import Submission
from workflow_engine.store.records import ExecutionRecord
from workflow_engine.vocabulary import ExecutionStatus
from workflow_engine.worker.worker import WorkerService

SECRET = "wfe-sandbox-secret-7f3a9c"


@pytest.fixture
def secret_env() -> Iterator[None]:
    """A secret in the worker's environment (the worker runs in this process)."""
    os.environ["WFE_TEST_SANDBOX_SECRET"] = SECRET
    yield
    del os.environ["WFE_TEST_SANDBOX_SECRET"]


@pytest.fixture
def settings(redis_server: RedisServer, tmp_path: Path) -> Settings:
    # a 1 s CPU limit: the infinite loops end quickly
    return make_settings(
        redis_server.url, f"sqlite:///{tmp_path}/wfe.db", code_timeout_s=1, code_pool_size=2
    )


@pytest.fixture
async def services(settings: Settings, secret_env: None) -> AsyncIterator[Services]:
    opened = await Services.open(settings)
    yield opened
    await opened.close()


def code_wf(language: str, code: str) -> dict[str, Any]:
    node = {"id": "c", "type": "code", "inputs": {"language": language, "code": code}}
    return {"id": "attack", "nodes": [node]}


async def finished(services: Services, execution_id: str, timeout: float = 30) -> ExecutionRecord:
    async def check() -> ExecutionRecord | None:
        record = await services.store.get(execution_id)
        return record if record and record.status in {"completed", "failed", "cancelled"} else None

    result: ExecutionRecord = await wait_until(check, timeout, f"{execution_id} to finish")
    return result


async def events_of(settings: Settings, execution_id: str) -> list[Event]:
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        key = Keys(settings.queue_prefix).events(execution_id)
        entries = cast(list[tuple[str, dict[str, str]]], await client.xrange(key))
        return [decode_entry(execution_id, i, f) for i, f in entries]
    finally:
        await client.aclose()


async def attack(
    services: Services, language: str, code: str, *, expected: set[str] | None = None
) -> dict[str, Any]:
    """Run ``code`` on the worker while a harmless execution runs there too; return the
    attack's error (its type one of ``expected``) after checking the other one completed."""
    submit = services.submitter.submit
    bad = await submit(Submission(code_wf(language, code)))
    good = await submit(
        Submission(code_wf("python", "def main():\n    return 'fine'\n"), queue="realtime")
    )
    good_record = await finished(services, good.execution_id)
    assert good_record.status is ExecutionStatus.COMPLETED, good_record.error
    assert good_record.result == {"c": "fine"}
    record = await finished(services, bad.execution_id)
    assert record.status is ExecutionStatus.FAILED
    error = record.error
    assert error is not None
    assert error["type"] in (expected or {"sandbox"}), error
    assert SECRET not in str(error)
    return error


# -- files --------------------------------------------------------------------------------------

PY_READS = {
    "passwd": "def main():\n    return open('/etc/passwd').read()\n",
    "worker files": f"import os\ndef main():\n    return os.listdir({os.getcwd()!r})\n",
    "worker env via /proc": f"def main():\n    return open('/proc/{os.getpid()}/environ').read()\n",
    "write outside": "def main():\n    open('/tmp/wfe-sandbox-escape', 'w').write('x')\n",
}


@pytest.mark.parametrize("code", PY_READS.values(), ids=PY_READS.keys())
async def test_python_reads_no_file_outside_its_dir(
    services: Services, worker: WorkerService, code: str
) -> None:
    error = await attack(services, "python", code)
    assert "Permission denied" in error["message"]
    assert not os.path.exists("/tmp/wfe-sandbox-escape")  # noqa: ASYNC240 - one stat


@pytest.mark.parametrize(
    "code",
    [
        "function main() { return Deno.readTextFileSync('/etc/passwd') }",
        "async function main() { const fs = await import('node:fs'); return 1 }",
        "function main() {"
        " return this.constructor.constructor('return Deno')().readTextFileSync('/etc/passwd') }",
    ],
    ids=["Deno.readTextFile", "import node:fs", "escape to the outer realm"],
)
async def test_javascript_reads_no_file(
    services: Services, worker: WorkerService, code: str
) -> None:
    await attack(services, "javascript", code)


# -- network ------------------------------------------------------------------------------------


@pytest.fixture
async def listener() -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP listener on loopback that counts the connections it sees."""
    seen: list[int] = []

    async def accept(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(1)
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield port, seen
    server.close()
    await server.wait_closed()


async def test_python_opens_no_socket(
    services: Services, worker: WorkerService, listener: tuple[int, list[int]]
) -> None:
    port, seen = listener
    code = (
        "import socket\ndef main():\n"
        f"    s = socket.create_connection(('127.0.0.1', {port}))\n    return 'connected'\n"
    )
    error = await attack(services, "python", code)
    assert "system call the sandbox forbids" in error["message"]
    assert seen == []


async def test_javascript_opens_no_connection(
    services: Services, worker: WorkerService, listener: tuple[int, list[int]]
) -> None:
    port, seen = listener
    code = (
        f"async function main() {{ return await (await fetch('http://127.0.0.1:{port}/')).text() }}"
    )
    await attack(services, "javascript", code)
    assert seen == []


# -- environment --------------------------------------------------------------------------------


async def test_python_sees_no_environment(services: Services, worker: WorkerService) -> None:
    code = "import os\ndef main():\n    return dict(os.environ)\n"
    record = await finished(
        services,
        (await services.submitter.submit(Submission(code_wf("python", code)))).execution_id,
    )
    assert record.status is ExecutionStatus.COMPLETED
    assert record.result == {"c": {}}


async def test_javascript_sees_no_environment(services: Services, worker: WorkerService) -> None:
    await attack(services, "javascript", "function main() { return Deno.env.toObject() }")


# -- processes ----------------------------------------------------------------------------------

PY_PROCESSES = {
    "os.system": "import os\ndef main():\n    return os.system('id')\n",
    "subprocess": "import subprocess\ndef main():\n    return subprocess.run(['id']).returncode\n",
    "fork bomb": "import os\ndef main():\n    while True:\n        os.fork()\n",
    "thread": "import threading\ndef main():\n    threading.Thread(target=print).start()\n",
    "ctypes system": "import ctypes\ndef main():\n    return ctypes.CDLL(None).system(b'id')\n",
    "ctypes syscall socket": (
        "import ctypes\ndef main():\n    return ctypes.CDLL(None).syscall(41, 2, 1, 0)\n"
    ),
    "kill the worker": f"import os\ndef main():\n    os.kill({os.getpid()}, 9)\n",
}


@pytest.mark.parametrize("code", PY_PROCESSES.values(), ids=PY_PROCESSES.keys())
async def test_python_starts_no_process(
    services: Services, worker: WorkerService, code: str
) -> None:
    error = await attack(services, "python", code)
    assert "system call the sandbox forbids" in error["message"]


async def test_javascript_starts_no_process(services: Services, worker: WorkerService) -> None:
    await attack(
        services, "javascript", "function main() { return new Deno.Command('id').outputSync() }"
    )


# -- limits -------------------------------------------------------------------------------------

LIMITS = {
    "python infinite loop": ("python", "def main():\n    while True:\n        pass\n", "timeout"),
    "python sleep": ("python", "import time\ndef main():\n    time.sleep(60)\n", "timeout"),
    "js infinite loop": ("javascript", "function main() { while (true) {} }", "timeout"),
    "js async loop": ("javascript", "async function main() { while (true) await null }", "timeout"),
    "python memory bomb": (
        "python",
        "def main():\n    x = []\n    while True:\n        x.append(bytearray(10**7))\n",
        "sandbox",
    ),
    "js array buffers": (
        "javascript",
        "function main() { const a = []; while (true) a.push(new ArrayBuffer(2 ** 27)) }",
        "sandbox",
    ),
    "python 100 MB result": ("python", "def main():\n    return 'x' * 10**8\n", "sandbox"),
    "js 100 MB result": ("javascript", "function main() { return 'x'.repeat(1e8) }", "sandbox"),
}


@pytest.mark.parametrize(("language", "code", "kind"), LIMITS.values(), ids=LIMITS.keys())
async def test_limits_end_the_run(
    services: Services, worker: WorkerService, language: str, code: str, kind: str
) -> None:
    await attack(services, language, code, expected={kind})


async def test_javascript_heap_exhaustion_replaces_the_process(
    services: Services, worker: WorkerService
) -> None:
    code = "function main() { const a = []; while (true) a.push({i: a.length, s: 'x' + a.length}) }"
    await attack(services, "javascript", code, expected={"sandbox", "timeout"})


async def test_a_flood_of_output_is_bounded(services: Services, worker: WorkerService) -> None:
    """100 MB printed: 64 KiB of it become node.log events; the run still ends cleanly."""
    code = "def main():\n    for _ in range(10**5):\n        print('z' * 1000)\n    return 'ok'\n"
    submitted = await services.submitter.submit(Submission(code_wf("python", code)))
    record = await finished(services, submitted.execution_id)
    if record.status is ExecutionStatus.FAILED:  # (a slow machine may meet the 1 s CPU limit)
        assert record.error is not None
        assert record.error["type"] == "timeout"
    else:
        assert record.result == {"c": "ok"}
    events = await events_of(services.settings, submitted.execution_id)
    logged = "".join(e.data["text"] for e in events if e.type == "node.log")
    assert 0 < len(logged.encode()) <= 65 * 1024
    assert all(e.data["nodeId"] == "c" for e in events if e.type == "node.log")


async def test_javascript_prototype_pollution_does_not_reach_the_next_run(
    services: Services, worker: WorkerService
) -> None:
    pollute = (
        "function main() { Object.prototype.polluted = 'yes'; Array.prototype.map = null;"
        " globalThis.leak = 1; return ({}).polluted }"
    )
    check = (
        "function main() { return [({}).polluted ?? null, typeof [].map, typeof globalThis.leak] }"
    )
    submit = services.submitter.submit
    first = await finished(
        services, (await submit(Submission(code_wf("javascript", pollute)))).execution_id
    )
    assert first.result == {"c": "yes"}
    for _ in range(3):  # whichever process of the pool runs it
        second = await finished(
            services, (await submit(Submission(code_wf("javascript", check)))).execution_id
        )
        assert second.result == {"c": [None, "function", "undefined"]}


async def test_the_pool_replaces_a_killed_process(
    services: Services, worker: WorkerService
) -> None:
    pool = worker.executor.sandboxes().pool("javascript")
    await attack(
        services, "javascript", "function main() { while (true) {} }", expected={"timeout"}
    )
    started = pool.started
    heap = "function main() { const a = []; while (true) a.push({i: a.length}) }"
    await attack(services, "javascript", heap, expected={"sandbox", "timeout"})
    ok = await finished(
        services,
        (
            await services.submitter.submit(
                Submission(code_wf("javascript", "const main = () => 7;"))
            )
        ).execution_id,
    )
    assert ok.result == {"c": 7}, ok.error
    assert pool.started >= started


async def test_a_javascript_process_is_replaced_after_a_run_over_its_limits(
    services: Services, worker: WorkerService
) -> None:
    """Runs share a JavaScript process: one that timed out may leave its heap or scheduled work
    behind, so the next run (maybe another tenant's) gets a fresh process. A run whose code
    threw, or touched what the sandbox forbids, keeps it (or any run could force a start)."""
    pool = worker.executor.sandboxes().pool("javascript")

    async def run(code: str) -> ExecutionRecord:
        submitted = await services.submitter.submit(Submission(code_wf("javascript", code)))
        return await finished(services, submitted.execution_id)

    assert (await run("const main = () => 7;")).result == {"c": 7}
    thrown = await run("function main() { throw new Error('no') }")
    assert thrown.error is not None
    assert thrown.error["type"] == "code_error"
    refused = await run("function main() { return fetch('http://example.com') }")
    assert refused.error is not None
    assert refused.error["type"] == "sandbox"
    assert pool.started == 1
    await attack(
        services, "javascript", "function main() { while (true) {} }", expected={"timeout"}
    )
    assert (await run("const main = () => 7;")).result == {"c": 7}
    assert pool.started == 2
