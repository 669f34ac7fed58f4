"""Coalescing of streamed text: a model sends a token every few milliseconds, and an event per
token would cost a Redis write and a WebSocket frame each. Pieces are gathered and published
at most once per ``interval`` seconds, or as soon as ``max_chars`` have gathered (SPEC §9:
50 ms or 512 characters), and what is left when the stream ends is flushed then.

Pieces are kept by kind (``text``, ``reasoning``); one published chunk holds the kinds that
gathered since the last one, in the order they first came: ``{"reasoning": ..., "text": ...}``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

INTERVAL_S = 0.05
MAX_CHARS = 512


class Coalescer:
    """Feed it with ``add``; call ``flush`` at the end and ``aclose`` in a ``finally``. A
    timer publishes what gathered when no new piece comes before the interval is over."""

    def __init__(
        self,
        publish: Callable[[dict[str, Any]], Awaitable[None]],
        *,
        interval: float = INTERVAL_S,
        max_chars: int = MAX_CHARS,
    ) -> None:
        self._publish = publish
        self.interval = interval
        self.max_chars = max_chars
        self._pieces: dict[str, list[str]] = {}
        self._size = 0
        self._last = -interval  # (loop time of the last publish: the first piece goes at once)
        self._lock = asyncio.Lock()  # the timer and ``add`` publish in the order they took
        self._timer: asyncio.Task[None] | None = None
        self._failed: BaseException | None = None  # (a publish by the timer that raised)
        self.published = 0

    async def add(self, kind: str, text: str) -> None:
        if not text:
            return
        self._pieces.setdefault(kind, []).append(text)
        self._size += len(text)
        if self._failed is not None:
            raise self._failed
        wait = self._last + self.interval - asyncio.get_running_loop().time()
        if self._size >= self.max_chars or wait <= 0:
            await self.flush()
        elif self._timer is None:
            self._timer = asyncio.ensure_future(self._flush_in(wait))

    async def flush(self) -> None:
        """Publish what gathered, now."""
        self._cancel_timer()
        if self._failed is not None:
            raise self._failed
        async with self._lock:
            if not self._pieces:
                return
            chunk = {kind: "".join(pieces) for kind, pieces in self._pieces.items()}
            self._pieces, self._size = {}, 0
            self._last = asyncio.get_running_loop().time()
            self.published += 1
            await self._publish(chunk)

    async def aclose(self) -> None:
        """Stop the timer (what gathered is dropped: call ``flush`` first to publish it)."""
        timer, self._timer = self._timer, None
        if timer is not None and not timer.done():
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer

    async def _flush_in(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._timer = None  # (``flush`` must not cancel the task it runs in)
        try:
            await self.flush()
        except Exception as exc:  # raised again to the node by its next ``add`` or ``flush``
            self._failed = exc

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()
