"""The long-running processes' way out."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path

import pytest

from tests.support.services import RedisServer
from workflow_engine.serve import freeze_startup_heap, without_password

STUBBORN = textwrap.dedent(
    """
    import asyncio
    from workflow_engine import serve

    serve.LEFTOVER_WAIT_S = 0.2

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass  # a library task that will not stop

    async def main() -> None:
        asyncio.ensure_future(stubborn())
        await asyncio.sleep(0)
        await serve._stop_leftover_tasks()

    asyncio.run(main())
    """
)


def test_a_task_that_swallows_cancellation_does_not_keep_the_process_alive() -> None:
    done = subprocess.run(
        [sys.executable, "-c", STUBBORN], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0
    assert "task does not stop; exiting without it" in done.stderr
    assert "stubborn" in done.stderr


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "mongodb://app:s3cr%40t@db:27017/wfe?authSource=admin",
            "mongodb://app:***@db:27017/wfe?authSource=admin",
        ),
        ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://postgres@127.0.0.1:5432/test"),
        ("sqlite:///.wfe/wfe.db", "sqlite:///.wfe/wfe.db"),
    ],
)
def test_the_printed_store_url_has_no_password(url: str, shown: str) -> None:
    assert without_password(url) == shown


def test_freezing_the_start_up_heap_collects_its_garbage_first() -> None:
    """What is frozen is never collected: start-up's garbage must be gone before."""

    class Cycle:
        def __init__(self) -> None:
            self.me = self

    kept = Cycle()
    dropped = weakref.ref(Cycle())  # (a cycle: only the collector frees it)
    try:
        freeze_startup_heap()
        assert dropped() is None
        assert gc.get_freeze_count() > 0
        assert not any(kept is o for o in gc.get_objects())  # frozen: out of the collector's walks
    finally:
        gc.unfreeze()


SERVED = textwrap.dedent(
    """
    import asyncio, gc, sys
    from workflow_engine import serve
    from workflow_engine.config import load_settings
    from workflow_engine.worker.worker import WorkerService

    class Server:  # uvicorn's place: says what the collector holds when serving starts
        should_exit = False
        async def serve(self) -> None:
            print("api", gc.get_freeze_count())

    async def run_worker(self: WorkerService) -> None:
        print("worker", gc.get_freeze_count())

    serve._server = lambda *_: Server()
    WorkerService.run_until_stopped = run_worker
    settings = load_settings()
    process = sys.argv[1]
    asyncio.run(serve.serve_api(settings) if process == "api" else serve.serve_worker(settings))
    """
)


@pytest.mark.parametrize("process", ["api", "worker"])
def test_a_served_process_freezes_its_start_up_heap_before_it_serves(
    process: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Python's collector walks every object at each full collection: the ~160,000 of a
    process's start-up cost a submit 0.1-0.2 ms of CPU (docs/benchmarks.md)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WFE_")},
        "WFE_REDIS_URL": redis_server.url,
        "WFE_STORE_URL": f"sqlite:///{tmp_path}/wfe.db",
        "WFE_PORT": "0",
    }
    done = subprocess.run(
        [sys.executable, "-c", SERVED, process],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    said, count = done.stdout.split()
    assert said == process
    assert int(count) > 50_000
