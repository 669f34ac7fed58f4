"""Replay + live delivery from Redis streams, against the real (test) Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.support.processes import wait_until
from tests.support.services import RedisServer
from workflow_engine.events.hub import Overflow, StreamHub, Subscriber
from workflow_engine.events.model import Event
from workflow_engine.events.publisher import EventPublisher
from workflow_engine.keys import Keys
from workflow_engine.worker.worker import blocking_connection


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def keys() -> Keys:
    return Keys(f"h{uuid.uuid4().hex[:8]}")


@pytest.fixture
async def hub(redis_server: RedisServer, keys: Keys) -> AsyncIterator[StreamHub]:
    h = StreamHub(redis_server.url, keys, block_ms=2000)
    yield h
    await h.close()


@pytest.fixture
async def publisher(redis: aioredis.Redis, keys: Keys) -> AsyncIterator[EventPublisher]:
    p = EventPublisher(redis, keys, maxlen=100_000, ttl_s=60)
    yield p
    await p.flush()


async def collect(subscriber: Subscriber, count: int | None = None) -> list[Event]:
    """Events until the final one (or ``count`` of them)."""
    got: list[Event] = []
    async with asyncio.timeout(10):
        while count is None or len(got) < count:
            event = await subscriber.next()
            got.append(event)
            if event.final:
                break
    return got


async def stream_ids(redis: aioredis.Redis, key: str) -> list[str]:
    return [entry_id for entry_id, _ in await redis.xrange(key)]


async def test_replay_then_live_without_gaps_or_duplicates(
    hub: StreamHub, publisher: EventPublisher, redis: aioredis.Redis, keys: Keys
) -> None:
    for i in range(5000):  # a replay of ten pages, during which live entries arrive
        publisher.publish("e1", "node.completed", {"i": i})
    await publisher.flush()

    async def keep_writing() -> None:
        for i in range(5000, 5300):
            await publisher.publish("e1", "node.completed", {"i": i})  # one round trip each
        await publisher.publish("e1", "execution.completed", {"i": 5300}, final=True)

    early = hub.subscriber(10_000)  # keeps the process's reader at the stream's end
    await early.follow_execution_from_now("e1")
    subscriber = hub.subscriber(10_000)
    writer = asyncio.ensure_future(keep_writing())
    await subscriber.follow_execution("e1")
    got = await collect(subscriber)
    await writer
    early.close()
    assert [e.data["i"] for e in got] == list(range(5301))
    assert [e.id for e in got] == await stream_ids(redis, keys.events("e1"))
    assert all(e.execution_id == "e1" for e in got)
    subscriber.close()


async def test_follow_after_an_event_id(hub: StreamHub, publisher: EventPublisher) -> None:
    for i in range(5):
        publisher.publish("e2", "execution.progress", {"i": i})
    await publisher.flush()
    first = hub.subscriber()
    await first.follow_execution("e2")
    seen = await collect(first, 5)
    second = hub.subscriber()
    await second.follow_execution("e2", after=seen[2].id)
    await publisher.publish("e2", "execution.failed", {"i": 5}, final=True)
    assert [e.data["i"] for e in await collect(second)] == [3, 4, 5]
    assert [e.data["i"] for e in await collect(first)] == [5]
    first.close()
    second.close()


async def test_a_long_history_is_replayed_at_the_consumers_pace(
    hub: StreamHub, publisher: EventPublisher
) -> None:
    for i in range(50):
        publisher.publish("e3", "node.completed", {"i": i})
    await publisher.publish("e3", "execution.completed", {"i": 50}, final=True)
    small = hub.subscriber(maxsize=3)  # far less than the history
    follow = asyncio.ensure_future(small.follow_execution("e3"))
    got = await collect(small)
    await follow
    assert [e.data["i"] for e in got] == list(range(51))


async def test_a_subscriber_that_falls_behind_live_is_cut_off(
    hub: StreamHub, publisher: EventPublisher
) -> None:
    slow = hub.subscriber(maxsize=3)
    await slow.follow_execution("e5")  # nothing to replay: live from here
    for i in range(10):  # a burst the subscriber does not read
        publisher.publish("e5", "node.completed", {"i": i})
    await publisher.flush()

    async def cut_off() -> bool:  # the burst arrives in one read, more than fits
        return slow.overflowed

    await wait_until(cut_off, 5, "the subscriber to be cut off")
    with pytest.raises(Overflow):
        await slow.next()
    assert slow.pending() == 0  # the backlog is dropped, not kept in memory


async def test_pending_counts_the_events_next_has_not_taken(
    hub: StreamHub, publisher: EventPublisher
) -> None:
    subscriber = hub.subscriber()
    assert subscriber.pending() == 0
    for i in range(3):
        publisher.publish("e6", "node.completed", {"i": i})
    await publisher.flush()
    await subscriber.follow_execution("e6")  # returns once the replay is queued
    assert subscriber.pending() == 3
    assert (await subscriber.next()).data["i"] == 0
    assert subscriber.pending() == 2
    subscriber.close()


async def test_client_subscription_follows_new_and_active_executions(
    hub: StreamHub, publisher: EventPublisher
) -> None:
    publisher.publish("old", "execution.started", {"n": 0})
    await publisher.flush()
    subscriber = hub.subscriber()

    async def active() -> list[str]:
        return ["old"]

    await subscriber.follow_client("t", "tab", active)
    publisher.publish("old", "execution.progress", {"n": 1})
    publisher.index_client("t", "tab", "new")
    publisher.index_client("t", "other-tab", "elsewhere")
    publisher.publish("new", "execution.queued", {"n": 2})
    publisher.publish("elsewhere", "execution.queued", {"n": 99})
    await publisher.flush()
    got = await collect(subscriber, 3)
    seen = {(e.execution_id, e.data["n"]) for e in got}
    assert seen == {("old", 0), ("old", 1), ("new", 2)}  # each from its first event
    subscriber.close()


async def test_an_execution_submitted_while_the_client_subscribes_is_followed(
    hub: StreamHub, publisher: EventPublisher
) -> None:
    """The submit lands between the store's answer (not yet active) and the index position:
    the subscription must still see it."""
    subscriber = hub.subscriber()

    async def active() -> list[str]:
        publisher.index_client("t", "racing", "racer")
        publisher.publish("racer", "execution.queued", {"n": 1})
        await publisher.flush()
        return []  # the store was asked before the submit was recorded

    await subscriber.follow_client("t", "racing", active)
    publisher.publish("racer", "execution.completed", {"n": 2}, final=True)
    await publisher.flush()
    assert [(e.execution_id, e.data["n"]) for e in await collect(subscriber)] == [
        ("racer", 1),
        ("racer", 2),
    ]
    subscriber.close()


async def test_many_subscribers_on_one_stream(hub: StreamHub, publisher: EventPublisher) -> None:
    subscribers = [hub.subscriber() for _ in range(20)]
    for s in subscribers:
        await s.follow_execution("e4")
    for i in range(30):
        publisher.publish("e4", "node.completed", {"i": i})
    publisher.publish("e4", "execution.completed", {"i": 30}, final=True)
    await publisher.flush()
    results: list[Any] = await asyncio.gather(*(collect(s) for s in subscribers))
    for got in results:
        assert [e.data["i"] for e in got] == list(range(31))


async def test_an_idle_reader_outlasts_the_redis_client_read_timeout(
    redis_server: RedisServer, publisher: EventPublisher, keys: Keys
) -> None:
    """redis-py >= 6 times a read out after 5 s by default: a reader blocked longer than that
    must keep its connection (and its client id, which CLIENT UNBLOCK needs). The BullMQ
    worker's blocking connection has the same need."""
    hub = StreamHub(redis_server.url, keys, block_ms=6000)
    subscriber = hub.subscriber()
    try:
        await subscriber.follow_execution("idle")

        async def reader_id_now() -> int | None:
            return hub._reader_id

        reader_id = await wait_until(reader_id_now, what="the reader connected")
        worker_side = aioredis.Redis.from_url(blocking_connection(redis_server.url))
        try:  # both idle for longer than the default read timeout
            assert await worker_side.bzpopmin(f"{keys.prefix}:nothing", 6) is None
        finally:
            await worker_side.aclose()
        await publisher.publish("idle", "execution.completed", {"i": 1}, final=True)
        assert [e.data["i"] for e in await collect(subscriber)] == [1]
        assert hub._reader_id == reader_id
    finally:
        subscriber.close()
        await hub.close()
