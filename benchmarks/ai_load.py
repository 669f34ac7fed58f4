"""AI-shaped load, end to end over real sockets, on this machine:

    python -m benchmarks.ai_load [--streams 500] [--tokens 300] [--rate 30] [--workers 1]
                                 [--code 200] [--code-runs 1000] [--quick]

- **llm**: ``streams`` executions of a one-node ``llm`` workflow at once, each answered by an
  OpenAI-compatible stand-in that streams ``tokens`` content chunks paced at ``rate`` tokens/s
  (a separate process, so its work does not share the benchmark's event loop; it holds each
  stream's first token until every stream is open, so that all ``streams`` stream at once
  however long the submits take), each followed by its own WebSocket client
  (``{"type": "subscribe", "executionId"}`` sent as soon as the submit answers). Figures: the
  delivered-token lag (from the moment the stand-in wrote a token's chunk to the moment the
  WebSocket client received the ``node.stream`` event carrying it; split at the event's Redis
  stream id, which is Redis' clock at the XADD), CPU seconds per 1,000 tokens of the worker and
  API processes (``/proc/<pid>/stat``), events per token after coalescing, the peak number of
  streams the stand-in served at once, the worker's parse of the stream in-process (the ``llm``
  node's, against a bare ``orjson`` parse), and whether every client got every token (its
  ``node.stream`` texts joined, and the execution's result, equal to what was streamed);
- **code**: ``code`` executions of a one-node ``code`` workflow (``benchmarks.code``'s trivial
  Python node) kept in flight through the API, ``code_runs`` in all: executions/s, submit (the
  POST) to its ``execution.completed`` on a WebSocket p50/p99, the peak RSS of the worker and of
  its sandbox processes.

The API and the worker(s) are ``wfe`` processes on a private Redis and a SQLite store, as in
``benchmarks.live``; the worker's concurrency is raised to hold every execution at once, and the
per-tenant limits are off. Every process shares the machine's cores: the CPU each used is
printed, so that what the engine costs can be told from what the stand-ins cost, and what
other processes of the machine took meanwhile (``/proc/stat``): the lag and latency figures
hold only for a machine that was otherwise idle; the CPU figures much less depend on it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import websockets

from benchmarks.code import workflow as code_workflow
from benchmarks.live import WFE, env
from benchmarks.stats import CLK_TCK, cpu_seconds, percentiles
from workflow_engine.embedded_redis import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parents[1]
STAND_IN = [sys.executable, "-m", "benchmarks.ai_load", "--serve-model"]
PAGE = os.sysconf("SC_PAGE_SIZE")
MODEL = "standin"
LLM_FLOW = {
    "id": "ai_stream",
    "nodes": [{"id": "answer", "type": "llm", "inputs": {"prompt": "{{ inputs.prompt }}"}}],
}
FINAL_TYPES = {"execution.completed", "execution.failed", "execution.cancelled"}
KEEP = 2.0
"""Seconds an idle client connection is kept: less than uvicorn's keep-alive (5 s), else a
request may go out on a connection the server is closing (``httpx.ReadError``)."""
HOLD_S = 120.0
"""Longest a stream of the stand-in waits for the others before it starts anyway."""
SUBMITTING = 32
"""Submits in flight at once (the clients are many; the HTTP calls of the benchmark few)."""


# -- the paced model stand-in (its own process) ------------------------------------------------


def token(stream: int, index: int) -> str:
    """Token ``index`` of stream ``stream``: distinct per stream, so that a client given another
    execution's text would be caught."""
    return f" {stream}.{index}"


def tokens_of(stream: int, count: int) -> list[str]:
    return [token(stream, i) for i in range(count)]


def _sse_frame(body: bytes) -> bytes:
    payload = b"data: " + body + b"\n\n"
    return b"%x\r\n%b\r\n" % (len(payload), payload)


