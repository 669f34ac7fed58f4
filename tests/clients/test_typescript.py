"""The TypeScript client (clients/typescript) and Node producers, tested with Node's own test
runner against real servers: a private redis-server, a worker, an API with keys and one
without (the seed's client sends none on its WebSocket). The restart test runs a ``wfe dev`` of
its own (it kills it). Skipped without ``node`` 20.14+ unless ``CI`` is set (then it fails).

Each command runs in a session of its own: on a timeout or a failure its whole process group is
killed (``node --test`` runs each test file in a child process, the restart test a ``wfe dev``
and its redis-server), not only the command itself."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import WFE, Process, wait_http
from tests.support.services import RedisServer, free_port

PACKAGE = Path(__file__).resolve().parents[2] / "clients" / "typescript"
NODE = shutil.which("node")
NODE_MIN = (20, 14)  # node --test --test-force-exit
NPM_CI_TIMEOUT_S = 120  # a fresh clone's npm ci takes about a minute
TSC_TIMEOUT_S = 60
NODE_TIMEOUT_S = 150
SERVERS_S = 60  # starting and stopping the worker, the APIs and Redis

pytestmark = pytest.mark.timeout(NPM_CI_TIMEOUT_S + TSC_TIMEOUT_S + NODE_TIMEOUT_S + SERVERS_S)


def _refuse(why: str) -> None:
    """Fail in CI (it runs the TypeScript client's tests), skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(f"{why} (CI runs the TypeScript client's tests)")
    pytest.skip(why)


@pytest.fixture
def node() -> str:
    """The ``node`` command (20.14+): the test is skipped without one, unless in CI."""
    if NODE is None:
        _refuse("node is not installed")
    assert NODE is not None
    found = subprocess.run([NODE, "--version"], capture_output=True, text=True, timeout=30)
    version = found.stdout.strip()
    match = re.match(r"v(\d+)\.(\d+)", version)
    if match is None or (int(match[1]), int(match[2])) < NODE_MIN:
        _refuse(f"node {version or '(no version)'} at {NODE}: the tests need Node 20.14+")
    return NODE


def _run(
    command: list[str], timeout: float, env: dict[str, str] | None = None
) -> tuple[int, str, float]:
    """Run ``command`` in ``PACKAGE``, in a new session: its exit code, its output (stdout, then
    stderr) and how long it took. On a timeout the whole process group is killed, and the test
    fails with what it said; once it exits, whatever it left running in its group is killed."""
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=PACKAGE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process.pid)
        stdout, stderr = process.communicate()
        pytest.fail(f"{' '.join(command)}: no end after {timeout} s:\n{stdout}\n{stderr}")
    finally:
        _kill_group(process.pid)
    return process.returncode, f"{stdout}\n{stderr}", time.monotonic() - started


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


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
    code, output, _ = _run([npm, "ci", "--no-audit", "--no-fund"], NPM_CI_TIMEOUT_S)
    assert code == 0, f"npm ci failed:\n{output}"


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
    code, output, _ = _run([node, str(tsc), "-p", "tsconfig.json"], TSC_TIMEOUT_S)
    assert code == 0, f"tsc failed:\n{output}"


@pytest.fixture
def servers(built: None, tmp_path: Path) -> Iterator[dict[str, str]]:
    with running_servers(tmp_path) as env:
        yield env


def test_the_typescript_client_and_node_producers(
    node: str, built: None, servers: dict[str, str]
) -> None:
    code, output, took = _run(
        [node, "scripts/run-tests.mjs", "--test-reporter=spec"], NODE_TIMEOUT_S, env=servers
    )
    report = f"node --test (exit {code}, {took:.1f}s):\n{output}"
    print(report)
    assert code == 0, report
    assert re.search(r"\bfail 0\b", output), report
    assert re.search(r"\bskipped 0\b", output), report  # every test ran: none lacked its server
