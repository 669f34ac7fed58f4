"""Live events: SSE for one execution, WebSocket for a client's executions. Both replay first
(from the event after ``lastEventId``, or from the first event), then deliver live events as
they happen, from whichever worker runs the execution."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, Literal

import orjson
import redis.exceptions
from fastapi import APIRouter, Depends, Header, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.types import Message

from workflow_engine.api.auth import Principal, principal_or_token
from workflow_engine.api.errors import ApiError
from workflow_engine.api.services import Services
from workflow_engine.events.hub import Overflow, Subscriber
from workflow_engine.events.model import Event, final_event, valid_stream_id
from workflow_engine.events.publisher import has_final_event
from workflow_engine.fastgpt.dialect import FastGptDialect
from workflow_engine.monitor.logging import get_logger
from workflow_engine.queue.submit import NotFound
from workflow_engine.store.records import ExecutionRecord
from workflow_engine.vocabulary import FINAL_STATUSES, iso, now_ms

log = get_logger(__name__)

router = APIRouter(tags=["events"])

CLOSE_UNAUTHORIZED = 1008
CLOSE_UNAVAILABLE = 1011
CLOSE_SLOW_CONSUMER = 1013
REDIS_CHECK_S = 2.0
"""How long Redis may take to answer for an execution's stream before SSE answers 503."""
MAX_ID_CHARS = 128
"""Longer execution ids are refused as malformed (and never echoed back)."""
INVALID = {"type": "error", "message": "Invalid message format"}
IMPLICIT_AFTER_S = 0.5
"""A WebSocket silent this long after it connected follows its client's executions."""


async def _execution(
    request: Request, execution_id: str, who: Annotated[Principal, Depends(principal_or_token)]
) -> ExecutionRecord:
    services: Services = request.app.state.services
    record = await services.store.get(execution_id, who.tenant_id)
    if record is None:
        raise NotFound(f"execution {execution_id} not found")
    return record


async def _redis_answers(
    request: Request, record: Annotated[ExecutionRecord, Depends(_execution)]
) -> None:
    """Redis answers for the execution's stream (one round trip, on the client that replays
    it). Checked before the response starts: an unreachable or stalled Redis is a 503 with
    ``Retry-After`` (api/errors.py), not an event stream that ends empty."""
    services: Services = request.app.state.services
    key = services.redis_keys.events(record.execution_id)
    try:
        async with asyncio.timeout(REDIS_CHECK_S):
            await services.hub.control.exists(key)
    except TimeoutError as exc:  # the control client would wait 10 s a read, 5 s a connection
        raise redis.exceptions.TimeoutError(
            f"Redis did not answer within {REDIS_CHECK_S} s"
        ) from exc


def _position(
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    after: Annotated[str | None, Query(alias="lastEventId")] = None,
) -> str | None:
    """Where to resume: the ``Last-Event-ID`` header, else the ``lastEventId`` parameter."""
    position = last_event_id or after
    if position is not None and not valid_stream_id(position):
        raise ApiError(
            422,
            "invalid",
            "Last-Event-ID is not an event id",
            [{"path": "Last-Event-ID", "message": "expected <milliseconds>-<sequence>"}],
        )
    return position


@router.get("/api/workflow/events/{execution_id}", response_class=EventSourceResponse)
async def execution_events(
    request: Request,
    record: Annotated[ExecutionRecord, Depends(_execution)],
    position: Annotated[str | None, Depends(_position)],
    _: Annotated[None, Depends(_redis_answers)],
    dialect: Annotated[Literal["native", "fastgpt"], Query(alias="format")] = "native",
    detail: bool = True,
) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events of one execution: replay after ``Last-Event-ID`` (header, or the
    ``lastEventId`` query parameter), then live; the stream ends after the final event.
    The key: ``Authorization: Bearer`` or ``?token=`` (``EventSource`` cannot set headers).
    ``format=fastgpt``: in FastGPT's dialect (SPEC section 13; ``detail=false``: the answer
    chunks only, as FastGPT's plain stream)."""
    services: Services = request.app.state.services
    if dialect == "fastgpt":
        async for frame in _fastgpt_frames(services, record, position, detail):
            yield frame
        return
    async for event in _events(services, record, position):
        yield _sse(event)


