"""The long-running processes' way out."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from workflow_engine.serve import without_password

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