@dataclass
class StandIn:
    """``POST /v1/chat/completions`` (streamed only) answered as OpenAI does, the prompt saying
    which stream and how many tokens (``stream 17 tokens 300``); token ``i`` is written at
    ``i + 1`` intervals after the request came, each on its own ``loop.call_at`` timer (no
    task per stream). ``GET /times``: when each token was written (``time.time()``), how late
    against its schedule, and the peak number of streams at once."""

    interval: float
    together: int = 0
    """Streams ``0 .. together - 1`` send their first token only once all of them are open
    (or ``HOLD_S`` passed): that many streams at once, however long the submits take."""
    all_in: asyncio.Event = field(default_factory=asyncio.Event)
    held: int = 0
    released: float | None = None
    arrived: dict[str, float] = field(default_factory=dict)
    emitted: dict[str, list[float]] = field(default_factory=dict)
    late: list[float] = field(default_factory=list)
    active: int = 0
    peak: int = 0
    requests: int = 0
    connections: int = 0
    peak_connections: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.peak_connections = max(self.peak_connections, self.connections)
        try:
            while True:  # keep-alive: the next request on the same connection
                head = await reader.readuntil(b"\r\n\r\n")
                line, *lines = head.decode("latin-1").split("\r\n")
                method, path, _ = line.split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (x.partition(":") for x in lines if x)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if method == "POST" and path.endswith("/chat/completions"):
                    await self.stream(orjson.loads(body), writer)
                elif method == "GET" and path == "/times":
                    self.answer(writer, 200, self.report())
                else:
                    self.answer(writer, 404, {"error": {"message": f"no route {path}"}})
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.connections -= 1
            writer.close()

    def report(self) -> dict[str, Any]:
        return {
            "emitted": self.emitted,
            "late": self.late,
            "peak": self.peak,
            "requests": self.requests,
            "peak_connections": self.peak_connections,
            "arrived": self.arrived,
            "released": self.released,
        }

    @staticmethod
    def answer(writer: asyncio.StreamWriter, status: int, body: Any) -> None:
        raw = orjson.dumps(body)
        writer.write(
            b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%b"
            % (status, len(raw), raw)
        )

    async def stream(self, request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        words = str(request["messages"][-1]["content"]).split()
        stream, count = int(words[1]), int(words[3])
        self.requests += 1
        self.arrived[str(stream)] = time.time()
        self.active += 1
        self.peak = max(self.peak, self.active)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        times = self.emitted[str(stream)] = []
        base = {"id": f"chatcmpl-{stream}", "object": "chat.completion.chunk", "model": MODEL}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            body = {**base, "created": int(time.time()), "choices": [choice], "usage": None}
            return _sse_frame(orjson.dumps(body))

        def emit(index: int) -> None:
            if writer.is_closing():  # the client hung up
                done.set_result(None)
                return
            writer.write(chunk({"content": token(stream, index)}))
            times.append(time.time())
            self.late.append(loop.time() - started - (index + 1) * self.interval)
            if index + 1 < count:
                loop.call_at(started + (index + 2) * self.interval, emit, index + 1)
                return
            usage = {"prompt_tokens": 4, "completion_tokens": count, "total_tokens": count + 4}
            last = {**base, "created": int(time.time()), "choices": [], "usage": usage}
            writer.write(
                chunk({}, "stop")
                + _sse_frame(orjson.dumps(last))
                + _sse_frame(b"[DONE]")
                + b"0\r\n\r\n"
            )
            done.set_result(None)

        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
            + chunk({"role": "assistant", "content": "", "refusal": None})
        )
        try:
            if stream < self.together:  # the first token once every stream is open
                self.held += 1
                if self.held >= self.together:
                    self.released = time.time()
                    self.all_in.set()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(HOLD_S):
                        await self.all_in.wait()
            # streams out of step, as a model server's are: each its own phase of the interval
            started = loop.time() + (stream * 0.618034 % 1) * self.interval
            loop.call_at(started + self.interval, emit, 0)
            await done
        finally:
            self.active -= 1


