"""Issue 14, findings 3 (SSRF: the egress policy of SPEC §8) and 10 (the http node's `timeout`
is the whole request's deadline). Real HTTP servers on loopback; the policy decides on the
address actually connected to."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
from pydantic import ValidationError

from tests.conftest import make_settings
from tests.support.http_server import LocalHttpServer
from tests.support.processes import WFE, Process, wait_until
from tests.support.services import RedisServer, free_port
from workflow_engine.api.services import Services
from workflow_engine.config import Settings
from workflow_engine.egress import EgressDenied, EgressPolicy, Endpoint, policy_for
from workflow_engine.egress_transport import GuardedBackend, guarded_client
from workflow_engine.engine.executor import Executor
from workflow_engine.queue.submit import Submission
from workflow_engine.store.records import ExecutionRecord
from workflow_engine.vocabulary import ExecutionStatus
from workflow_engine.worker.worker import WorkerService


def http_wf(url: str, **inputs: Any) -> dict[str, Any]:
    node = {"id": "call", "type": "http", "inputs": {"url": url, "timeout": 5, **inputs}}
    return {"id": "egress", "nodes": [node]}


async def node_error(executor: Executor, url: str, **inputs: Any) -> dict[str, Any] | None:
    outcome = await executor.run(executor.compile(http_wf(url, **inputs)))
    return outcome.nodes["call"].error


@pytest.fixture
async def strict() -> AsyncIterator[Executor]:
    """What a worker runs with when ``WFE_EGRESS_ALLOW`` is empty."""
    async with Executor(egress=EgressPolicy()) as executor:
        yield executor


@pytest.fixture
async def other_loopback_server() -> AsyncIterator[LocalHttpServer]:
    """A second server, on another loopback address (all of 127/8 is on ``lo``)."""
    server = await LocalHttpServer(host="127.0.0.2").start()
    yield server
    await server.stop()


# -- every address form refused ----------------------------------------------------------------

LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "localhost",  # a name that resolves to loopback
    "0x7f000001",
    "2130706433",
    "127.1",
    "[::ffff:127.0.0.1]",  # IPv4-mapped
    "[::127.0.0.1]",  # IPv4-compatible
]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
async def test_loopback_in_any_spelling_is_refused(
    strict: Executor, http_server: LocalHttpServer, host: str
) -> None:
    url = f"http://{host}:{http_server.port}/echo"
    error = await node_error(strict, url)
    assert error is not None
    assert error["type"] == "egress_denied", error
    assert "loopback" in error["message"]
    assert http_server.requests == []  # refused before connecting, not after


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",  # cloud metadata
        "[fe80::1]",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "[fc00::1]",
        "[fd12:3456::1]",
        "[fec0::1]",  # deprecated site-local (Python 3.11 calls it global)
        "0.0.0.0",
        "[::]",
        "224.0.0.1",
        "[ff02::1]",
        "[::1]",
        "[::ffff:169.254.169.254]",
        "[::ffff:10.0.0.1]",
        "[2002:a00:1::]",  # 6to4 of 10.0.0.1
        "100.64.0.1",  # shared address space (carrier NAT)
    ],
)
async def test_internal_addresses_are_refused(strict: Executor, host: str) -> None:
    error = await node_error(strict, f"http://{host}:8080/latest/meta-data/", timeout=2)
    assert error is not None
    assert error["type"] == "egress_denied", error


async def test_refused_is_not_retried(strict: Executor, http_server: LocalHttpServer) -> None:
    plan = strict.compile(
        {
            "id": "r",
            "nodes": [
                {
                    "id": "call",
                    "type": "http",
                    "inputs": {"url": f"{http_server.base_url}/echo"},
                    "retry": {"attempts": 3, "backoff": 0},
                }
            ],
        }
    )
    outcome = await strict.run(plan)
    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.nodes["call"].attempt == 1


async def test_a_redirect_to_loopback_is_refused(
    http_server: LocalHttpServer, other_loopback_server: LocalHttpServer
) -> None:
    """The first host is allowed; the hop it redirects to is checked again and refused."""
    target = f"{other_loopback_server.base_url}/echo"
    async with Executor(egress=EgressPolicy.parse("127.0.0.1/32")) as executor:
        error = await node_error(executor, f"{http_server.base_url}/redirect?to={target}")
        ok = await executor.run(executor.compile(http_wf(f"{http_server.base_url}/echo")))
    assert error is not None
    assert error["type"] == "egress_denied", error
    assert "127.0.0.2" in error["message"]
    assert [r.path for r in http_server.requests] == ["/redirect", "/echo"]
    assert other_loopback_server.requests == []
    assert ok.status is ExecutionStatus.COMPLETED  # the allowed host itself is reachable


# -- WFE_EGRESS_ALLOW ---------------------------------------------------------------------------


async def test_allow_opens_one_cidr_only(
    http_server: LocalHttpServer, other_loopback_server: LocalHttpServer
) -> None:
    async with Executor(egress=EgressPolicy.parse("127.0.0.2/32")) as executor:
        opened = await executor.run(
            executor.compile(http_wf(f"{other_loopback_server.base_url}/echo"))
        )
        closed = await node_error(executor, f"{http_server.base_url}/echo")
    assert opened.status is ExecutionStatus.COMPLETED
    assert closed is not None
    assert closed["type"] == "egress_denied"


async def test_allow_opens_one_host_name_only(http_server: LocalHttpServer) -> None:
    async with Executor(egress=EgressPolicy.parse(" LocalHost ")) as executor:
        opened = await executor.run(
            executor.compile(http_wf(f"http://localhost:{http_server.port}/echo"))
        )
        closed = await node_error(executor, f"http://127.0.0.1:{http_server.port}/echo")
    assert opened.status is ExecutionStatus.COMPLETED
    assert opened.nodes["call"].output["body"]["headers"]["host"] == f"localhost:{http_server.port}"
    assert closed is not None
    assert closed["type"] == "egress_denied"


def test_allow_syntax() -> None:
    policy = EgressPolicy.parse("10.0.0.0/8, [fd00::]/8 ,api.internal., 192.168.1.7,,")
    assert [str(n) for n in policy.networks] == ["10.0.0.0/8", "fd00::/8", "192.168.1.7/32"]
    assert policy.hosts == {"api.internal"}
    assert not policy.allow_all
    assert EgressPolicy.parse("*").allow_all
    policy.check("x", ipaddress.ip_address("10.9.8.7"), 80)
    policy.check("API.internal", ipaddress.ip_address("127.0.0.1"), 80)
    policy.check("x", ipaddress.ip_address("::ffff:10.0.0.1"), 80)  # the mapped IPv4 is 10/8
    with pytest.raises(EgressDenied):
        policy.check("x", ipaddress.ip_address("172.16.0.1"), 80)
    EgressPolicy().check("example.com", ipaddress.ip_address("93.184.215.14"), 443)
    with pytest.raises(ValueError, match="not a CIDR"):
        EgressPolicy.parse("10.0.0.0/33 x")


@pytest.mark.parametrize(
    "spelling", ["127.0.0.1", "127.0.0.2", "0.0.0.0", "::1", "::ffff:127.0.0.1"]
)
def test_the_services_own_endpoint_is_refused_even_under_star(spelling: str) -> None:
    """Opening everything does not open the service's own Redis, in any local spelling."""
    policy = EgressPolicy.parse("*")
    own = [ipaddress.ip_address("127.0.0.1")]
    with pytest.raises(EgressDenied, match="own endpoint"):
        policy.check("x", ipaddress.ip_address(spelling), 6379, own)
    policy.check("x", ipaddress.ip_address("10.0.0.1"), 6379, own)  # another host's Redis


