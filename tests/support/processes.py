"""The service's processes as a user runs them (``wfe worker``, ``wfe api``), for tests that
need separate processes: SIGTERM, ``kill -9``, several workers, a real socket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from workflow_engine.config import Settings

WFE = str(Path(sys.executable).with_name("wfe"))
PLUGIN_PATH = str(Path(__file__).with_name("plugin_path"))


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFE_")}
    env.update(
        WFE_REDIS_URL=settings.redis_url,
        WFE_STORE_URL=settings.store_url,
        WFE_QUEUE_PREFIX=settings.queue_prefix,
        WFE_STALLED_INTERVAL_MS=str(settings.stalled_interval_ms),
        WFE_LOCK_DURATION_MS=str(settings.lock_duration_ms),
        WFE_SHUTDOWN_GRACE_S=str(settings.shutdown_grace_s),
        WFE_API_KEYS=settings.api_keys,
        WFE_EGRESS_ALLOW=settings.egress_allow,
        WFE_LOG_LEVEL="INFO",
        WFE_METRICS_PORT=str(settings.metrics_port),
        PYTHONPATH=PLUGIN_PATH,
    )
    env.update(extra)
    return env


class Process:
    """A child process whose stderr is collected line by line, to wait for what it says."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
        self.proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        with self.proc.stderr:
            for line in self.proc.stderr:
                with self._changed:
                    self.lines.append(line.rstrip("\n"))
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, text: str, timeout: float = 30, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while sum(text in line for line in self.lines) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"{text!r} not seen; the process said:\n" + "\n".join(self.lines[-40:])
                    )
                self._changed.wait(min(remaining, 0.5))

    def wait_exit(self, timeout: float = 30) -> int:
        """The exit code, once the process ends by itself; what it said when it does not."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"still running after {timeout}s; the process said:\n" + "\n".join(self.lines[-40:])
            ) from None
        self._reader.join(timeout=10)
        return code

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._reader.join(timeout=10)

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self._reader.join(timeout=10)
        return code


def start_worker(settings: Settings, *args: str, **env: str) -> Process:
    process = Process([WFE, "worker", *args], settings_env(settings, **env))
    process.wait_for("worker started")
    return process


def start_api(settings: Settings, port: int) -> Process:
    env = settings_env(settings, WFE_PORT=str(port), WFE_HOST="127.0.0.1")
    process = Process([WFE, "api"], env)
    return process


def wait_http(url: str, timeout: float = 30) -> None:
    """Poll ``url`` until it answers 200, with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer")
        time.sleep(0.05)


async def wait_until(
    check: Callable[[], Awaitable[Any]], timeout: float = 30, what: str = "condition"
) -> Any:
    """Poll ``check`` until it returns something truthy, with a deadline."""
    import asyncio

    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