async def serve_model(port: int, rate: float, together: int) -> None:
    stand_in = StandIn(1 / rate, together)
    server = await asyncio.start_server(stand_in.handle, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


# -- processes: start, CPU, memory ----------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


def children(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (the sandbox processes of a worker)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _quiet(call: Callable[[int], Any], pid: int, default: Any) -> Any:
    try:
        return call(pid)
    except (OSError, IndexError, ValueError):  # the process ended meanwhile
        return default


@dataclass
class Service:
    """A ``wfe api`` and ``wfe worker`` processes (and the model stand-in), started together."""

    base: str
    api: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]
    model: subprocess.Popen[bytes] | None
    redis_pid: int

    def pids(self) -> dict[str, list[int]]:
        named = {
            "api": [self.api.pid],
            "worker": [w.pid for w in self.workers],
            "redis": [self.redis_pid],
            "benchmark clients": [os.getpid()],
        }
        if self.model is not None:
            named["model stand-in"] = [self.model.pid]
        return named

    def cpu(self) -> dict[str, float]:
        return {
            name: sum(_quiet(cpu_seconds, pid, 0.0) for pid in pids)
            for name, pids in self.pids().items()
        }


@contextlib.asynccontextmanager
async def service(
    redis: EmbeddedRedis,
    store_url: str,
    *,
    workers: int,
    concurrency: int,
    model_port: int | None = None,
    rate: float = 30,
    together: int = 0,
    pool_size: int | None = None,
) -> AsyncIterator[Service]:
    extra = {
        "WFE_QUEUES__WORKFLOW__CONCURRENCY": str(concurrency),
        "WFE_TENANT_MAX_ACTIVE": "0",
        "WFE_TENANT_RATE": "0",
        "WFE_MAX_QUEUED": "0",
        "WFE_METRICS_PORT": "0",
        "WFE_WS_QUEUE_SIZE": "10000",
    }
    if pool_size is not None:
        extra["WFE_CODE_POOL_SIZE"] = str(pool_size)
    model = None
    if model_port is not None:
        extra |= {
            "WFE_EGRESS_ALLOW": "127.0.0.1",
            "WFE_CONNECTIONS__DEFAULT__BASE_URL": f"http://127.0.0.1:{model_port}/v1",
            "WFE_CONNECTIONS__DEFAULT__MODEL": MODEL,
        }
        model = subprocess.Popen(
            [*STAND_IN, str(model_port), "--rate", str(rate), "--streams", str(together)],
            cwd=ROOT,
        )
    port = free_port()
    logs = Path(store_url.rpartition("/")[2]).stem
    api = subprocess.Popen(
        [WFE, "api"],
        env=env(redis.url, store_url, WFE_PORT=str(port), **extra),
        stderr=_log(redis, f"{logs}-api"),
    )
    procs = [
        subprocess.Popen(
            [WFE, "worker", "--queues", "workflow"],
            env=env(redis.url, store_url, **extra),
            stderr=_log(redis, f"{logs}-worker{i}"),
        )
        for i in range(workers)
    ]
    assert redis.process is not None
    running = Service(f"http://127.0.0.1:{port}", api, procs, model, redis.process.pid)
    try:
        await wait_http_get(f"{running.base}/health")
        if model_port is not None:
            await wait_http_get(f"http://127.0.0.1:{model_port}/times")
        await asyncio.sleep(1)  # the workers connect and wait for jobs
        yield running
    finally:
        for process in [api, *procs, *([model] if model is not None else [])]:
            process.terminate()
            process.wait()


def _log(redis: EmbeddedRedis, name: str) -> Any:
    """A process's stderr (its warnings), beside the private Redis' log."""
    return (redis.directory / f"{name}.log").open("wb")


def log_tails(directory: Path, lines: int = 15) -> str:
    """The last lines each process wrote, to say why a run failed."""
    parts = []
    for path in sorted(directory.glob("*.log")):
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {path.name}\n" + "\n".join(tail))
    return "\n".join(parts)


async def wait_http_get(url: str, timeout: float = 120) -> None:
    """Until ``url`` answers 200 (a loaded machine starts ``wfe`` slowly: two minutes)."""
    async with httpx.AsyncClient() as client:
        for _ in range(int(timeout / 0.05)):
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.05)
    raise TimeoutError(f"{url} did not answer")


class Sampler:
    """Peak RSS of the workers and of their descendants, sampled every ``every`` seconds."""

    def __init__(self, workers: list[int], every: float = 1.0) -> None:
        self.workers = workers
        self.every = every
        self.worker_peak = 0
        self.children_peak = 0
        self.children_cpu: dict[int, float] = {}
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        self.worker_peak = max(self.worker_peak, sum(_quiet(rss_bytes, p, 0) for p in self.workers))
        kids = [c for w in self.workers for c in children(w)]
        self.children_peak = max(self.children_peak, sum(_quiet(rss_bytes, c, 0) for c in kids))
        for kid in kids:  # (the last reading of each: a sandbox process may end before the run)
            self.children_cpu[kid] = _quiet(cpu_seconds, kid, self.children_cpu.get(kid, 0.0))

    async def _run(self) -> None:
        while True:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(self.every)

    def __enter__(self) -> Sampler:
        self._task = asyncio.ensure_future(self._run())
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        self.sample()


# -- llm: streams to WebSocket clients ------------------------------------------------------------


@dataclass
class Received:
    """What one client got: each ``node.stream`` event as (when, end position in the text,
    the event's stream id in ms), every event's type, the text joined, the result's text."""

    streamed: list[tuple[float, int, int]] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    text: str = ""
    final: dict[str, Any] | None = None
    execution_id: str = ""
    submitted: float = 0.0