def test_the_setting_is_checked_and_strict_by_default(tmp_path: Path) -> None:
    assert Settings().egress_allow == ""
    with pytest.raises(ValidationError, match="egress_allow"):
        Settings(egress_allow="10.0.0.0/8,not a host")
    policy = policy_for(
        Settings(
            redis_url="redis://:pw@10.1.2.3:6390/0",
            store_url="mongodb://u:p@db1:27017,db2/wfe",
            egress_allow="*",
        )
    )
    assert policy.allow_all
    assert policy.protected == (
        Endpoint("10.1.2.3", 6390),
        Endpoint("db1", 27017),
        Endpoint("db2", 27017),
    )
    assert policy_for(Settings(store_url=f"sqlite:///{tmp_path}/x.db")).protected == (
        Endpoint("127.0.0.1", 6379),
    )


# -- the connected address is the checked one ---------------------------------------------------


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """The real backend, recording the host of every connection it is asked to open."""

    def __init__(self) -> None:
        self.inner = httpcore.AnyIOBackend()
        self.hosts: list[str] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.hosts.append(host)
        return await self.inner.connect_tcp(host, port, timeout, local_address, socket_options)


async def test_the_transport_connects_to_the_address_it_checked(
    http_server: LocalHttpServer,
) -> None:
    """A name is resolved once, by the guard; the socket is opened to that IP literal (nothing
    left to resolve again: no DNS-rebinding window), while the request keeps the name."""
    recording = RecordingBackend()
    backend = GuardedBackend(EgressPolicy.parse("localhost"), recording)
    async with httpcore.AsyncConnectionPool(network_backend=backend) as pool:
        response = await pool.request("GET", f"http://localhost:{http_server.port}/echo")
    assert response.status == 200
    assert recording.hosts == ["127.0.0.1"]
    assert http_server.requests[0].headers["host"] == f"localhost:{http_server.port}"
    with pytest.raises(EgressDenied):
        await GuardedBackend(EgressPolicy(), recording).connect_tcp("localhost", http_server.port)
    assert recording.hosts == ["127.0.0.1"]  # the refused one never reached the socket layer


