"""The reconnect loop of long-lived Redis connections: its waits (0.1 s doubling up to 2 s, from
the start again once connected), its warnings, and how it stops."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.support.clock import FakeClock
from workflow_engine.monitor.logging import get_logger
from workflow_engine.reconnect import keep_connected

log = get_logger("tests.reconnect")


class Flaky:
    """A session that follows a script: ``"fail"`` fails before connecting, ``"lost"`` connects
    and then fails, ``"done"`` connects and returns; after the script it is stopped."""

    def __init__(self, *script: str) -> None:
        self.script = list(script)
        self.runs = 0

    def stopping(self) -> bool:
        return self.runs >= len(self.script)

    async def __call__(self, connected: Callable[[], None]) -> None:
        step = self.script[self.runs]
        self.runs += 1
        if step == "fail":
            raise ConnectionError("refused")
        connected()
        if step == "lost":
            raise ConnectionError("reset")


async def test_waits_double_up_to_two_seconds_and_start_again_once_connected(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    session = Flaky(*["fail"] * 7, "lost", "fail", "done", "fail", "done")
    with caplog.at_level("WARNING", logger="tests.reconnect"):
        await keep_connected(
            session, log=log, lost="lost it", stopping=session.stopping, clock=clock
        )
    assert session.runs == 12
    assert clock.sleeps == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 0.1, 0.2, 0.1]
    warnings = [r.msg for r in caplog.records if r.name == "tests.reconnect"]
    assert len(warnings) == len(clock.sleeps)  # one per failure, with the error
    assert {w["event"] for w in warnings} == {"lost it"}
    assert warnings[0]["error"] == "ConnectionError('refused')"
    assert warnings[7]["error"] == "ConnectionError('reset')"


async def test_a_failure_while_stopping_ends_it_without_a_wait(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    stopped = False

    async def session(connected: Callable[[], None]) -> None:
        nonlocal stopped
        stopped = True  # closing: the connection is taken away under the session
        raise ConnectionError("closed")

    with caplog.at_level("WARNING", logger="tests.reconnect"):
        await keep_connected(
            session, log=log, lost="lost it", stopping=lambda: stopped, clock=clock
        )
    assert clock.sleeps == []
    assert [r for r in caplog.records if r.name == "tests.reconnect"] == []


async def test_cancelling_it_cancels_the_session(clock: FakeClock) -> None:
    started = asyncio.Event()
    cancelled = False

    async def session(connected: Callable[[], None]) -> None:
        nonlocal cancelled
        connected()
        started.set()
        try:
            await asyncio.Event().wait()  # a blocking read that never returns
        except asyncio.CancelledError:
            cancelled = True
            raise

    task = asyncio.ensure_future(keep_connected(session, log=log, lost="lost it", clock=clock))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled
    assert clock.sleeps == []


async def test_a_redis_that_stays_away_for_hours_is_still_retried_every_two_seconds(
    clock: FakeClock,
) -> None:
    """3,000 failures in a row (well past 2**1024, where the backoff's arithmetic overflows):
    the loop keeps waiting its longest wait and keeps trying."""
    session = Flaky(*["fail"] * 3000, "done")
    await keep_connected(session, log=log, lost="lost it", stopping=session.stopping, clock=clock)
    assert session.runs == 3001
    assert clock.sleeps[5:] == [2.0] * 2995