async def _connect(url: str) -> Any:
    for attempt in range(20):
        try:
            return await websockets.connect(url, max_size=None, open_timeout=60)
        except (OSError, websockets.exceptions.InvalidStatus):
            if attempt == 19:
                raise
            await asyncio.sleep(0.2)
    raise AssertionError("unreachable")


async def llm_streams(
    service_: Service, streams: int, tokens: int, model_port: int
) -> dict[str, Any]:
    ws_base = service_.base.replace("http://", "ws://")
    gate = asyncio.Semaphore(SUBMITTING)

    async def connect(i: int) -> Any:
        async with gate:
            socket = await _connect(f"{ws_base}/ws/ai{i}")
            # a socket silent for 0.5 s would follow its client's executions: say something
            await socket.send('{"type": "unsubscribe"}')
            return socket

    sockets = await asyncio.gather(*(connect(i) for i in range(streams)))
    received = [Received() for _ in range(streams)]
    await warm_up(service_.base, f"stream {streams} tokens 5")
    cpu_before = service_.cpu()
    busy_before = machine_busy()
    first_submit = time.time()
    wall = time.perf_counter()

    async def one(i: int, socket: Any, http: httpx.AsyncClient) -> None:
        got = received[i]
        async with gate:
            response = await http.post(
                "/api/workflow/execute",
                json={
                    "workflowDefinition": LLM_FLOW,
                    "inputs": {"prompt": f"stream {i} tokens {tokens}"},
                    "clientId": f"ai{i}",
                },
            )
        if response.status_code != 202:
            raise RuntimeError(f"submit {i}: {response.status_code} {response.text}")
        got.execution_id = response.json()["executionId"]
        got.submitted = time.time()
        await socket.send(json.dumps({"type": "subscribe", "executionId": got.execution_id}))
        position = 0
        async for raw in socket:
            at = time.time()
            event = orjson.loads(raw)
            kind = event.get("type")
            if kind == "heartbeat" or "executionId" not in event:
                continue
            got.types.append(kind)
            if kind == "node.stream":
                text = event["data"]["chunk"].get("text", "")
                got.text += text
                position += len(text)
                got.streamed.append((at, position, int(event["id"].partition("-")[0])))
            if kind in FINAL_TYPES:
                got.final = event
                return

    limits = httpx.Limits(keepalive_expiry=KEEP)
    async with httpx.AsyncClient(base_url=service_.base, timeout=120, limits=limits) as http:
        await asyncio.wait_for(
            asyncio.gather(*(one(i, s, http) for i, s in enumerate(sockets))),
            timeout=120 + 3 * tokens * streams / 30 / 50,
        )
    elapsed = time.perf_counter() - wall
    cpu_after = service_.cpu()
    cpu_after["whole machine"] = machine_busy() - busy_before
    cpu_before["whole machine"] = 0.0
    for socket in sockets:
        await socket.close()
    async with httpx.AsyncClient(timeout=60) as http:
        model = (await http.get(f"http://127.0.0.1:{model_port}/times")).json()
    figures = summarize_llm(received, model, streams, tokens, elapsed, cpu_before, cpu_after)
    arrived = [model["arrived"][str(i)] for i in range(streams) if str(i) in model["arrived"]]
    figures["ramp_s"] = {
        "submits": max(r.submitted for r in received) - first_submit,
        "requests_at_model": max(arrived, default=first_submit) - first_submit,
        "first_tokens": (model["released"] or first_submit) - first_submit,
    }
    return figures


async def warm_up(base: str, prompt: str) -> None:
    """One execution before the measurement: the worker imports the SDK, opens its pools."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        body = {"workflowDefinition": LLM_FLOW, "inputs": {"prompt": prompt}}
        execution_id = (await http.post("/api/workflow/execute", json=body)).json()["executionId"]
        for _ in range(1200):
            status = (await http.get(f"/api/workflow/status/{execution_id}")).json()
            if status["context"]["status"] == "completed":
                return
            if status["context"]["status"] in {"failed", "cancelled"}:
                raise RuntimeError(f"the warm-up execution ended {status['context']}")
            await asyncio.sleep(0.05)
    raise TimeoutError("the warm-up execution did not end")


def machine_busy() -> float:
    """CPU seconds every process of the machine used so far (``/proc/stat``: all but idle
    and iowait): what this benchmark's processes did not use of it, others did."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / CLK_TCK