async def test_the_executor_client_is_guarded(http_server: LocalHttpServer) -> None:
    """No proxy from the environment (it would connect unchecked), every request checked."""
    async with guarded_client(EgressPolicy()) as client:
        with pytest.raises(EgressDenied):
            await client.get(f"{http_server.base_url}/echo")
    assert http_server.requests == []


# -- through a real worker ------------------------------------------------------------------------


async def run_in_worker(settings: Settings, definition: dict[str, Any]) -> ExecutionRecord:
    services = await Services.open(settings)
    worker = WorkerService(settings, services.store)
    await worker.start()
    try:
        submitted = await services.submitter.submit(Submission(definition))

        async def done() -> ExecutionRecord | None:
            record = await services.store.get(submitted.execution_id)
            final = {"completed", "failed", "cancelled"}
            return record if record and record.status in final else None

        record: ExecutionRecord = await wait_until(done, 20, "the execution to finish")
        return record
    finally:
        await worker.stop(grace=5)
        await worker.executor.aclose()
        await services.close()


async def test_a_worker_refuses_loopback_by_default(
    redis_server: RedisServer, tmp_path: Path, http_server: LocalHttpServer
) -> None:
    settings = make_settings(redis_server.url, f"sqlite:///{tmp_path}/wfe.db", egress_allow="")
    record = await run_in_worker(settings, http_wf(f"http://localhost:{http_server.port}/echo"))
    assert record.status == "failed"
    assert record.error is not None
    assert record.error["type"] == "egress_denied", record.error
    assert http_server.requests == []


