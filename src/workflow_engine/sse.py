"""Server-sent events: an incremental parser (for the http node's upstreams and the SDK)."""

from __future__ import annotations

import codecs
import re
from typing import Any

import orjson

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class SseParser:
    """An incremental ``text/event-stream`` parser, after the WHATWG HTML rules: feed bytes as
    they arrive, get the events they complete, ``{"event", "data", "id"}``.

    ``data`` lines accumulate until a blank line; ``data`` is parsed as JSON when it parses;
    ``event`` defaults to ``"message"``; ``id`` is the stream's last event id (it carries over to
    later events until another ``id`` line; None before any, or after an empty one). Comments,
    ``retry`` and unknown fields are ignored; an event the stream ends before is dropped.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")  # drops a BOM
        self._partial: list[str] = []  # the start of a line not yet ended
        self._after_cr = False  # the last text ended with CR: a LF starting the next is its pair
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        text = self._decoder.decode(data)
        if not text:
            return []
        if self._after_cr and text[0] == "\n":
            text = text[1:]
        self._after_cr = text.endswith("\r")
        lines = _LINE_BREAK.split(text)
        if len(lines) == 1:
            self._partial.append(text)
            return []
        lines[0] = "".join(self._partial) + lines[0]
        self._partial = [lines.pop()]
        return [event for line in lines if (event := self._line(line)) is not None]

    def _line(self, line: str) -> dict[str, Any] | None:
        if not line:
            return self._dispatch()
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value or None
        return None  # a comment (no name), ``retry`` or an unknown field

    def _dispatch(self) -> dict[str, Any] | None:
        data, event = self._data, self._event
        self._data, self._event = [], ""
        if not data:
            return None
        return {"event": event or "message", "data": _json_or_text("\n".join(data)), "id": self._id}


def _json_or_text(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