def summarize_llm(
    received: list[Received],
    model: dict[str, Any],
    streams: int,
    tokens: int,
    elapsed: float,
    cpu_before: dict[str, float],
    cpu_after: dict[str, float],
) -> dict[str, Any]:
    lags: list[float] = []  # ms, per token: written by the stand-in -> received by its client
    to_redis: list[float] = []  # ... -> its event's XADD (the stream id's ms)
    from_redis: list[float] = []  # the XADD -> received
    complete = True
    incomplete: list[str] = []
    stream_events = events = 0
    for i, got in enumerate(received):
        expected = tokens_of(i, tokens)
        whole = "".join(expected)
        result_text = None
        if got.final is not None and got.final["type"] == "execution.completed":
            result_text = _answer_text(got.final["data"].get("result"))
        if got.text != whole or result_text != whole:
            complete = False
            ending = got.final["type"] if got.final is not None else "no final event"
            if got.final is not None and got.final["type"] != "execution.completed":
                ending += f": {str(got.final['data'].get('error'))[:200]}"
            short = f"{len(got.text)} of {len(whole)} characters streamed, result {ending}"
            incomplete.append(f"stream {i} ({got.execution_id}): {short}")
        emitted = model["emitted"].get(str(i), [])
        events += len(got.types)
        stream_events += len(got.streamed)
        ends = list(_ends(expected))
        j = 0
        for at, position, xadd_ms in got.streamed:
            while j < len(ends) and ends[j] <= position and j < len(emitted):
                lags.append((at - emitted[j]) * 1000)
                to_redis.append(xadd_ms - emitted[j] * 1000)
                from_redis.append(at * 1000 - xadd_ms)
                j += 1
    streamed_tokens = sum(len(model["emitted"].get(str(i), [])) for i in range(streams))
    kilo = max(streamed_tokens, 1) / 1000
    used = {k: cpu_after[k] - cpu_before[k] for k in cpu_after}
    p50, p99 = percentiles(lags) if lags else (float("nan"), float("nan"))
    r50, r99 = percentiles(to_redis) if to_redis else (float("nan"), float("nan"))
    d50, d99 = percentiles(from_redis) if from_redis else (float("nan"), float("nan"))
    l50, l99 = percentiles([x * 1000 for x in model["late"]]) if model["late"] else (0.0, 0.0)
    return {
        "streams": streams,
        "tokens_per_stream": tokens,
        "tokens_streamed": streamed_tokens,
        "peak_concurrent_streams": model["peak"],
        "peak_connections": model["peak_connections"],
        "seconds": elapsed,
        "tokens_per_s": streamed_tokens / elapsed,
        "lag_ms": {"p50": p50, "p99": p99, "max": max(lags, default=float("nan"))},
        "model_to_xadd_ms": {"p50": r50, "p99": r99},
        "xadd_to_client_ms": {"p50": d50, "p99": d99},
        "stand_in_late_ms": {"p50": l50, "p99": l99},
        "events_per_token": events / max(streamed_tokens, 1),
        "stream_events_per_token": stream_events / max(streamed_tokens, 1),
        "worker_cpu_s_per_1k_tokens": used["worker"] / kilo,
        "api_cpu_s_per_1k_tokens": used["api"] / kilo,
        "cpu_s": used,
        "every_client_got_every_token": complete,
        "incomplete": incomplete,
        "model_requests": model["requests"] - 1,  # (the warm-up's)
    }


def _ends(pieces: list[str]) -> Iterator[int]:
    total = 0
    for piece in pieces:
        total += len(piece)
        yield total


def _answer_text(result: Any) -> str | None:
    """The llm node's text in an execution's result (the node's output, or a map of node id to
    output, depending on how the result is shaped)."""
    if isinstance(result, dict):
        if isinstance(result.get("text"), str):
            return str(result["text"])
        for value in result.values():
            found = _answer_text(value)
            if found is not None:
                return found
    return None