async def test_a_worker_never_reaches_its_own_redis(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Even with loopback opened, the service's own Redis stays out of reach."""
    settings = make_settings(
        redis_server.url, f"sqlite:///{tmp_path}/wfe.db", egress_allow="127.0.0.0/8,::1"
    )
    port = settings.redis_url.rsplit(":", 1)[1].split("/")[0]
    record = await run_in_worker(settings, http_wf(f"http://127.0.0.1:{port}/"))
    assert record.status == "failed"
    assert record.error is not None
    assert record.error["type"] == "egress_denied", record.error
    assert "own endpoint" in record.error["message"]


async def test_a_worker_reaches_what_the_setting_allows(
    redis_server: RedisServer, tmp_path: Path, http_server: LocalHttpServer
) -> None:
    settings = make_settings(
        redis_server.url, f"sqlite:///{tmp_path}/wfe.db", egress_allow="127.0.0.1/32"
    )
    record = await run_in_worker(settings, http_wf(f"{http_server.base_url}/orders/A1"))
    assert record.status == "completed", record.error


async def test_wfe_dev_allows_loopback_but_not_itself(
    tmp_path: Path, http_server: LocalHttpServer
) -> None:
    """SPEC §8: ``wfe dev`` opens loopback and says so; its own API and Redis stay refused."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WFE_", "REDIS_", "MONGODB_"))}
    dev = Process([WFE, "dev", "--port", str(port)], env, cwd=tmp_path)
    try:
        await asyncio.to_thread(dev.wait_for, "Press Ctrl-C to stop.")
        banner = "\n".join(dev.lines)
        assert "workflows may reach loopback" in banner
        redis_port = re.search(r"Redis +redis://127\.0\.0\.1:(\d+)", banner)
        assert redis_port is not None, banner
        urls = {
            "server": f"{http_server.base_url}/orders/A1",
            "api": f"http://127.0.0.1:{port}/health",
            "redis": f"http://localhost:{redis_port.group(1)}/",
        }
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as api:
            ids = {}
            for name, url in urls.items():
                body = {"workflowDefinition": http_wf(url)}
                ids[name] = (await api.post("/api/workflow/execute", json=body)).json()[
                    "executionId"
                ]

            async def finished(name: str) -> dict[str, Any]:
                async def check() -> dict[str, Any] | None:
                    url = f"/api/workflow/status/{ids[name]}"
                    status: dict[str, Any] = (await api.get(url)).json()
                    done = status["context"]["status"] in {"completed", "failed"}
                    return status if done else None

                result: dict[str, Any] = await wait_until(check, 30, f"{name} to finish")
                return result

            results = {name: await finished(name) for name in ids}
    finally:
        dev.signal(signal.SIGINT)
        assert await asyncio.to_thread(dev.stop) == 0
    assert results["server"]["context"]["status"] == "completed", results["server"]
    for name in ("api", "redis"):
        error = results[name]["context"]["error"]
        assert error["type"] == "egress_denied", (name, error)
        assert "own endpoint" in error["message"]


def test_wfe_run_refuses_private_addresses_and_reads_the_setting(tmp_path: Path) -> None:
    """``wfe run`` opens loopback only (the examples call loopback; covered there)."""
    definition = tmp_path / "wf.json"
    definition.write_text(json.dumps(http_wf("http://169.254.169.254/latest/", timeout=2)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFE_")}
    refused = subprocess.run(
        [WFE, "run", str(definition), "--json", "-q"], env=env, capture_output=True, timeout=60
    )
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["error"]["type"] == "egress_denied"
    bad = subprocess.run(
        [WFE, "run", str(definition), "-q"],
        env={**env, "WFE_EGRESS_ALLOW": "10.0.0.0/8,not a host"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "WFE_EGRESS_ALLOW" in bad.stderr


# -- finding 10: `timeout` is the whole request's deadline ----------------------------------------


async def test_timeout_bounds_a_body_that_trickles(
    executor: Executor, http_server: LocalHttpServer
) -> None:
    """A byte every 0.1 s never leaves a read idle for 0.5 s: only a deadline stops it."""
    url = f"{http_server.base_url}/trickle?bytes=100&every=0.1"  # 10 s in all
    started = time.monotonic()
    outcome = await executor.run(executor.compile(http_wf(url, timeout=0.5)))
    elapsed = time.monotonic() - started
    error = outcome.nodes["call"].error
    assert error is not None
    assert error["type"] == "timeout", error
    assert "timed out" in error["message"]
    assert elapsed < 3, elapsed
