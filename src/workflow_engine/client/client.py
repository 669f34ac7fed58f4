"""The Python SDK: ``AsyncWorkflowEngineClient`` and its blocking twin ``WorkflowEngineClient``.

    async with AsyncWorkflowEngineClient("http://127.0.0.1:8000", api_key="...") as client:
        submitted = await client.execute(definition, inputs={"order_id": "A1"})
        async for event in client.events(submitted["executionId"]):
            print(event.type, event.data)        # replayed, then live; ends after the last

``events`` reconnects by itself (with backoff) when the connection drops or the API restarts,
and resumes after the last event it delivered: nothing twice, nothing missed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import websockets

from workflow_engine.client.errors import ClientError, ServiceUnavailable, error_from_response
from workflow_engine.client.models import (
    ActiveExecution,
    Cancelled,
    Event,
    ExecutionPage,
    Resumed,
    Schedule,
    ScheduleCreated,
    Stats,
    Status,
    StoredWorkflow,
    Submitted,
    WorkflowList,
    WorkflowSaved,
    WorkflowVersion,
)
from workflow_engine.sse import SseParser
from workflow_engine.vocabulary import DEFAULT_API_URL

DEFAULT_URL = DEFAULT_API_URL


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)


def _queue_call(name: str, action: str, body: dict[str, Any]) -> Call:
    return Call("POST", f"/api/admin/queues/{quote(name, safe='')}/{action}", body or None)


def _execute_call(
    definition: dict[str, Any], inputs: dict[str, Any] | None, options: dict[str, Any]
) -> Call:
    return _submit_call({"workflowDefinition": definition}, inputs, options)


def _execute_workflow_call(
    workflow_id: str, version: int | None, inputs: dict[str, Any] | None, options: dict[str, Any]
) -> Call:
    return _submit_call({"workflowId": workflow_id, "version": version}, inputs, options)


def _submit_call(
    what: dict[str, Any], inputs: dict[str, Any] | None, options: dict[str, Any]
) -> Call:
    body = {**what, "inputs": inputs or {}}
    body.update({_camel(k): v for k, v in options.items()})
    return Call("POST", "/api/workflow/execute", {k: v for k, v in body.items() if v is not None})


def _save_workflow_call(
    definition: dict[str, Any], workflow_id: str | None, name: str | None
) -> Call:
    body = {"id": workflow_id, "name": name, "definition": definition}
    return Call("POST", "/api/workflows", {k: v for k, v in body.items() if v is not None})


def _workflows_call(limit: int | None, cursor: str | None) -> Call:
    params = {k: v for k, v in (("limit", limit), ("cursor", cursor)) if v is not None}
    return Call("GET", "/api/workflows", params=params)


def _workflow_path(workflow_id: str) -> str:
    return f"/api/workflows/{quote(workflow_id, safe='')}"


def _get_workflow_call(workflow_id: str, version: int | None) -> Call:
    params = {} if version is None else {"version": version}
    return Call("GET", _workflow_path(workflow_id), params=params)


def _status_call(execution_id: str, nodes: bool) -> Call:
    params = {"nodes": "true"} if nodes else {}
    return Call("GET", f"/api/workflow/status/{quote(execution_id, safe='')}", params=params)


def _cancel_call(execution_id: str) -> Call:
    return Call("POST", f"/api/workflow/cancel/{quote(execution_id, safe='')}")


def _reconnect_call(client_id: str) -> Call:
    return Call("GET", f"/api/workflow/reconnect/{quote(client_id, safe='')}")


def _list_call(filters: dict[str, Any]) -> Call:
    params = {_camel(k): v for k, v in filters.items() if v is not None}
    return Call("GET", "/api/workflow/executions", params=params)


def _resume_call(execution_id: str, answer: Any, node_id: str | None) -> Call:
    body: dict[str, Any] = {"input": answer}
    if node_id is not None:
        body["nodeId"] = node_id
    return Call("POST", f"/api/workflow/resume/{quote(execution_id, safe='')}", body)


def _rerun_call(execution_id: str, from_node: str, inputs: dict[str, Any] | None) -> Call:
    body: dict[str, Any] = {"fromNode": from_node}
    if inputs is not None:
        body["inputs"] = inputs
    return Call("POST", f"/api/workflow/rerun/{quote(execution_id, safe='')}", body)


def _schedule_call(
    definition: dict[str, Any],
    inputs: dict[str, Any] | None,
    repeat: dict[str, Any],
    options: dict[str, Any],
) -> Call:
    call = _execute_call(definition, inputs, options)
    call.json["repeat"] = {k: v for k, v in repeat.items() if v is not None}
    return call


def _schedule_path(schedule_id: str) -> str:
    return f"/api/workflow/schedules/{quote(schedule_id, safe='')}"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _result(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        raise error_from_response(response.status_code, body)
    return body


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


RETRYABLE_STATUSES = frozenset({502, 503, 504})
REPLAY_IDLE_S = 1.0
"""``replay``: a stream quiet this long has delivered what was recorded (the API replays a
stored stream in one burst; a live execution's next event may come at any time)."""


MAX_SEEN = 100_000
LIST_PAGE = 100
MAX_PAGES = 10
"""A reconnecting client-wide listener looks back over at most this many pages of the
client's executions for those it missed."""


@dataclass
class _Backoff:
    first: float = 0.2
    most: float = 5.0
    delay: float = 0.0

    def reset(self) -> None:
        self.delay = 0.0

    def next(self) -> float:
        self.delay = min(self.most, self.delay * 2 if self.delay else self.first)
        return self.delay


def _stream_position(event_id: str) -> tuple[int, int]:
    """An event id (``<milliseconds>-<sequence>``) in stream order."""
    millis, _, sequence = event_id.partition("-")
    try:
        return int(millis), int(sequence or 0)
    except ValueError:
        return 0, 0


@dataclass
class _ClientHistory:
    """Which of a client's executions a client-wide listener has had events of, to find on a
    reconnect those started while it was away (and maybe ended: the server's subscription
    covers only those still active, and those started from then on).

    At the first connection it lists the client's executions (the newest page): those are
    before its time. On each reconnect it lists the ones newer than those and not seen."""

    seen: dict[str, None] = field(default_factory=dict)
    ended: dict[str, None] = field(default_factory=dict)
    """Executions whose final event was delivered (the newest ``MAX_SEEN``)."""
    before: set[str] | None = None
    since: str | None = None
    """The creation time of the newest execution listed at the first connection."""

    def is_new(self, event: Event, unfinished: dict[str, str]) -> bool:
        """Whether ``event`` comes after what was delivered of its execution: none of an
        execution that ended, none at or before the last one of one that goes on."""
        last = unfinished.get(event.execution_id)
        if last is not None:
            return _stream_position(event.id) > _stream_position(last)
        return event.execution_id not in self.ended

    def saw(self, event: Event) -> None:
        for kept in (self.seen, self.ended) if event.final else (self.seen,):
            kept[event.execution_id] = None
            if len(kept) > MAX_SEEN:
                del kept[next(iter(kept))]

    async def missed(
        self, client: AsyncWorkflowEngineClient, client_id: str, unfinished: dict[str, str]
    ) -> list[str]:
        if self.before is None:
            page = await client.executions(client_id=client_id, limit=LIST_PAGE)
            self.before = {c.execution_id for c in page.items}
            self.since = max((c.created_at or "" for c in page.items), default=None)
            return []
        missed: list[str] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            page = await client.executions(client_id=client_id, limit=LIST_PAGE, cursor=cursor)
            for context in page.items:
                known = context.execution_id in self.seen or context.execution_id in unfinished
                if not known and context.execution_id not in self.before:
                    missed.append(context.execution_id)
            # (listed by id: ids a producer chose sort anywhere, so only a page older than
            # the first connection throughout ends the look back)
            older = all((c.created_at or "") < (self.since or "") for c in page.items)
            if older or page.next_cursor is None:
                break
            cursor = page.next_cursor
        return missed[::-1]  # oldest first, as they happened


class _Follow:
    """The state of following one execution's SSE stream across reconnections: where to
    resume, the parser of the current connection, whether the final event came."""

    def __init__(self, execution_id: str, last: str | None) -> None:
        self.path = f"/api/workflow/events/{quote(execution_id, safe='')}"
        self.last = last
        self.done = False
        self.backoff = _Backoff()
        self._parser = SseParser()

    def request(self, idle: float | None = None) -> tuple[str, dict[str, Any]]:
        """(path, options) of the next request; resets the parser for a new connection.
        ``idle``: the longest wait for the next bytes (None: for ever, a live stream)."""
        self._parser = SseParser()
        headers = {"Accept": "text/event-stream"}
        if self.last is not None:
            headers["Last-Event-ID"] = self.last
        return self.path, {"headers": headers, "timeout": httpx.Timeout(30, read=idle)}

    def refused(self, status: int, body: bytes, *, retry: bool = True) -> None:
        """Raise the API's error, unless ``retry`` and it is worth another connection."""
        try:
            parsed = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            parsed = None
        if status not in RETRYABLE_STATUSES or not retry:
            raise error_from_response(status, parsed)

    def feed(self, chunk: bytes) -> list[Event]:
        self.backoff.reset()
        events = []
        for message in self._parser.feed(chunk):
            if self.done:
                break
            event = Event.model_validate(message["data"])
            self.last = event.id
            self.done = event.final
            events.append(event)
        return events


class AsyncWorkflowEngineClient:
    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncWorkflowEngineClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _do(self, call: Call) -> Any:
        try:
            response = await self._http.request(
                call.method, call.path, json=call.json, params=call.params or None
            )
        except httpx.TransportError as exc:
            raise ServiceUnavailable(f"cannot reach {self.base_url}: {exc!r}") from exc
        return _result(response)

    async def execute(
        self, definition: dict[str, Any], inputs: dict[str, Any] | None = None, **options: Any
    ) -> Submitted:
        """Submit; ``options``: type, priority, delay, client_id, user_id, metadata,
        idempotency_key."""
        return Submitted.model_validate(await self._do(_execute_call(definition, inputs, options)))

    async def execute_workflow(
        self,
        workflow_id: str,
        inputs: dict[str, Any] | None = None,
        *,
        version: int | None = None,
        **options: Any,
    ) -> Submitted:
        """Submit a stored workflow (its latest version unless ``version``); ``options`` as
        for ``execute``."""
        call = _execute_workflow_call(workflow_id, version, inputs, options)
        return Submitted.model_validate(await self._do(call))

    async def save_workflow(
        self,
        definition: dict[str, Any],
        *,
        workflow_id: str | None = None,
        name: str | None = None,
    ) -> WorkflowSaved:
        """Store ``definition`` as the next version of ``workflow_id`` (default: its ``id``)."""
        call = _save_workflow_call(definition, workflow_id, name)
        return WorkflowSaved.model_validate(await self._do(call))

    async def workflows(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> WorkflowList:
        """The latest version of each stored workflow, by id, a page at a time."""
        return WorkflowList.model_validate(await self._do(_workflows_call(limit, cursor)))

    async def get_workflow(self, workflow_id: str, *, version: int | None = None) -> StoredWorkflow:
        found = await self._do(_get_workflow_call(workflow_id, version))
        return StoredWorkflow.model_validate(found)

    async def workflow_versions(self, workflow_id: str) -> list[WorkflowVersion]:
        found = await self._do(Call("GET", _workflow_path(workflow_id) + "/versions"))
        return [WorkflowVersion.model_validate(item) for item in found["items"]]

    async def delete_workflow(self, workflow_id: str) -> None:
        await self._do(Call("DELETE", _workflow_path(workflow_id)))

    async def get_status(self, execution_id: str, *, nodes: bool = False) -> Status:
        return Status.model_validate(await self._do(_status_call(execution_id, nodes)))

    async def cancel(self, execution_id: str) -> Cancelled:
        return Cancelled.model_validate(await self._do(_cancel_call(execution_id)))

    async def reconnect(self, client_id: str) -> list[ActiveExecution]:
        found = await self._do(_reconnect_call(client_id))
        return [ActiveExecution.model_validate(item) for item in found]

    async def queues(self) -> list[dict[str, Any]]:
        """Each queue class: paused, jobs by state, workers (an ``admin`` key)."""
        return list((await self._do(Call("GET", "/api/admin/queues")))["queues"])

    async def queue_action(self, name: str, action: str, **body: Any) -> dict[str, Any]:
        """``pause``, ``resume``, ``clean`` (``state``, ``graceMs``, ``limit``) or
        ``retry-failed`` a queue class (an ``admin`` key)."""
        return dict(await self._do(_queue_call(name, action, body)))

    async def stats(self) -> Stats:
        return Stats.model_validate(await self._do(Call("GET", "/api/workflow/stats")))

    async def executions(self, **filters: Any) -> ExecutionPage:
        """Filters: status, workflow_id, client_id, limit, cursor."""
        return ExecutionPage.model_validate(await self._do(_list_call(filters)))

    async def resume(
        self, execution_id: str, answer: Any, *, node_id: str | None = None
    ) -> Resumed:
        """Answer the ``wait_input`` node the execution is parked on."""
        return Resumed.model_validate(await self._do(_resume_call(execution_id, answer, node_id)))

    async def rerun(
        self, execution_id: str, from_node: str, *, inputs: dict[str, Any] | None = None
    ) -> Submitted:
        """A new execution reusing the results upstream of ``from_node``."""
        found = await self._do(_rerun_call(execution_id, from_node, inputs))
        return Submitted.model_validate(found)

    async def schedule(
        self,
        definition: dict[str, Any],
        inputs: dict[str, Any] | None = None,
        *,
        cron: str | None = None,
        every: int | None = None,
        tz: str | None = None,
        limit: int | None = None,
        **options: Any,
    ) -> ScheduleCreated:
        """Run ``definition`` on a cron (5 fields, in ``tz``) or every ``every`` ms."""
        repeat = {"cron": cron, "every": every, "tz": tz, "limit": limit}
        call = _schedule_call(definition, inputs, repeat, options)
        return ScheduleCreated.model_validate(await self._do(call))

    async def schedules(self) -> list[Schedule]:
        found = await self._do(Call("GET", "/api/workflow/schedules"))
        return [Schedule.model_validate(item) for item in found["items"]]

    async def delete_schedule(self, schedule_id: str) -> None:
        await self._do(Call("DELETE", _schedule_path(schedule_id)))

    async def events(
        self,
        execution_id: str | None = None,
        *,
        client_id: str | None = None,
        last_event_id: str | None = None,
    ) -> AsyncIterator[Event]:
        """Events of one execution (SSE; ends after its final event) or of every execution of
        ``client_id`` (WebSocket; runs until you stop iterating). Reconnects and resumes by
        itself."""
        if (execution_id is None) == (client_id is None):
            raise ValueError("give either execution_id or client_id")
        if execution_id is not None:
            async for event in self._execution_events(execution_id, last_event_id):
                yield event
        else:
            assert client_id is not None
            async for event in self._client_events(client_id):
                yield event

    async def _execution_events(self, execution_id: str, last: str | None) -> AsyncIterator[Event]:
        follow = _Follow(execution_id, last)
        while not follow.done:
            path, options = follow.request()
            try:
                async with self._http.stream("GET", path, **options) as response:
                    if response.status_code >= 400:
                        follow.refused(response.status_code, await response.aread())
                    else:
                        async for chunk in response.aiter_bytes():
                            for event in follow.feed(chunk):
                                yield event
            except httpx.TransportError:
                pass  # the connection dropped or the API is restarting: resume
            if not follow.done:
                await asyncio.sleep(follow.backoff.next())

    async def replay(
        self, execution_id: str, *, idle: float = REPLAY_IDLE_S
    ) -> AsyncIterator[Event]:
        """The execution's events recorded so far, without following it: up to its final
        event, or until no event came for ``idle`` seconds (a waiting or running execution:
        what it recorded by then). One connection: an API that does not answer within ``idle``,
        or a dropped connection, is a ``ServiceUnavailable``."""
        follow = _Follow(execution_id, None)
        path, options = follow.request(idle)
        answered = False
        try:
            async with self._http.stream("GET", path, **options) as response:
                answered = True
                if response.status_code >= 400:
                    follow.refused(response.status_code, await response.aread(), retry=False)
                async for chunk in response.aiter_bytes():
                    for event in follow.feed(chunk):
                        yield event
                    if follow.done:
                        return
        except httpx.TransportError as exc:
            if answered and isinstance(exc, httpx.ReadTimeout):
                return  # quiet for `idle`: the replay is over
            raise ServiceUnavailable(f"cannot reach {self.base_url}: {exc!r}") from exc

    async def _client_events(self, client_id: str) -> AsyncIterator[Event]:
        """Client-wide: on reconnect, executions seen but not finished are resumed after their
        last event, those the client started while the connection was down are replayed from
        their first (``_ClientHistory``), then the client-wide subscription picks up
        everything new."""
        backoff = _Backoff()
        unfinished: dict[str, str] = {}
        history = _ClientHistory()
        base = self.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        url = f"{base}/ws/{quote(client_id, safe='')}"
        if self.api_key:
            url += f"?token={quote(self.api_key, safe='')}"
        while True:
            try:
                # listed before connecting: a socket silent for long is subscribed by the
                # server itself, and the events sent then would come again
                missed = await history.missed(self, client_id, unfinished)
                async with websockets.connect(url, max_size=None) as socket:
                    follow = [*unfinished.items(), *((m, None) for m in missed)]
                    for execution_id, last in follow:
                        message: dict[str, Any] = {"type": "subscribe", "executionId": execution_id}
                        if last is not None:
                            message["lastEventId"] = last
                        await socket.send(orjson.dumps(message).decode())
                    await socket.send('{"type": "subscribe"}')
                    backoff.reset()
                    async for raw in socket:
                        message = orjson.loads(raw)
                        if "executionId" not in message:  # heartbeat, error
                            continue
                        event = Event.model_validate(message)
                        if not history.is_new(event, unfinished):
                            continue  # delivered already (a resubscription replays)
                        history.saw(event)
                        if event.final:
                            unfinished.pop(event.execution_id, None)
                        else:
                            unfinished[event.execution_id] = event.id
                        yield event
            except (OSError, websockets.ConnectionClosed, websockets.InvalidHandshake):
                pass
            except ServiceUnavailable:  # the listing failed (the API restarting): again
                pass
            await asyncio.sleep(backoff.next())

    async def wait(self, execution_id: str, *, timeout: float | None = None) -> Status:  # noqa: ASYNC109
        """Follow the execution's events until it ends; its final status, with node results."""
        async with asyncio.timeout(timeout):
            async for _ in self.events(execution_id):
                pass
        return await self.get_status(execution_id, nodes=True)


class WorkflowEngineClient:
    """The blocking client: the same methods as ``AsyncWorkflowEngineClient``."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    def __enter__(self) -> WorkflowEngineClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _do(self, call: Call) -> Any:
        try:
            response = self._http.request(
                call.method, call.path, json=call.json, params=call.params or None
            )
        except httpx.TransportError as exc:
            raise ServiceUnavailable(f"cannot reach {self.base_url}: {exc!r}") from exc
        return _result(response)

    def execute(
        self, definition: dict[str, Any], inputs: dict[str, Any] | None = None, **options: Any
    ) -> Submitted:
        return Submitted.model_validate(self._do(_execute_call(definition, inputs, options)))

    def execute_workflow(
        self,
        workflow_id: str,
        inputs: dict[str, Any] | None = None,
        *,
        version: int | None = None,
        **options: Any,
    ) -> Submitted:
        call = _execute_workflow_call(workflow_id, version, inputs, options)
        return Submitted.model_validate(self._do(call))

    def save_workflow(
        self,
        definition: dict[str, Any],
        *,
        workflow_id: str | None = None,
        name: str | None = None,
    ) -> WorkflowSaved:
        call = _save_workflow_call(definition, workflow_id, name)
        return WorkflowSaved.model_validate(self._do(call))

    def workflows(self, *, limit: int | None = None, cursor: str | None = None) -> WorkflowList:
        return WorkflowList.model_validate(self._do(_workflows_call(limit, cursor)))

    def get_workflow(self, workflow_id: str, *, version: int | None = None) -> StoredWorkflow:
        return StoredWorkflow.model_validate(self._do(_get_workflow_call(workflow_id, version)))

    def workflow_versions(self, workflow_id: str) -> list[WorkflowVersion]:
        found = self._do(Call("GET", _workflow_path(workflow_id) + "/versions"))
        return [WorkflowVersion.model_validate(item) for item in found["items"]]

    def delete_workflow(self, workflow_id: str) -> None:
        self._do(Call("DELETE", _workflow_path(workflow_id)))

    def get_status(self, execution_id: str, *, nodes: bool = False) -> Status:
        return Status.model_validate(self._do(_status_call(execution_id, nodes)))

    def cancel(self, execution_id: str) -> Cancelled:
        return Cancelled.model_validate(self._do(_cancel_call(execution_id)))

    def reconnect(self, client_id: str) -> list[ActiveExecution]:
        return [ActiveExecution.model_validate(i) for i in self._do(_reconnect_call(client_id))]

    def queues(self) -> list[dict[str, Any]]:
        """Each queue class: paused, jobs by state, workers (an ``admin`` key)."""
        return list(self._do(Call("GET", "/api/admin/queues"))["queues"])

    def queue_action(self, name: str, action: str, **body: Any) -> dict[str, Any]:
        """``pause``, ``resume``, ``clean`` (``state``, ``graceMs``, ``limit``) or
        ``retry-failed`` a queue class (an ``admin`` key)."""
        return dict(self._do(_queue_call(name, action, body)))

    def stats(self) -> Stats:
        return Stats.model_validate(self._do(Call("GET", "/api/workflow/stats")))

    def executions(self, **filters: Any) -> ExecutionPage:
        return ExecutionPage.model_validate(self._do(_list_call(filters)))

    def resume(self, execution_id: str, answer: Any, *, node_id: str | None = None) -> Resumed:
        return Resumed.model_validate(self._do(_resume_call(execution_id, answer, node_id)))

    def rerun(
        self, execution_id: str, from_node: str, *, inputs: dict[str, Any] | None = None
    ) -> Submitted:
        return Submitted.model_validate(self._do(_rerun_call(execution_id, from_node, inputs)))

    def schedule(
        self,
        definition: dict[str, Any],
        inputs: dict[str, Any] | None = None,
        *,
        cron: str | None = None,
        every: int | None = None,
        tz: str | None = None,
        limit: int | None = None,
        **options: Any,
    ) -> ScheduleCreated:
        repeat = {"cron": cron, "every": every, "tz": tz, "limit": limit}
        call = _schedule_call(definition, inputs, repeat, options)
        return ScheduleCreated.model_validate(self._do(call))

    def schedules(self) -> list[Schedule]:
        found = self._do(Call("GET", "/api/workflow/schedules"))
        return [Schedule.model_validate(item) for item in found["items"]]

    def delete_schedule(self, schedule_id: str) -> None:
        self._do(Call("DELETE", _schedule_path(schedule_id)))

    def wait(self, execution_id: str) -> Status:
        """Follow the execution's events until it ends; its final status, with node results."""
        for _ in self.events(execution_id):
            pass
        return self.get_status(execution_id, nodes=True)

    def replay(self, execution_id: str, *, idle: float = REPLAY_IDLE_S) -> Iterator[Event]:
        """The execution's events recorded so far, without following it: up to its final
        event, or until no event came for ``idle`` seconds."""
        follow = _Follow(execution_id, None)
        path, options = follow.request(idle)
        answered = False
        try:
            with self._http.stream("GET", path, **options) as response:
                answered = True
                if response.status_code >= 400:
                    follow.refused(response.status_code, response.read(), retry=False)
                for chunk in response.iter_bytes():
                    yield from follow.feed(chunk)
                    if follow.done:
                        return
        except httpx.TransportError as exc:
            if answered and isinstance(exc, httpx.ReadTimeout):
                return  # quiet for `idle`: the replay is over
            raise ServiceUnavailable(f"cannot reach {self.base_url}: {exc!r}") from exc

    def events(
        self, execution_id: str, *, last_event_id: str | None = None
    ) -> Generator[Event, None, None]:
        """One execution's events (SSE), replayed then live, until its final event; resumes
        by itself after a dropped connection."""
        follow = _Follow(execution_id, last_event_id)
        while not follow.done:
            path, options = follow.request()
            try:
                with self._http.stream("GET", path, **options) as response:
                    if response.status_code >= 400:
                        follow.refused(response.status_code, response.read())
                    else:
                        for chunk in response.iter_bytes():
                            yield from follow.feed(chunk)
            except httpx.TransportError:
                pass
            if not follow.done:
                time.sleep(follow.backoff.next())


__all__ = ["AsyncWorkflowEngineClient", "ClientError", "Event", "WorkflowEngineClient"]