async def parse_cost(count: int = 3000) -> dict[str, float]:
    """CPU µs per token of the worker's streaming path without sockets: the ``llm`` node's
    ``complete_streaming`` (its server-sent event parse and the coalescer) reading ``count``
    chunks from memory, against a plain parse of the same bytes (split the SSE lines,
    ``orjson.loads`` each, take the delta's text). (Through the openai SDK's typed chunks,
    before f328dbf, the node's path cost 80-91 µs per token here.)"""
    from pydantic import SecretStr

    from workflow_engine.connections import Connection
    from workflow_engine.nodes.openai_chat import ChatRequest, complete_streaming

    base = {"id": "chatcmpl-0", "object": "chat.completion.chunk", "model": MODEL}
    frames = [
        b"data: "
        + orjson.dumps({**base, "created": 0, "choices": [choice], "usage": None})
        + b"\n\n"
        for choice in (
            {"index": 0, "delta": {"content": token(0, i)}, "logprobs": None, "finish_reason": None}
            for i in range(count)
        )
    ]
    body = b"".join(frames) + b"data: [DONE]\n\n"

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    async def ignore(_chunk: Any) -> None:
        return None

    connection = Connection("default", "http://standin.invalid/v1", SecretStr(""))
    request = ChatRequest(MODEL, [{"role": "user", "content": "stream 0"}])
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        await complete_streaming(http, connection, request, ignore)  # (imports, first use)
        started = time.process_time()
        answer_ = await complete_streaming(http, connection, request, ignore)
        sdk = time.process_time() - started
    assert answer_.text == "".join(tokens_of(0, count))
    started = time.process_time()
    text = []
    for line in body.split(b"\n\n"):
        if line.startswith(b"data: {"):
            for choice in orjson.loads(line[6:])["choices"]:
                text.append(choice["delta"].get("content") or "")
    plain = time.process_time() - started
    assert "".join(text) == answer_.text
    return {"node_us_per_token": sdk / count * 1e6, "plain_us_per_token": plain / count * 1e6}


# -- code: executions in flight -------------------------------------------------------------------


async def code_nodes(service_: Service, in_flight: int, runs: int) -> dict[str, Any]:
    ws_base = service_.base.replace("http://", "ws://")
    socket = await _connect(f"{ws_base}/ws/code")
    await socket.send('{"type": "subscribe"}')
    await asyncio.sleep(0.5)
    ended: dict[str, tuple[float, str]] = {}
    waiting: dict[str, asyncio.Future[tuple[float, str]]] = {}

    async def listen() -> None:
        async for raw in socket:
            at = time.perf_counter()
            event = orjson.loads(raw)
            if event.get("type") in FINAL_TYPES:
                ended[event["executionId"]] = (at, event["type"])
                future = waiting.pop(event["executionId"], None)
                if future is not None and not future.done():
                    future.set_result((at, event["type"]))

    listener = asyncio.ensure_future(listen())
    definition = code_workflow("python")
    samples: list[float] = []
    failed = 0
    todo = iter(range(runs))

    async def execute(http: httpx.AsyncClient, n: int) -> tuple[float, float, str]:
        t0 = time.perf_counter()
        response = await http.post(
            "/api/workflow/execute",
            json={"workflowDefinition": definition, "inputs": {"n": n}, "clientId": "code"},
        )
        if response.status_code != 202:
            raise RuntimeError(f"code submit: {response.status_code} {response.text}")
        execution_id = response.json()["executionId"]
        if execution_id in ended:
            at, kind = ended[execution_id]
        else:
            future = waiting[execution_id] = asyncio.get_running_loop().create_future()
            at, kind = await asyncio.wait_for(future, 300)
        return t0, at, kind

    async def lane(http: httpx.AsyncClient) -> None:
        nonlocal failed
        for n in todo:
            t0, at, kind = await execute(http, n)
            samples.append((at - t0) * 1000)
            failed += kind != "execution.completed"

    limits = httpx.Limits(
        max_connections=in_flight, max_keepalive_connections=in_flight, keepalive_expiry=KEEP
    )
    async with httpx.AsyncClient(base_url=service_.base, timeout=120, limits=limits) as http:
        await asyncio.gather(*(execute(http, -1 - i) for i in range(8)))  # the pool starts
        cpu_before = service_.cpu()
        busy_before = machine_busy()
        with Sampler([w.pid for w in service_.workers]) as sampler:
            started = time.perf_counter()
            await asyncio.gather(*(lane(http) for _ in range(in_flight)))
            elapsed = time.perf_counter() - started
        cpu_after = service_.cpu()
        cpu_after["whole machine"] = machine_busy() - busy_before
        cpu_before["whole machine"] = 0.0
    listener.cancel()
    await socket.close()
    p50, p99 = percentiles(samples)
    used = {k: cpu_after[k] - cpu_before[k] for k in cpu_after}
    return {
        "in_flight": in_flight,
        "executions": runs,
        "failed": failed,
        "executions_per_s": runs / elapsed,
        "seconds": elapsed,
        "submit_to_complete_ms": {"p50": p50, "p99": p99, "max": max(samples)},
        "worker_rss_mb": sampler.worker_peak / 2**20,
        "sandbox_rss_mb": sampler.children_peak / 2**20,
        "sandbox_processes_cpu_s": sum(sampler.children_cpu.values()),
        "cpu_s": used,
        "worker_cpu_ms_per_execution": used["worker"] / runs * 1000,
    }


