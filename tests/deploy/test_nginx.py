"""deploy/nginx/nginx.conf, for real: ``nginx -t`` accepts it, and Debian's nginx running it on
loopback in front of two ``wfe api`` processes (a ``wfe worker`` and a private Redis behind)
carries a WebSocket subscription and an SSE stream live, every event of an execution in order,
spreads connections over both API processes, answers 413 above the API's 10 MiB limit, and
fails over when an API process goes away. The only changes to the file: the upstream servers
and the listen address."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
import websockets

from tests.conftest import make_settings
from tests.support.live import held_chain, is_final, sse_read, ws_receive
from tests.support.processes import Process, start_api, start_worker, wait_http, wait_until
from tests.support.services import RedisServer, free_port
from workflow_engine.config import Settings
from workflow_engine.keys import Keys

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "deploy" / "nginx" / "nginx.conf"
UPSTREAM = re.compile(r"^(\s*)server api:8000( [^;]*)?;$", re.MULTILINE)
LISTEN = re.compile(r"^(\s*)listen 80;$", re.MULTILINE)
MIB = 1024 * 1024


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is required in CI (.ci/run installs it)")
        pytest.skip("nginx is not installed (apt-get install nginx)")
    return found


def render(upstream_ports: list[int], listen_port: int) -> str:
    """The real configuration with the upstream servers and the listen address swapped."""
    text = CONF.read_text()
    assert len(UPSTREAM.findall(text)) == 1, "expected one `server api:8000 ...;` line"
    assert len(LISTEN.findall(text)) == 1, "expected one `listen 80;` line"
    text = UPSTREAM.sub(
        lambda m: "\n".join(
            f"{m.group(1)}server 127.0.0.1:{port}{m.group(2) or ''};" for port in upstream_ports
        ),
        text,
    )
    return LISTEN.sub(lambda m: f"{m.group(1)}listen 127.0.0.1:{listen_port};", text)


def nginx_argv(prefix: Path, conf: Path, *extra: str) -> list[str]:
    return [
        nginx_binary(),
        "-p",
        f"{prefix}/",
        "-c",
        str(conf),
        "-g",
        f"pid {prefix}/nginx.pid;",
        *extra,
    ]


def test_nginx_t_accepts_the_configuration(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    text = CONF.read_text()
    # `api` (the compose service) does not resolve here
    conf.write_text(UPSTREAM.sub(r"\1server 127.0.0.1:8000\2;", text))
    checked = subprocess.run(
        nginx_argv(tmp_path, conf, "-t"), capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr
    conf.write_text(text.replace("proxy_buffering off;", "proxy_buffering of;", 1))
    broken = subprocess.run(
        nginx_argv(tmp_path, conf, "-t"), capture_output=True, text=True, timeout=30
    )
    assert broken.returncode != 0  # the check can fail


def test_the_body_limit_is_the_apis() -> None:
    limit = re.search(r"client_max_body_size (\d+)m;", CONF.read_text())
    assert limit is not None
    assert int(limit.group(1)) * MIB == Settings().max_body_bytes


@dataclass
class Stack:
    settings: Settings
    base: str
    api_ports: list[int]
    apis: list[Process]
    access_log: Path


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack for the module (starting it is most of the time); the test that stops the API
    processes comes last."""
    nginx_binary()  # (skips before any process starts: a skip below would leave them running)
    tmp_path = tmp_path_factory.mktemp("nginx")
    settings = make_settings(redis_server.url, f"sqlite:///{tmp_path}/wfe.db")
    api_ports = [free_port(), free_port()]
    apis = [start_api(settings, port) for port in api_ports]
    worker = start_worker(settings)
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(render(api_ports, port))
    log = tmp_path / "access.log"
    with log.open("w") as out, (tmp_path / "error.log").open("w") as err:
        nginx = subprocess.Popen(
            nginx_argv(tmp_path, conf, "-g", "daemon off;"), stdout=out, stderr=err
        )
    base = f"http://127.0.0.1:{port}"
    try:
        for api_port in api_ports:
            wait_http(f"http://127.0.0.1:{api_port}/health")
        wait_http(f"{base}/nginx-health")
        yield Stack(settings, base, api_ports, apis, log)
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        for api in apis:
            api.stop()
        worker.stop()