async def _fastgpt_frames(
    services: Services, record: ExecutionRecord, position: str | None, detail: bool
) -> AsyncIterator[ServerSentEvent]:
    full = await services.store.get(record.execution_id, with_definition=True)
    source = full if full is not None else record
    frames = FastGptDialect.of(
        source.definition, source.inputs, detail=detail, started_ms=source.created_at
    )
    if position is not None:  # what ended before it belongs in flowResponses too
        results = await services.store.node_results(record.execution_id)
        frames.seed([r.to_dict() for r in results], float(position.partition("-")[0]))
    async for event in _events(services, record, position):
        for frame in frames.frames(event):
            yield ServerSentEvent(raw_data=frame.data, event=frame.event, id=frame.id)
        if frames.ended:
            return


async def _events(
    services: Services, record: ExecutionRecord, position: str | None
) -> AsyncIterator[Event]:
    """The execution's events after ``position``, then live ones, up to its final event."""
    subscriber = services.hub.subscriber(services.settings.ws_queue_size)
    finished = record.status in FINAL_STATUSES
    # the replay runs beside this loop: it waits for room in the queue that this loop empties
    follow = asyncio.ensure_future(subscriber.follow_execution(record.execution_id, position))
    try:
        while True:
            if follow.done():
                follow.result()
                if finished and not subscriber.pending():
                    # the replay is over without a final event: this client saw it already,
                    # or the stream expired; then say how it ended
                    if not await _stream_ended(services, record):
                        yield _final_from_record(record)
                    return
            getter = asyncio.ensure_future(subscriber.next())
            await asyncio.wait(
                {getter} if follow.done() else {getter, follow}, return_when="FIRST_COMPLETED"
            )
            if not getter.done():
                getter.cancel()
                continue
            try:
                event = getter.result()
            except Overflow:
                return  # the client reconnects with Last-Event-ID
            yield event
            if event.final:
                return
    finally:
        follow.cancel()
        subscriber.close()


def _sse(event: Event) -> ServerSentEvent:
    return ServerSentEvent(raw_data=event.to_json(), event=event.type, id=event.id)


async def _stream_ended(services: Services, record: ExecutionRecord) -> bool:
    """Whether the execution's stream holds its final event."""
    key = services.redis_keys.events(record.execution_id)
    return await has_final_event(services.hub.control, key)


def _final_from_record(record: ExecutionRecord) -> Event:
    event_type, data = final_event(
        record.status, record.result, record.error, record.progress, recovered=True
    )
    stamp = record.completed_at or now_ms()
    return Event(f"{stamp}-0", record.execution_id, event_type, iso(stamp / 1000) or "", data)


@router.websocket("/ws/{client_id}")
async def client_socket(websocket: WebSocket, client_id: str) -> None:
    """Messages: ``{"type": "subscribe"}`` (every execution of the client),
    ``{"type": "subscribe", "executionId", "lastEventId"?}`` (one execution, replayed after
    ``lastEventId`` or from its first event), ``{"type": "unsubscribe", "executionId"?}``.

    A socket that says nothing in its first ``IMPLICIT_AFTER_S`` is subscribed to its client's
    executions, from the moment it connected (the seed's client never sends a message); its
    first message of its own then replaces that subscription."""
    services: Services = websocket.app.state.services
    accepted = await _accept(websocket, services, client_id)
    if accepted is None:
        return
    who, since = accepted
    subscriber = services.hub.subscriber(services.settings.ws_queue_size)
    sender = asyncio.ensure_future(_send_events(websocket, subscriber))
    heartbeat = asyncio.ensure_future(_heartbeat(websocket, services.settings.ws_heartbeat_s))
    implicit: _Implicit | None = None
    try:
        implicit = await _subscribe_if_silent(
            websocket, services, who, client_id, subscriber, since
        )
        while True:
            message = await (implicit.first if implicit else websocket.receive())
            if message["type"] == "websocket.disconnect":
                break
            if implicit and implicit.on:
                subscriber.forget()  # the client says what it wants now
            implicit = None
            text = message.get("text")
            if text is None:  # a binary frame: the protocol is JSON text
                reply: dict[str, Any] | None = INVALID
            else:
                reply = await _handle(services, who, client_id, subscriber, text)
            if reply is not None:
                await websocket.send_text(orjson.dumps(reply).decode())
    except WebSocketDisconnect:
        pass
    except Exception as exc:  # Redis or the store failed: say so, the client reconnects
        log.warning("websocket request failed; closing it", error=repr(exc))
        with contextlib.suppress(Exception):
            await websocket.close(code=CLOSE_UNAVAILABLE, reason="unavailable: reconnect later")
    finally:
        subscriber.close()
        tasks: list[asyncio.Future[Any]] = [sender, heartbeat]
        if implicit is not None:  # (its first message never came)
            tasks.append(implicit.first)
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