# -- the whole run ---------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "load_average": os.getloadavg(),
    }


async def run(
    streams: int = 500,
    code: int = 200,
    *,
    tokens: int = 300,
    rate: float = 30,
    workers: int = 1,
    code_runs: int | None = None,
    pool_size: int | None = None,
    sections: tuple[str, ...] = ("llm", "code"),
    on_section: Callable[[str, dict[str, Any]], None] | None = None,
    quick: bool = False,
) -> dict[str, Any]:
    """Both measurements on a private Redis and SQLite store; ``quick``: small counts.
    ``on_section(name, figures)`` is called as each one ends (to print it at once)."""
    if quick:
        streams, code, tokens, code_runs = min(streams, 20), min(code, 20), min(tokens, 30), 40
    code_runs = code_runs if code_runs is not None else 5 * code
    results: dict[str, Any] = {"machine": machine()}
    results["machine"]["load_average_before"] = results["machine"].pop("load_average")
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedRedis(Path(tmp) / "redis", persist=False) as redis,
    ):
        try:
            if "llm" in sections:
                model_port = free_port()
                async with service(
                    redis,
                    f"sqlite:///{tmp}/llm.db",
                    workers=workers,
                    concurrency=streams,
                    model_port=model_port,
                    rate=rate,
                    together=streams,
                ) as running:
                    results["llm"] = await llm_streams(running, streams, tokens, model_port)
                per_token = results["llm"]["worker_cpu_s_per_1k_tokens"] / 1000
                results["llm"] |= {
                    "rate": rate,
                    "workers": workers,
                    "worker_cores_needed": per_token * rate * streams,
                    "streams_per_worker_core": 1 / max(per_token * rate, 1e-9),
                }
                results["llm"]["in_process"] = await parse_cost()
                if on_section is not None:
                    on_section("llm", results["llm"])
            if "code" in sections:
                async with service(
                    redis,
                    f"sqlite:///{tmp}/code.db",
                    workers=1,
                    concurrency=code,
                    pool_size=pool_size,
                ) as running:
                    results["code"] = await code_nodes(running, code, code_runs)
                results["code"]["pool_size"] = pool_size
                if on_section is not None:
                    on_section("code", results["code"])
        except BaseException:
            print(log_tails(redis.directory), file=sys.stderr)
            raise
    results["machine"]["load_average_after"] = os.getloadavg()
    self_usage = resource.getrusage(resource.RUSAGE_SELF)
    results["benchmark_process_cpu_s"] = self_usage.ru_utime + self_usage.ru_stime
    return results


def show_machine(box: dict[str, Any]) -> None:
    averages = box["load_average_before"] if "load_average_before" in box else box["load_average"]
    load = ", ".join(f"{x:.1f}" for x in averages)
    print(
        f"AI-shaped load on {box['cores']} cores ({box['cpu']}; {box['system']}; "
        f"Python {box['python']}; load average {load} before)"
    )


def show(name: str, figures: dict[str, Any]) -> None:
    if name == "llm":
        show_llm(figures)
    else:
        show_code(figures)


