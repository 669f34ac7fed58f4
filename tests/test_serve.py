"""The long-running processes' way out."""

from __future__ import annotations

import subprocess
import sys
import textwrap

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
