"""How times are kept and written: epoch seconds in the engine, epoch milliseconds in the store,
ISO 8601 UTC with milliseconds on the wire."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime


def now_ms() -> int:
    return int(time.time() * 1000)


def iso(ts: float | None) -> str | None:
    """Epoch seconds -> ISO 8601 UTC with milliseconds, as on the wire."""
    if ts is None:
        return None
    return _iso_ms(int(ts * 1000))


def iso_ms(ms: int | None) -> str | None:
    """Epoch milliseconds -> ISO 8601, as ``iso``."""
    return None if ms is None else _iso_ms(ms)


@functools.lru_cache(maxsize=4096)
def _iso_ms(ms: int) -> str:
    # many timestamps of a burst share a millisecond: format each millisecond once
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def from_iso(text: str | None) -> float | None:
    """ISO 8601 (as ``iso`` writes it) -> epoch seconds."""
    if text is None:
        return None
    return datetime.fromisoformat(text).timestamp()