def show_llm(llm: dict[str, Any]) -> None:
    print(
        f"llm: {llm['streams']} executions x {llm['tokens_per_stream']} tokens at "
        f"{llm['rate']:g} tokens/s, one WebSocket client each, {llm['workers']} worker process(es)"
    )
    rows = [
        ("tokens streamed", f"{llm['tokens_streamed']} in {llm['seconds']:.1f} s"),
        (
            "ramp: all submitted / all at the model after",
            f"{llm['ramp_s']['submits']:.1f} s / {llm['ramp_s']['requests_at_model']:.1f} s "
            "(then every stream starts)",
        ),
        (
            "peak streams (connections) open at the model",
            f"{llm['peak_concurrent_streams']} ({llm['peak_connections']})",
        ),
        (
            "token lag, model -> WS client (p99 < 100)",
            _pct(llm["lag_ms"]) + f"  max {llm['lag_ms']['max']:.0f} ms",
        ),
        ("  model -> XADD (worker side)", _pct(llm["model_to_xadd_ms"])),
        ("  XADD -> WS client (API side)", _pct(llm["xadd_to_client_ms"])),
        ("  stand-in late against its pace", _pct(llm["stand_in_late_ms"])),
        (
            "events per token (node.stream only)",
            f"{llm['events_per_token']:.3f} ({llm['stream_events_per_token']:.3f})",
        ),
        ("worker CPU s per 1,000 tokens", f"{llm['worker_cpu_s_per_1k_tokens']:.3f}"),
        (
            "  worker CPU this load needs (cores)",
            f"{llm['worker_cores_needed']:.2f}: one worker process at 100% carries "
            f"{llm['streams_per_worker_core']:.0f} streams at {llm['rate']:g} tokens/s",
        ),
        ("API CPU s per 1,000 tokens", f"{llm['api_cpu_s_per_1k_tokens']:.3f}"),
        ("CPU s (cores) during the run", _cpu(llm["cpu_s"], llm["seconds"])),
        (
            "worker's parse, in-process (no socket)",
            f"llm node parse + coalescer {llm['in_process']['node_us_per_token']:.1f} µs/token, "
            f"plain orjson parse {llm['in_process']['plain_us_per_token']:.1f} µs/token",
        ),
        ("every client got every token", f"{llm['every_client_got_every_token']}"),
        ("requests the model got (retries beyond one each)", f"{llm['model_requests']}"),
    ]
    _table(rows)
    for line in llm["incomplete"][:5]:
        print(f"    incomplete: {line}")
    if len(llm["incomplete"]) > 5:
        print(f"    ... and {len(llm['incomplete']) - 5} more incomplete")


def show_code(code: dict[str, Any]) -> None:
    print(
        f"code: {code['executions']} trivial Python code executions, {code['in_flight']} in "
        f"flight (sandbox pool {code['pool_size'] or 'default'})"
    )
    rows = [
        ("executions/s", f"{code['executions_per_s']:.0f}  ({code['failed']} failed)"),
        (
            "submit -> completed",
            _pct(code["submit_to_complete_ms"])
            + f"  max {code['submit_to_complete_ms']['max']:.0f} ms",
        ),
        ("worker RSS peak", f"{code['worker_rss_mb']:.0f} MiB"),
        ("sandbox processes RSS peak", f"{code['sandbox_rss_mb']:.0f} MiB"),
        ("worker CPU ms per execution", f"{code['worker_cpu_ms_per_execution']:.1f}"),
        ("sandbox processes CPU s", f"{code['sandbox_processes_cpu_s']:.1f}"),
        ("CPU s (cores) during the run", _cpu(code["cpu_s"], code["seconds"])),
    ]
    _table(rows)


def _pct(figures: dict[str, float]) -> str:
    return f"p50 {figures['p50']:6.1f} ms  p99 {figures['p99']:7.1f} ms"


def _cpu(used: dict[str, float], seconds: float) -> str:
    """CPU seconds per process, and in cores (CPU seconds per second of the run); what the
    machine used besides them (other processes: another benchmark, tests) last."""
    shown = dict(used)
    if "whole machine" in shown:
        whole = shown.pop("whole machine")
        shown["others on the machine"] = max(whole - sum(shown.values()), 0.0)
    return ", ".join(f"{name} {value:.1f} ({value / seconds:.2f})" for name, value in shown.items())


def _table(rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--tokens", type=int, default=300, help="tokens per stream")
    parser.add_argument("--rate", type=float, default=30, help="tokens/s of each stream")
    parser.add_argument("--workers", type=int, default=1, help="wfe worker processes (llm)")
    parser.add_argument("--code", type=int, default=200, help="code executions in flight")
    parser.add_argument("--code-runs", type=int, default=None, help="default: 5 x --code")
    parser.add_argument("--pool-size", type=int, default=None, help="WFE_CODE_POOL_SIZE")
    parser.add_argument("--only", default="llm,code", help="llm, code or both (llm,code)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--serve-model", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        import uvloop

        runner: Callable[[Any], Any] = uvloop.run
    except ImportError:
        runner = asyncio.run
    if args.serve_model is not None:
        runner(serve_model(args.serve_model, args.rate, args.streams))
        return
    show_machine(machine())
    results = runner(
        run(
            args.streams,
            args.code,
            tokens=args.tokens,
            rate=args.rate,
            workers=args.workers,
            code_runs=args.code_runs,
            pool_size=args.pool_size,
            sections=tuple(args.only.split(",")),
            on_section=show,
            quick=args.quick,
        )
    )
    after = ", ".join(f"{x:.1f}" for x in results["machine"]["load_average_after"])
    print(f"load average {after} after")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
