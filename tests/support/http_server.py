"""A small real HTTP/1.1 server on a loopback socket, for the http node's tests.

It can tell when a client aborted a request (the connection closed before an answer), and send
a chunked body piece by piece, each piece only when the test says so (``send_next``).
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

# bodies sent in several writes: (content type, pieces)
SSE_PIECES = [  # each piece completes one event; the second starts in the first piece
    b': keep-alive\n\nevent: delta\nid: 1\ndata: {"text": "Hel"}\n\ndata: {"te',
    b'xt": "lo"}\n\n',
    b"id: 3\r\ndata: [DONE]\r\n\r\n",
]
TEXT_PIECES = [b'{"drink": "caf\xc3', b'\xa9", "size": ', b"2}"]  # "é" split in two writes
STREAMS = {
    "/sse": ("text/event-stream", SSE_PIECES),
    "/chunks": ("text/plain; charset=utf-8", TEXT_PIECES),
}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class LocalHttpServer:
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    slow_started: asyncio.Event = field(default_factory=asyncio.Event)
    slow_aborted: asyncio.Event = field(default_factory=asyncio.Event)
    hits: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    send_next: asyncio.Event = field(default_factory=asyncio.Event)
    pieces_sent: int = 0
    stream_aborted: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> LocalHttpServer:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await self._read(reader)
            if request is None:
                return
            self.requests.append(request)
            if request.path == "/slow":
                self.slow_started.set()
                if await reader.read(1) == b"":
                    self.slow_aborted.set()
                return
            if request.path in STREAMS:
                await self._send_pieces(reader, writer, request)
                return
            if request.path == "/trickle":
                await self._trickle(writer, request)
                return
            status, content_type, body = self._route(request)
            head = (
                f"HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n"
            )
            if status == 302:
                head += f"location: {request.query['to'][0]}\r\n"
            head += "\r\n"
            writer.write(head.encode() + body)
            await writer.drain()
        finally:
            writer.close()

    async def _send_pieces(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: Request
    ) -> None:
        """A chunked body, one write per piece. Before each piece after the first, wait for the
        test to set ``send_next`` (``?gate=0``: don't). ``?hang=1``: send the first piece, then
        wait for the client to hang up. ``?type=`` overrides the content type."""
        content_type, pieces = STREAMS[request.path]
        content_type = request.query.get("type", [content_type])[0]
        gated = request.query.get("gate") != ["0"]
        hang = request.query.get("hang") == ["1"]
        writer.write(
            f"HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\n"
            "transfer-encoding: chunked\r\nconnection: close\r\n\r\n".encode()
        )
        for i, piece in enumerate(pieces):
            if i and gated:
                await self.send_next.wait()
                self.send_next.clear()
            self.pieces_sent += 1
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            if hang:
                if await reader.read(1) == b"":
                    self.stream_aborted.set()
                return
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def _trickle(self, writer: asyncio.StreamWriter, request: Request) -> None:
        """``?bytes=N&every=S``: an N-byte body, one byte every S seconds (a slow upstream that
        never leaves a read idle for long)."""
        count = int(request.query.get("bytes", ["100"])[0])
        every = float(request.query.get("every", ["0.1"])[0])
        writer.write(
            f"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {count}\r\n"
            "connection: close\r\n\r\n".encode()
        )
        try:
            for _ in range(count):
                await writer.drain()
                await asyncio.sleep(every)  # the server's pace, not a test waiting
                writer.write(b"x")
            await writer.drain()
        except ConnectionError:
            self.stream_aborted.set()

    async def _read(self, reader: asyncio.StreamReader) -> Request | None:
        line = await reader.readline()
        if not line:
            return None
        method, target, _ = line.decode().split(" ", 2)
        headers: dict[str, str] = {}
        while (header := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = header.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = await reader.readexactly(length) if length else b""
        url = urlsplit(target)
        return Request(method, url.path, parse_qs(url.query), headers, body)

    def _route(self, request: Request) -> tuple[int, str, bytes]:
        parts = request.path.strip("/").split("/")
        self.hits[request.path] += 1
        if parts[0] == "orders" and len(parts) == 2:
            total = int(request.query.get("total", ["150"])[0])
            return 200, "application/json", json.dumps({"id": parts[1], "total": total}).encode()
        if parts[0] == "echo":
            payload = {
                "method": request.method,
                "query": {k: v[0] for k, v in request.query.items()},
                "headers": request.headers,
                "body": request.body.decode(),
            }
            return 200, "application/json; charset=utf-8", json.dumps(payload).encode()
        if request.path == "/v1/traces":  # an OTLP/HTTP collector: takes every export
            return 200, "application/x-protobuf", b""
        if parts[0] == "text":
            return 200, "text/plain; charset=utf-8", "héllo".encode()
        if parts[0] == "status" and len(parts) == 2:
            return int(parts[1]), "text/plain", f"status {parts[1]}".encode()
        if parts[0] == "redirect":  # ?to=URL
            return 302, "text/plain", b"see " + request.query["to"][0].encode()
        if parts[0] == "bytes" and len(parts) == 2:
            return 200, "text/plain", b"x" * int(parts[1])
        if parts[0] == "flaky" and len(parts) == 2:
            fail = int(request.query.get("fail", ["1"])[0])
            if self.hits[request.path] <= fail:
                return 503, "text/plain", b"try again"
            return 200, "application/json", json.dumps({"hits": self.hits[request.path]}).encode()
        return 404, "text/plain", b"not found"
