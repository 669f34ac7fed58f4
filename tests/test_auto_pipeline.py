"""AutoPipeline against a real Redis: the commands of one loop iteration share a round trip
and a connection, and each caller still gets its own reply or error."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError, ResponseError

from tests.support.services import RedisServer, free_port
from workflow_engine.auto_pipeline import AutoPipeline


@pytest.fixture
def name() -> str:
    """A client name (and key prefix) of this test's own."""
    return f"auto-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def client(redis_server: RedisServer, name: str) -> AsyncIterator[AutoPipeline]:
    client = AutoPipeline.from_url(redis_server.url, decode_responses=True, client_name=name)
    yield client
    await client.aclose()


async def connections_named(redis_server: RedisServer, name: str) -> int:
    admin = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        listed = await admin.client_list()
    finally:
        await admin.aclose()
    return sum(1 for entry in listed if entry.get("name") == name)


async def test_concurrent_commands_share_one_connection_and_each_gets_its_reply(
    client: AutoPipeline, redis_server: RedisServer, name: str
) -> None:
    key = f"{name}:counter"
    replies = await asyncio.gather(*(client.incr(key) for _ in range(200)))
    assert replies == list(range(1, 201))  # in the callers' order, one reply each
    assert await connections_named(redis_server, name) == 1


async def test_a_plain_pooled_client_opens_a_connection_per_concurrent_command(
    redis_server: RedisServer, name: str
) -> None:
    """What the AutoPipeline saves (the comparison that makes the test above mean something;
    with 200 at once, redis-py's pool refuses: it holds 100 connections at most)."""
    plain = aioredis.Redis.from_url(redis_server.url, decode_responses=True, client_name=name)
    try:
        await asyncio.gather(*(plain.incr(f"{name}:counter") for _ in range(50)))
        assert await connections_named(redis_server, name) > 10
    finally:
        await plain.aclose()


async def test_an_error_goes_to_its_own_caller_only(client: AutoPipeline, name: str) -> None:
    await client.hset(f"{name}:hash", "field", "value")
    replies = await asyncio.gather(
        client.set(f"{name}:a", "1"),
        client.incr(f"{name}:hash"),  # WRONGTYPE
        client.get(f"{name}:a"),
        return_exceptions=True,
    )
    assert replies[0] is True
    assert isinstance(replies[1], ResponseError)
    assert "WRONGTYPE" in str(replies[1])
    assert replies[2] == "1"


async def test_scripts_are_loaded_again_when_redis_forgot_them(
    client: AutoPipeline, name: str
) -> None:
    script = client.register_script("return redis.call('INCR', KEYS[1])")
    assert await script(keys=[f"{name}:n"]) == 1
    await client.script_flush()  # NOSCRIPT for every call in the next batch
    replies = await asyncio.gather(*(script(keys=[f"{name}:n"]) for _ in range(5)))
    assert sorted(replies) == [2, 3, 4, 5, 6]


async def test_a_command_cancelled_before_its_batch_left_is_not_sent(
    client: AutoPipeline, name: str
) -> None:
    key = f"{name}:cancelled"
    task = asyncio.ensure_future(client.set(key, "sent"))
    await asyncio.sleep(0)  # the task queued its command; the batch leaves next iteration
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await client.set(f"{name}:after", "1") is True  # a later batch goes out
    assert await client.get(key) is None


async def test_when_redis_cannot_be_reached_every_command_of_the_batch_fails() -> None:
    client = AutoPipeline.from_url(
        f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2, retry=None
    )
    try:
        replies = await asyncio.gather(
            *(client.get(f"k{i}") for i in range(3)), return_exceptions=True
        )
    finally:
        await client.aclose()
    assert all(isinstance(reply, ConnectionError) for reply in replies), replies


async def test_while_redis_stalls_later_commands_wait_for_a_connection_instead_of_failing(
    redis_server: RedisServer, name: str
) -> None:
    """Every loop iteration's batch holds a connection until its replies come: during a stall
    (a fork, a failover) a worker of many lanes would ask the pool for more connections than it
    has, and the pool refuses at once (a finished job's acknowledgement would fail)."""
    client = AutoPipeline.from_url(
        redis_server.url, decode_responses=True, client_name=name, max_connections=12
    )
    stall = aioredis.Redis.from_url(redis_server.url)
    try:

        async def caller(turn: int) -> str:
            for _ in range(turn):  # one batch per loop iteration: each caller its own
                await asyncio.sleep(0)
            return str(await client.execute_command("ECHO", f"{name}-{turn}"))

        stalled = asyncio.ensure_future(stall.execute_command("DEBUG", "SLEEP", "0.5"))
        replies = await asyncio.gather(*(caller(turn) for turn in range(1, 101)))
        await stalled
        assert replies == [f"{name}-{turn}" for turn in range(1, 101)]
        assert await connections_named(redis_server, name) <= 8
    finally:
        await client.aclose()
        await stall.aclose()
