"""The TypeScript client (clients/typescript) and Node producers, tested with Node's own test
runner against real servers: a private redis-server, a worker, an API with keys and one
without (the seed's client sends none on its WebSocket). The restart test runs a ``wfe dev`` of
its own (it kills it). Skipped without ``node`` unless ``CI`` is set (then it fails)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import WFE, Process, wait_http
from tests.support.services import RedisServer, free_port

PACKAGE = Path(__file__).resolve().parents[2] / "clients" / "typescript"
NODE = shutil.which("node")
NODE_TIMEOUT_S = 150

pytestmark = pytest.mark.timeout(NODE_TIMEOUT_S + 120)


@pytest.fixture
def node() -> str:
    """The ``node`` command: the test is skipped without one, unless in CI."""
    if NODE is None:
        if os.environ.get("CI"):
            pytest.fail("node is not installed (CI runs the TypeScript client's tests)")
        pytest.skip("node is not installed")
    return NODE


def _npm_ci() -> None:
    """Install the package's locked dev dependencies (node_modules is not committed) when
    missing or older than the lock file."""
    installed = PACKAGE / "node_modules" / ".package-lock.json"
    lock = PACKAGE / "package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is not installed")
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=PACKAGE,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"


def _base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WFE_", "TEST_WFE_"))}
    env.update(extra)
    return env


@contextlib.contextmanager
def running_servers(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A worker and two APIs (one with keys, one without) on one Redis and one SQLite store;
    the environment the Node tests read them from."""
    redis_server = RedisServer(tmp_path / "redis").start()
    prefix = f"node{secrets.token_hex(3)}"
    key = f"wfe_node_{secrets.token_hex(16)}"
    server_env = _base_env(
        WFE_REDIS_URL=redis_server.url,
        WFE_STORE_URL=f"sqlite:///{tmp_path}/wfe.db",
        WFE_QUEUE_PREFIX=prefix,
        WFE_METRICS_PORT="0",
        WFE_LOG_LEVEL="INFO",
        WFE_STALLED_INTERVAL_MS="2000",
        WFE_LOCK_DURATION_MS="4000",
    )
    processes: list[Process] = []
    try:
        worker = Process([WFE, "worker"], server_env, cwd=tmp_path)
        processes.append(worker)
        worker.wait_for("worker started")
        ports = free_port(), free_port()
        for port, keys in zip(ports, (f"acme:admin={key}", ""), strict=True):
            env = {**server_env, "WFE_PORT": str(port), "WFE_HOST": "127.0.0.1"}
            env["WFE_API_KEYS"] = keys
            processes.append(Process([WFE, "api"], env, cwd=tmp_path))
        for port in ports:
            wait_http(f"http://127.0.0.1:{port}/health")
        yield _base_env(
            TEST_WFE_URL=f"http://127.0.0.1:{ports[0]}",
            TEST_WFE_KEY=key,
            TEST_WFE_OPEN_URL=f"http://127.0.0.1:{ports[1]}",
            TEST_WFE_REDIS_URL=redis_server.url,
            TEST_WFE_PREFIX=prefix,
            TEST_WFE_BIN=WFE,
        )
    finally:
        for process in reversed(processes):
            process.stop()
        redis_server.stop()


@pytest.fixture
def built(node: str) -> None:
    """The dev dependencies installed and the package compiled (src/ -> dist/)."""
    _npm_ci()
    tsc = PACKAGE / "node_modules" / "typescript" / "bin" / "tsc"
    done = subprocess.run(
        [node, str(tsc), "-p", "tsconfig.json"], cwd=PACKAGE, capture_output=True, text=True
    )
    assert done.returncode == 0, f"tsc failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture
def servers(built: None, tmp_path: Path) -> Iterator[dict[str, str]]:
    with running_servers(tmp_path) as env:
        yield env


def test_the_typescript_client_and_node_producers(
    node: str, built: None, servers: dict[str, str]
) -> None:
    started = time.monotonic()
    run = subprocess.run(
        [node, "scripts/run-tests.mjs", "--test-reporter=spec"],
        cwd=PACKAGE,
        env=servers,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_S,
    )
    took = time.monotonic() - started
    report = f"node --test (exit {run.returncode}, {took:.1f}s):\n{run.stdout}\n{run.stderr}"
    print(report)
    assert run.returncode == 0, report
    assert "fail 0" in run.stdout, report
    assert "skipped 0" in run.stdout, report  # every test ran: none lacked its server
