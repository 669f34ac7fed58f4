"""Redis behind Sentinel (``WFE_REDIS_URL=redis+sentinel://...``, issue 18): a real primary,
a replica and a sentinel (``redis-server --sentinel``); the API and a ``wfe worker`` process
follow the primary through a failover, and executions keep completing."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import redis

from tests.conftest import make_settings
from tests.support.processes import start_worker, wait_until
from tests.support.served import served
from tests.support.services import free_port
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services
from workflow_engine.embedded_redis import redis_server_binary
from workflow_engine.redis_pool import parse_sentinel

ECHO = {"id": "ha", "nodes": [{"id": "a", "type": "echo", "inputs": {"value": 1}}]}
SERVICE = "wfe-primary"


def test_a_sentinel_url_names_its_sentinels_service_db_and_password() -> None:
    spec = parse_sentinel("redis+sentinel://:s3cret@h1:26380,h2/wfe/2")
    assert spec.sentinels == [("h1", 26380), ("h2", 26379)]
    assert (spec.service, spec.db, spec.password, spec.username) == ("wfe", 2, "s3cret", None)
    with pytest.raises(ValueError, match="service"):
        parse_sentinel("redis+sentinel://h1:26379")


def test_sentinel_credentials_are_percent_encoded() -> None:
    password = "p/a@s:s%w?o#rd"
    url = f"redis+sentinel://us%3Aer:{quote(password, safe='')}@h1:26380,[::1]/wfe%2Fx/1"
    spec = parse_sentinel(url)
    assert (spec.username, spec.password) == ("us:er", password)
    assert spec.sentinels == [("h1", 26380), ("::1", 26379)]
    assert (spec.service, spec.db) == ("wfe/x", 1)
    # unencoded, "/" (or "?", "#") would end the hosts part inside the password: refused
    for unencoded in ("redis+sentinel://:pa/ss@h1/wfe", "redis+sentinel://:pa?ss@h1/wfe"):
        with pytest.raises(ValueError, match="percent-encoded"):
            parse_sentinel(unencoded)
    # an unencoded "@" or ":" in the password still parses (the last "@" ends it)
    assert parse_sentinel("redis+sentinel://:p@s:s@h1/wfe").password == "p@s:s"


@dataclass
class Cluster:
    """A primary, a replica of it and a sentinel watching them, each a redis-server."""

    directory: Path
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *args: str) -> None:
        port = self.ports[name] = self.ports.get(name) or free_port()
        self.processes[name] = subprocess.Popen(
            [redis_server_binary(), *args, "--port", str(port), "--save", "", "--appendonly", "no"],
            cwd=self.directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def client(self, name: str) -> redis.Redis:
        return redis.Redis(port=self.ports[name], socket_timeout=2, decode_responses=True)

    def knows_the_replica(self) -> bool:
        """Whether the sentinel has seen the replica (it learns of replicas from the primary's
        INFO, every 10 s): before that, a dead primary has nothing to fail over to."""
        replicas = self.client("sentinel").execute_command("SENTINEL", "REPLICAS", SERVICE)
        return bool(replicas)

    def primary_port(self) -> int:
        found = self.client("sentinel").execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE
        )
        return int(found[1])

    def stop(self) -> None:
        for process in self.processes.values():
            process.kill()
            process.wait()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path)
    try:
        cluster.start("primary")
        cluster.start("replica", "--replicaof", "127.0.0.1", str(cluster.ports["primary"]))
        sentinel_port = free_port()
        config = tmp_path / "sentinel.conf"
        primary = cluster.ports["primary"]
        config.write_text(
            f"port {sentinel_port}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 3000\n"
        )
        cluster.ports["sentinel"] = sentinel_port
        cluster.processes["sentinel"] = subprocess.Popen(
            [redis_server_binary(), str(config), "--sentinel"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        yield cluster
    finally:
        cluster.stop()


def answering(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.mark.parametrize("failover", [False, True])
async def test_executions_complete_through_sentinel_and_after_a_failover(
    cluster: Cluster, tmp_path: Path, failover: bool
) -> None:
    async def up(name: str) -> bool:
        return await asyncio.to_thread(answering, cluster.client(name))

    for name in ("primary", "replica", "sentinel"):
        await wait_until(lambda name=name: up(name), 10, f"the {name} to answer")
    replica = cluster.client("replica")

    async def synced() -> bool:
        info = await asyncio.to_thread(replica.info, "replication")
        return info.get("master_link_status") == "up"

    await wait_until(synced, 15, "the replica to sync")
    url = f"redis+sentinel://127.0.0.1:{cluster.ports['sentinel']}/{SERVICE}/0"
    settings = make_settings(url, f"sqlite:///{tmp_path}/wfe.db")
    worker = await asyncio.to_thread(start_worker, settings)
    services = await Services.open(settings)
    try:
        async with (
            served(create_app(settings, services)) as address,
            httpx.AsyncClient(base_url=f"http://{address}", timeout=30) as http,
        ):

            async def run_one(within: float = 60) -> None:
                async def submitted() -> str | None:
                    answer = await http.post(
                        "/api/workflow/execute", json={"workflowDefinition": ECHO}
                    )
                    return answer.json()["executionId"] if answer.status_code == 202 else None

                execution_id = await wait_until(submitted, 30, "a submit to be taken")

                async def completed() -> bool:
                    status = await http.get(f"/api/workflow/status/{execution_id}")
                    return status.json()["context"]["status"] == "completed"

                await wait_until(completed, within, f"{execution_id} to complete")

            for _ in range(3):
                await run_one()
            if not failover:
                return
            await wait_until(
                lambda: asyncio.to_thread(cluster.knows_the_replica), 15, "the sentinel to see it"
            )
            cluster.processes["primary"].kill()  # the primary dies

            async def failed_over() -> bool:
                port = await asyncio.to_thread(cluster.primary_port)
                return port == cluster.ports["replica"]

            await wait_until(failed_over, 30, "the sentinel to promote the replica")
            try:
                for _ in range(3):
                    await run_one(within=20)
            except AssertionError as exc:
                said = "\n".join(worker.lines[-40:])
                raise AssertionError(f"{exc}; the worker said:\n{said}") from None
    finally:
        await services.close()
        await asyncio.to_thread(worker.stop)
