"""The service over real sockets, as separate processes: ``wfe api`` + ``wfe worker``, the CLI
talking to them, and ``wfe dev`` on its own."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.processes import (
    WFE,
    Process,
    settings_env,
    start_api,
    start_worker,
    wait_http,
)
from tests.support.services import free_port
from workflow_engine.config import Settings

ROOT = Path(__file__).resolve().parents[2]
IF_ELSE = json.loads((ROOT / "examples" / "if_else.json").read_text())


@pytest.fixture
def running_service(settings: Settings) -> Iterator[str]:
    port = free_port()
    api = start_api(settings, port)
    worker = start_worker(settings)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/health")
        yield base
    finally:
        assert api.stop() == 0
        assert worker.stop() == 0


def cli(*args: str, base: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WFE_API_URL": base}
    return subprocess.run(
        [WFE, *args], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT
    )


def test_over_http_submit_status_stats(running_service: str) -> None:
    base = running_service
    response = httpx.post(
        f"{base}/api/workflow/execute", json={"workflowDefinition": IF_ELSE, "inputs": {"total": 1}}
    )
    assert response.status_code == 202
    execution_id = response.json()["executionId"]
    deadline = time.monotonic() + 30
    while True:
        status = httpx.get(f"{base}/api/workflow/status/{execution_id}?nodes=true").json()
        if status["context"]["status"] == "completed" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status["context"]["status"] == "completed"
    assert status["result"] == {"tier": "std", "total": 1}
    assert len(status["nodes"]) == 5
    # the job is acknowledged to BullMQ just after the outcome is stored: poll for it
    while True:
        stats = httpx.get(f"{base}/api/workflow/stats").json()
        if stats["queues"]["workflow"]["completed"] == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert stats["queues"]["workflow"]["completed"] == 1
    assert stats["executions"]["completed"] == 1
    assert httpx.get(f"{base}/api/workflow/status/nope").status_code == 404
    big = httpx.post(
        f"{base}/api/workflow/execute",
        content=b"x" * (10 * 1024 * 1024 + 1),
        headers={"content-type": "application/json"},
    )
    assert big.status_code == 413


def test_cli_against_the_running_service(running_service: str) -> None:
    base = running_service
    waited = cli("submit", "examples/if_else.json", "--wait", "-i", "total=300", base=base)
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout) == {"tier": "vip", "total": 300}
    assert "100%" in waited.stderr
    submitted = cli("submit", "examples/if_else.json", "--delay", "60000", base=base)
    execution_id = submitted.stdout.strip()
    assert execution_id.startswith("exec_")
    status = cli("status", execution_id, base=base)
    assert json.loads(status.stdout)["context"]["status"] == "pending"
    cancelled = cli("cancel", execution_id, base=base)
    assert json.loads(cancelled.stdout) == {"executionId": execution_id, "status": "cancelled"}
    again = cli("cancel", execution_id, base=base)
    assert again.returncode == 1
    assert "already finished (cancelled)" in again.stderr
    stats = json.loads(cli("stats", base=base).stdout)
    assert stats["executions"]["completed"] == 1
    assert stats["executions"]["cancelled"] == 1
    failing = cli("submit", "examples/invalid/broken.json", base=base)
    assert failing.returncode == 1
    assert "workflowDefinition.nodes[2].type: unknown node type 'teleport'" in failing.stderr


def test_cli_reports_an_unreachable_api() -> None:
    result = cli("status", "exec_x", base=f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "cannot reach" in result.stderr


def test_api_refuses_a_public_address_without_keys(settings: Settings) -> None:
    env = settings_env(settings, WFE_HOST="0.0.0.0", WFE_PORT=str(free_port()))
    result = subprocess.run([WFE, "api"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0 without API keys" in result.stderr


def test_unknown_setting_is_an_error(settings: Settings) -> None:
    env = settings_env(settings, WFE_CONCURENCY="3")
    result = subprocess.run([WFE, "worker"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "unknown setting: WFE_CONCURENCY" in result.stderr


def test_dev_runs_everything_with_nothing_configured(tmp_path: Path) -> None:
    """The README's first command, in an empty directory."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WFE_", "REDIS_", "MONGODB_"))}
    dev = Process([WFE, "dev", "--port", str(port)], env, cwd=tmp_path)
    try:
        dev.wait_for("Press Ctrl-C to stop.")
        base = f"http://127.0.0.1:{port}"
        submitted = httpx.post(f"{base}/api/workflow/execute", json={"workflowDefinition": IF_ELSE})
        assert submitted.status_code == 202
        execution_id = submitted.json()["executionId"]
        deadline = time.monotonic() + 30
        while (status := httpx.get(f"{base}/api/workflow/status/{execution_id}?nodes=true").json())[
            "context"
        ]["status"] != "completed":
            assert time.monotonic() < deadline, status
            time.sleep(0.05)
        assert status["result"] == {"tier": "vip", "total": 150}
        assert (
            httpx.get(f"{base}/api/workflow/stats").json()["queues"]["workflow"]["completed"] == 1
        )
    finally:
        dev.signal(signal.SIGINT)
        assert dev.stop() == 0
    assert (tmp_path / ".wfe" / "wfe.db").exists()
    assert (tmp_path / ".wfe" / "redis" / "appendonly.aof").exists()
    assert "worker stopped" in "\n".join(dev.lines)


def test_a_killed_dev_server_leaves_no_redis_behind(tmp_path: Path) -> None:
    """``kill -9`` of ``wfe dev``: its embedded redis-server goes too (a restarted ``wfe dev``
    would otherwise find the data directory held by an orphan)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WFE_", "REDIS_", "MONGODB_"))}
    dev = Process([WFE, "dev", "--port", str(port)], env, cwd=tmp_path)
    redis_pids: list[int] = []
    try:
        dev.wait_for("Press Ctrl-C to stop.")
        pid = dev.proc.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        redis_pids += [
            int(child)
            for child in children
            if "redis" in Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace")
        ]
        assert len(redis_pids) == 1, children
        dev.signal(signal.SIGKILL)
        dev.proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{redis_pids[0]}").exists():
            stat = Path(f"/proc/{redis_pids[0]}/stat").read_text().split()
            if stat[2] == "Z":  # exited, waiting for its (new) parent to reap it
                break
            assert time.monotonic() < deadline, "the embedded redis-server outlived wfe dev"
            time.sleep(0.05)
    finally:
        dev.stop()
        for redis_pid in redis_pids:  # (a failed check leaves nothing running)
            with contextlib.suppress(ProcessLookupError):
                os.kill(redis_pid, signal.SIGKILL)
