"""A MongoDB for tests and benchmarks: ``WFE_TEST_MONGODB_URL`` when set (a real MongoDB), else a
private nx-27017 (a MongoDB wire-protocol server on SQLite, from PyPI) on a free port. The
driver talks to it over a socket, as to MongoDB."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import ConnectionFailure

from workflow_engine.embedded_redis import free_port

MONGODB_URL_VAR = "WFE_TEST_MONGODB_URL"


class NxServerError(RuntimeError):
    pass


def nx_binary() -> str | None:
    """The nx-27017 script of this environment, or one on PATH."""
    beside = Path(sys.executable).with_name("nx-27017")
    return str(beside) if beside.exists() else shutil.which("nx-27017")


class NxServer:
    """nx-27017 as a child process, its data (one SQLite file per database) in ``directory``."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory.resolve()
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> NxServer:
        binary = nx_binary()
        if binary is None:
            raise NxServerError("nx-27017 is not installed (pip install -e '.[dev]')")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                binary,
                "--data-dir",
                str(self.directory / "data"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-file",
                str(self.directory / "nx.log"),
                "--pid-file",
                str(self.directory / "nx.pid"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client: MongoClient[dict[str, object]] = MongoClient(
            self.url, serverSelectionTimeoutMS=200, connectTimeoutMS=200
        )
        try:
            while True:
                try:
                    client.admin.command("ping")
                    return
                except ConnectionFailure:
                    pass
                if self.process is not None and self.process.poll() is not None:
                    raise NxServerError(
                        f"nx-27017 exited with code {self.process.returncode}; "
                        f"see {self.directory / 'nx.log'}"
                    )
                if time.monotonic() > deadline:
                    raise NxServerError(f"nx-27017 did not answer on port {self.port}")
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> NxServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def configured_url() -> str | None:
    """A real MongoDB to test against, if one is configured."""
    return os.environ.get(MONGODB_URL_VAR) or None


def database_url(server_url: str, prefix: str = "wfe_test") -> str:
    """``server_url`` with a fresh database name of its own (its query string kept)."""
    base, _, query = server_url.partition("?")
    host = base.rstrip("/")
    if host.count("/") > 2:  # the URL names a database: replace it
        host = host.rsplit("/", 1)[0]
    url = f"{host}/{prefix}_{uuid.uuid4().hex[:12]}"
    return f"{url}?{query}" if query else url


def drop_database(url: str) -> None:
    client: MongoClient[dict[str, object]] = MongoClient(url, serverSelectionTimeoutMS=5000)
    try:
        database = client.get_default_database()
        client.drop_database(database.name)
    finally:
        client.close()
