"""Reading events in an API process: replay from any event id, then live, without gaps or
duplicates, across processes.

One blocking ``XREAD`` per process follows every stream that some subscriber watches; a new
stream interrupts it with ``CLIENT UNBLOCK``. A subscriber first registers for live entries,
then replays the stream with ``XRANGE`` from its position; live entries that arrive meanwhile
are held back and merged after the replay. Each subscriber keeps its own position per stream
and drops anything at or before it, so an entry is delivered once, in stream order.

A subscriber's queue is bounded: one that falls behind is cut off (``Overflow``) and must
reconnect and replay from its last event id, so a slow client cannot grow the server's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from workflow_engine.events.model import FIELD, Event, decode_entry, stream_id_after
from workflow_engine.keys import Keys
from workflow_engine.monitor.logging import get_logger
from workflow_engine.reconnect import keep_connected
from workflow_engine.redis_pool import from_url, pooled_client

log = get_logger(__name__)

Entry = tuple[str, dict[str, str]]
REPLAY_PAGE = 500


class Overflow(Exception):
    """The subscriber fell too far behind and was cut off."""


class StreamHub:
    def __init__(self, redis_url: str, keys: Keys, *, block_ms: int = 5000) -> None:
        self.keys = keys
        self.block_ms = block_ms
        # The reader's socket must outlast its blocking XREAD (redis-py >= 6 times reads out
        # after 5 s by default, the same as the block), and redis-py must not reconnect behind
        # our back: a new connection has a new client id, which CLIENT UNBLOCK has to know.
        # Every error goes to ``_read``, which is run again and reads the id again.
        self._reader = from_url(
            redis_url,
            decode_responses=True,
            single_connection_client=True,
            socket_connect_timeout=2,
            socket_timeout=block_ms / 1000 + 10,
            retry=Retry(NoBackoff(), 0),
        )
        # Replays, positions and unblocks: many subscribers at once (a page reload of every
        # tab) must wait for a pooled connection, not fail with MaxConnectionsError.
        self.control = pooled_client(
            redis_url, decode_responses=True, socket_connect_timeout=2, socket_timeout=10
        )
        self._cursors: dict[str, str] = {}
        self._subscribers: dict[str, set[Subscriber]] = {}
        self._changed = asyncio.Event()
        self._dirty = False
        self._reader_id: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._unblocking: asyncio.Task[None] | None = None
        self._closing = False

    async def close(self) -> None:
        """Stop the reader without cancelling it mid-command where possible: it is woken up
        and sees that it must stop; only one that does not stop in time is cancelled."""
        self._closing = True
        self._changed.set()
        if self._task is not None:
            if self._reader_id is not None:
                with contextlib.suppress(Exception):
                    await self.control.client_unblock(self._reader_id)
            _, pending = await asyncio.wait({self._task}, timeout=2)
            if pending:
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=5)
        if self._unblocking is not None:  # it would open a connection on the closed client
            self._unblocking.cancel()
            await asyncio.wait({self._unblocking}, timeout=5)
        await self._reader.aclose()
        await self.control.aclose()

    def subscriber(self, maxsize: int = 1000) -> Subscriber:
        return Subscriber(self, maxsize)

    async def last_id(self, key: str) -> str | None:
        """The id of the newest entry of a stream (None: empty or missing)."""
        last: list[Entry] = cast(Any, await self.control.xrevrange(key, count=1))
        return last[0][0] if last else None

    async def last_ids(self, keys: list[str]) -> list[str | None]:
        pipe = self.control.pipeline(transaction=False)
        for key in keys:
            pipe.xrevrange(key, count=1)
        results: list[list[Entry]] = cast(Any, await pipe.execute())
        return [r[0][0] if r else None for r in results]

    # -- registration ---------------------------------------------------------------------

    def register(self, key: str, subscriber: Subscriber, position: str) -> None:
        self._subscribers.setdefault(key, set()).add(subscriber)
        if self._task is None and not self._closing:  # the reader starts with the first stream
            self._task = asyncio.ensure_future(self._run())
        if key not in self._cursors:  # else the subscriber's replay covers what it missed
            self._cursors[key] = position
            self._wake()

    def unregister(self, key: str, subscriber: Subscriber) -> None:
        subscribers = self._subscribers.get(key)
        if subscribers is None:
            return
        subscribers.discard(subscriber)
        if not subscribers:
            del self._subscribers[key]
            self._cursors.pop(key, None)

    def _wake(self) -> None:
        self._dirty = True
        self._changed.set()
        if self._reader_id is not None and (self._unblocking is None or self._unblocking.done()):
            self._unblocking = asyncio.ensure_future(self._unblock())

    async def _unblock(self) -> None:
        """Interrupt the blocking XREAD so that it starts again with the new streams. The
        reader may not be blocked yet: try until it has noticed the change."""
        for _ in range(200):
            if not self._dirty or self._reader_id is None:
                return
            try:
                if await self.control.client_unblock(self._reader_id):
                    return
            except Exception as exc:
                log.debug("client unblock failed", error=repr(exc))
                return
            await asyncio.sleep(0.001)

    # -- the reader -----------------------------------------------------------------------

    async def _run(self) -> None:
        await keep_connected(
            self._read,
            log=log,
            lost="event reader lost Redis; retrying",
            stopping=lambda: self._closing,
        )

    async def _read(self, connected: Callable[[], None]) -> None:
        try:
            self._reader_id = int(await self._reader.client_id())
            connected()
            await self._read_forever()
        except Exception:
            self._reader_id = None  # a new connection has a new id
            raise

    async def _read_forever(self) -> None:
        while not self._closing:
            if not self._cursors:
                self._changed.clear()
                await self._changed.wait()
                continue
            self._dirty = False
            streams: dict[Any, Any] = dict(self._cursors)
            response: list[tuple[str, list[Entry]]] = cast(
                Any, await self._reader.xread(streams, count=REPLAY_PAGE, block=self.block_ms)
            )
            for key, entries in response or []:
                if not entries:
                    continue
                if key in self._cursors:
                    self._cursors[key] = entries[-1][0]
                for subscriber in list(self._subscribers.get(key, ())):
                    subscriber.deliver(key, entries)


class Subscriber:
    """What one client follows: executions (replay + live) and, optionally, a client's index
    of executions. ``await next()`` gives events in order; ``Overflow`` when cut off.

    Replayed events wait for room in the queue (the consumer sets the pace, however long the
    history); live events that find it full cut the subscriber off."""

    def __init__(self, hub: StreamHub, maxsize: int) -> None:
        self.hub = hub
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize)
        self.positions: dict[str, str] = {}
        self._held_limit = 10 * maxsize
        self._replaying: dict[str, list[Entry]] = {}
        self._executions: dict[str, str] = {}  # stream key -> execution id
        self._clients: set[str] = set()
        self._finished: set[str] = set()  # executions whose final event was delivered
        self._tasks: set[asyncio.Task[None]] = set()
        self.overflowed = False
        self.closed = False

    # -- following ------------------------------------------------------------------------

    async def follow_execution(self, execution_id: str, after: str | None = None) -> None:
        """Everything after event ``after`` (from the first event when None), then live."""
        key = self.hub.keys.events(execution_id)
        if key in self.positions:
            return
        self._executions[key] = execution_id
        await self._follow(key, after or "0-0")

    async def follow_execution_from_now(self, execution_id: str) -> None:
        key = self.hub.keys.events(execution_id)
        if key in self.positions:
            return
        await self.follow_execution(execution_id, await self.hub.last_id(key))

    async def follow_client(
        self,
        tenant_id: str,
        client_id: str,
        active: Callable[[], Awaitable[Iterable[str]]],
        since: str | None = None,
    ) -> None:
        """Every event of the client's active executions (replayed from their first event, so
        that nothing sent before the subscription is lost), and of every execution it submits
        from now on (or since its index's entry ``since``: those ended meanwhile too).
        Executions already followed, or already finished for this subscriber, are left as they
        are.

        ``active()`` is asked only once the client's index is followed: an execution submitted
        in between is then in the index, in the answer, or both, never in neither."""
        key = self.hub.keys.client_index(tenant_id, client_id)
        if key in self.positions:
            return
        self._clients.add(key)
        await self._follow(key, since or await self.hub.last_id(key) or "0-0")
        for execution_id in await active():
            await self._follow_new(execution_id)

    async def _follow_new(self, execution_id: str) -> None:
        if self.hub.keys.events(execution_id) not in self._finished:
            await self.follow_execution(execution_id)

    def unfollow_execution(self, execution_id: str) -> None:
        self._drop(self.hub.keys.events(execution_id))

    def forget(self) -> None:
        """Follow nothing, as if new: drop every stream followed and the events waiting (not
        once cut off: the consumer must still learn that)."""
        if self.closed:
            return
        for key in list(self.positions):
            self._drop(key)
        self._clients.clear()
        self._finished.clear()
        for task in list(self._tasks):
            task.cancel()
        while not self._queue.empty():
            self._queue.get_nowait()

    def unfollow_client(self, tenant_id: str, client_id: str) -> None:
        key = self.hub.keys.client_index(tenant_id, client_id)
        self._clients.discard(key)
        self._drop(key)

    async def _follow(self, key: str, position: str) -> None:
        self.positions[key] = position
        self._replaying[key] = []
        self.hub.register(key, self, position)
        start = "-" if position == "0-0" else f"({position}"
        try:
            while not self.closed:
                page: list[Entry] = cast(
                    Any,
                    await self.hub.control.xrange(key, min=start, max="+", count=REPLAY_PAGE),
                )
                await self._replay(key, page)
                if len(page) < REPLAY_PAGE:
                    break
                start = f"({page[-1][0]}"
            while self._replaying.get(key):  # live entries that came meanwhile, in order
                held, self._replaying[key] = self._replaying[key], []
                await self._replay(key, held)
        finally:
            self._replaying.pop(key, None)

    def _drop(self, key: str) -> None:
        self.positions.pop(key, None)
        self._replaying.pop(key, None)
        self._executions.pop(key, None)
        self.hub.unregister(key, self)

    # -- delivery -------------------------------------------------------------------------

    def deliver(self, key: str, entries: list[Entry]) -> None:
        """Live entries from the hub's reader."""
        held = self._replaying.get(key)
        if held is not None:
            held.extend(entries)
            if len(held) > self._held_limit:
                self._overflow()
            return
        for event in self._take(key, entries):
            try:
                self._queue.put_nowait(event)
            except asyncio.QueueFull:
                self._overflow()
                return

    async def _replay(self, key: str, entries: list[Entry]) -> None:
        for event in self._take(key, entries):
            await self._queue.put(event)
            if self.closed:
                return

    def _take(self, key: str, entries: list[Entry]) -> list[Event]:
        """The new entries of a stream as events (in order, each once); the client index's
        entries start following their executions instead."""
        if self.closed or key not in self.positions:
            return []
        events: list[Event] = []
        for entry_id, fields in entries:
            if not stream_id_after(entry_id, self.positions[key]):
                continue
            self.positions[key] = entry_id
            if key in self._clients:
                self._spawn(self._follow_new(fields[FIELD]))
                continue
            event = decode_entry(self._executions[key], entry_id, fields)
            events.append(event)
            if event.final:
                self._finished.add(key)
                self._drop(key)  # nothing comes after a final event
                break
        return events

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _overflow(self) -> None:
        """Drop the backlog and tell the consumer (it replays from its last event id)."""
        self.overflowed = True
        self.close()
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    async def next(self) -> Event:
        event = await self._queue.get()
        if event is None:
            raise Overflow
        return event

    def pending(self) -> int:
        """How many events (or a cut-off) are waiting for ``next()``."""
        return self._queue.qsize()

    def close(self) -> None:
        self.closed = True
        for key in list(self.positions):
            self._drop(key)
        for task in list(self._tasks):
            task.cancel()