@dataclass
class _Implicit:
    first: asyncio.Future[Message]
    """The socket's first message (or its disconnect), still to be handled."""
    on: bool
    """Whether the implicit subscription was made (the socket said nothing in time)."""


async def _subscribe_if_silent(
    websocket: WebSocket,
    services: Services,
    who: Principal,
    client_id: str,
    subscriber: Subscriber,
    since: str,
) -> _Implicit:
    """Wait ``IMPLICIT_AFTER_S`` for the socket's first message; if none came, follow the
    client's executions: those active, and those submitted since the socket connected (its
    client index's entry ``since``)."""
    first = asyncio.ensure_future(websocket.receive())
    try:
        done, _ = await asyncio.wait({first}, timeout=IMPLICIT_AFTER_S)
    except BaseException:  # cancelled (the server stops): the receive must not outlive it
        first.cancel()
        raise
    if done:
        return _Implicit(first, on=False)
    try:
        await subscriber.follow_client(
            who.tenant, client_id, partial(_active, services, who, client_id), since=since
        )
    except BaseException:
        first.cancel()
        raise
    return _Implicit(first, on=True)


async def _active(services: Services, who: Principal, client_id: str) -> list[str]:
    records = await services.store.active_for_client(who.tenant_id, client_id)
    return [r.execution_id for r in records]


async def _accept(
    websocket: WebSocket, services: Services, client_id: str
) -> tuple[Principal, str] | None:
    """Accept the connection: the caller, and the position of its client's index when it
    connected (before the handshake completes: the client cannot have submitted since). None
    when the key is refused: then it is closed with 1008 and its reason (a refused handshake
    would show a browser only an anonymous failure), or Redis is unreachable (1011)."""
    try:
        who = services.keys.authenticate(
            websocket.headers.get("authorization"), websocket.query_params.get("token")
        )
    except ApiError as exc:
        await websocket.accept()
        await websocket.close(code=CLOSE_UNAUTHORIZED, reason=exc.message)
        return None
    try:
        since = await services.hub.last_id(services.redis_keys.client_index(who.tenant, client_id))
    except Exception as exc:
        log.warning("websocket refused: Redis unreachable", error=repr(exc))
        await websocket.accept()
        await websocket.close(code=CLOSE_UNAVAILABLE, reason="unavailable: reconnect later")
        return None
    await websocket.accept()
    return who, since or "0-0"


async def _handle(
    services: Services,
    who: Principal,
    client_id: str,
    subscriber: Subscriber,
    text: str,
) -> dict[str, Any] | None:
    try:
        message = orjson.loads(text)
        if not isinstance(message, dict) or message.get("type") not in {"subscribe", "unsubscribe"}:
            raise ValueError
        execution_id = message.get("executionId")
        last_event_id = message.get("lastEventId")
        if execution_id is not None and not _is_execution_id(execution_id):
            raise ValueError
        if last_event_id is not None and not _is_stream_id(last_event_id):
            raise ValueError
    except ValueError:
        return INVALID
    if message["type"] == "unsubscribe":
        if execution_id is None:
            subscriber.unfollow_client(who.tenant, client_id)
        else:
            subscriber.unfollow_execution(execution_id)
        return None
    if execution_id is None:
        await subscriber.follow_client(
            who.tenant, client_id, partial(_active, services, who, client_id)
        )
        return None
    if await services.store.get(execution_id, who.tenant_id) is None:
        return {"type": "error", "message": f"execution {execution_id} not found"}
    await subscriber.follow_execution(execution_id, last_event_id)
    return None


def _is_execution_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS


def _is_stream_id(value: Any) -> bool:
    return isinstance(value, str) and valid_stream_id(value)


async def _send_events(websocket: WebSocket, subscriber: Subscriber) -> None:
    try:
        while True:
            event = await subscriber.next()
            await websocket.send_text(event.to_json())
    except Overflow:
        log.info("websocket client too slow; closing it")
        with contextlib.suppress(Exception):
            await websocket.close(
                code=CLOSE_SLOW_CONSUMER, reason="too slow: reconnect and resume from lastEventId"
            )
    except Exception:  # the socket went away; the receive loop notices
        return


async def _heartbeat(websocket: WebSocket, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        await websocket.send_text(
            orjson.dumps({"type": "heartbeat", "timestamp": iso(now_ms() / 1000)}).decode()
        )