def upstreams_used(log: Path, since: int) -> set[str]:
    """The API processes nginx passed requests to, in its access log after byte ``since``."""
    return set(re.findall(r"upstream=(127\.0\.0\.1:\d+)", log.read_text()[since:]))


async def test_websocket_and_sse_through_nginx_get_every_event_live(stack: Stack) -> None:
    key = f"k{uuid.uuid4().hex[:6]}"
    log_start = len(stack.access_log.read_text())
    client = aioredis.Redis.from_url(stack.settings.redis_url, decode_responses=True)
    ws_base = stack.base.replace("http://", "ws://")
    socket = await websockets.connect(f"{ws_base}/ws/tab-nginx")
    try:
        await socket.send(json.dumps({"type": "subscribe"}))
        async with httpx.AsyncClient(base_url=stack.base) as http:
            body = {"workflowDefinition": held_chain(stack.settings, key), "clientId": "tab-nginx"}
            response = await http.post("/api/workflow/execute", json=body)
        assert response.status_code == 202, response.text
        execution_id = response.json()["executionId"]
        sse_saw_hold = asyncio.Event()
        sse = asyncio.ensure_future(
            sse_read(
                f"{stack.base}/api/workflow/events/{execution_id}",
                {},
                until=lambda e: e["type"] == "node.started" and e["data"]["nodeId"] == "h1",
                then=sse_saw_hold.set,
            )
        )
        # live, not buffered: both see the held node start while the execution waits in it
        before = await ws_receive(
            socket, lambda e: e["type"] == "node.started" and e["data"]["nodeId"] == "h1"
        )
        await asyncio.wait_for(sse_saw_hold.wait(), 20)
        assert await client.llen(f"{key}:1:release") == 0  # still held
        await client.rpush(f"{key}:1:release", "go")
        await client.rpush(f"{key}:2:release", "go")
        after = await ws_receive(socket, is_final, timeout=30)
        over_sse = await asyncio.wait_for(sse, 30)
        stream = Keys(stack.settings.queue_prefix).events(execution_id)
        everything = [entry_id for entry_id, _ in await client.xrange(stream)]
        assert [e["id"] for e in before + after] == everything
        assert [e["id"] for e in over_sse] == everything
        assert (before + after)[-1]["type"] == "execution.completed"
        assert over_sse[-1]["type"] == "execution.completed"
    finally:
        await socket.close()
        await client.aclose()
    # the long-lived connections went to both API processes (least_conn)
    expected = {f"127.0.0.1:{port}" for port in stack.api_ports}

    async def both_used() -> bool:  # nginx writes a line when a connection ends
        return upstreams_used(stack.access_log, log_start) == expected

    await wait_until(both_used, 10, "both API processes in nginx's access log")


async def test_bodies_over_10_mib_get_413_from_nginx(stack: Stack) -> None:
    url = f"{stack.base}/api/workflow/execute"
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(timeout=30) as http:
        too_big = await http.post(url, content=b" " * (10 * MIB + 1), headers=headers)
        # at the limit it is the API's to judge (here: not a valid request, but not too large)
        at_limit = await http.post(url, content=b" " * (10 * MIB), headers=headers)
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "payload_too_large"  # the API's error shape

    async def logged() -> bool:  # refused by nginx: no API process saw it
        return '"POST /api/workflow/execute HTTP/1.1" 413' in stack.access_log.read_text()

    await wait_until(logged, 10, "the 413 in nginx's access log")
    line = next(x for x in stack.access_log.read_text().splitlines() if '" 413 ' in x)
    assert "upstream=-" in line
    assert at_limit.status_code == 400


def test_a_lost_api_process_is_routed_around(stack: Stack) -> None:
    assert stack.apis[1].stop() == 0
    for _ in range(6):
        response = httpx.get(f"{stack.base}/api/workflow/stats", timeout=10)
        assert response.status_code == 200
    assert stack.apis[0].stop() == 0
    down = httpx.get(f"{stack.base}/api/workflow/stats", timeout=10)
    assert down.status_code == 503
    assert down.json()["error"]["code"] == "unavailable"
    assert down.headers["retry-after"] == "1"
