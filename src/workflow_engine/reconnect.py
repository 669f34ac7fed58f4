"""Keeping a long-lived Redis connection alive (the event reader's blocking ``XREAD``, the cancel
channel's subscription): after a failure, wait and run it again. The waits are redis-py's
exponential backoff, 0.1 s doubling up to 2 s, and start again from 0.1 s once the connection
has worked: a Redis that restarts is found again at once, one that stays away is not hammered."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from redis.backoff import AbstractBackoff, ExponentialBackoff
from structlog.stdlib import BoundLogger

from workflow_engine.clock import Clock, SystemClock

FIRST_WAIT_S = 0.1
LONGEST_WAIT_S = 2.0
MOST_FAILURES_COUNTED = 32

Session = Callable[[Callable[[], None]], Awaitable[None]]
"""Connects, calls the function it is given once the connection works, then uses it until the
connection fails (an exception) or it has nothing more to do (it returns)."""


def _never() -> bool:
    return False


async def keep_connected(
    session: Session,
    *,
    log: BoundLogger,
    lost: str,
    stopping: Callable[[], bool] = _never,
    backoff: AbstractBackoff | None = None,
    clock: Clock | None = None,
) -> None:
    """Run ``session`` again and again until ``stopping()``. A failure is logged as a warning
    (``lost``, with the error) and waited out; a failure while stopping ends it quietly.
    Cancelling the caller cancels the session."""
    backoff = backoff or ExponentialBackoff(cap=LONGEST_WAIT_S, base=FIRST_WAIT_S)
    clock = clock or SystemClock()
    failures = 0  # in a row, since the connection last worked

    def connected() -> None:
        nonlocal failures
        failures = 0

    while not stopping():
        try:
            await session(connected)
        except Exception as exc:
            if stopping():
                return
            log.warning(lost, error=repr(exc))
            await clock.sleep(backoff.compute(failures))
            # capped: the wait reached its longest long before, and 2**failures must not
            # overflow a float however long Redis stays away
            failures = min(failures + 1, MOST_FAILURES_COUNTED)
