"""Our events in FastGPT's SSE dialect (``GET /api/workflow/events/{id}?format=fastgpt``; SPEC
section 13), as FastGPT's ``/api/v1/chat/completions`` streams them
(``packages/global/core/workflow/runtime/constants.ts`` ``SseResponseEventEnum``,
``getWorkflowResponseWrite``; ``docs/fastgpt-research.md`` section 4):

- ``flowNodeStatus`` ``{status: "running", name}`` when a node whose ``showStatus`` is on
  starts;
- ``answer``: a chat node's streamed text as an OpenAI ``chat.completion.chunk``-like object
  (``textAdaptGptResponse``), ``fastAnswer`` the same for an answer node's text;
- ``flowNodeResponse`` when a node ends (its FastGPT id, name, type, running time);
- ``updateVariables`` after a ``variableUpdate``: the variables, system ones left out;
- ``toolCall``, ``toolParams``, ``toolResponse`` (``{tool: {id, toolName, toolAvatar,
  params, response}}``) as a ``tools`` node calls its tools; the nodes of a tool's run
  announce neither their start nor their response, as in FastGPT;
- ``interactive`` when the run waits for the user;
- at the end ``workflowDuration``, a last ``answer`` chunk with ``finish_reason: "stop"``,
  ``[DONE]``, then ``flowResponses`` (every node's response); ``error`` instead when the
  execution failed or was cancelled.

With ``detail=false`` only the answer chunks and ``[DONE]`` are sent, without ``event:``
lines (FastGPT's plain OpenAI-compatible stream). Each frame carries the id of the event it
comes from, so a client resumes with ``Last-Event-ID`` as on our own stream."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import orjson

from workflow_engine.events import model as ev
from workflow_engine.events.model import Event
from workflow_engine.fastgpt.translate import GLOBALS_VARIABLE, TYPE_PREFIX, WRITES_VARIABLE

DONE: Final = "[DONE]"
ANSWER_TYPES: Final = frozenset({"chatNode"})
FAST_ANSWER_TYPES: Final = frozenset({"answerNode"})
TOOL_EVENTS: Final = ("toolCall", "toolParams", "toolResponse")
"""A tools node's ``node.stream`` chunks ``{<event>: {id, toolName, ...}}``."""
RUN_INDEX: Final = re.compile(r"\[\d+\]\.")
SYSTEM_VARIABLES: Final = frozenset(
    {"userId", "appId", "chatId", "responseChatItemId", "histories", "cTime"}
)


@dataclass(frozen=True, slots=True)
class Frame:
    event: str | None
    data: str
    id: str | None


def chunk(
    text: str | None = None, *, reasoning: str | None = None, finish_reason: str | None = None
) -> dict[str, Any]:
    """FastGPT's ``textAdaptGptResponse``."""
    delta: dict[str, Any] = {"role": "assistant"}
    if text is not None or reasoning is None:
        delta["content"] = text
    if reasoning is not None:
        delta["reasoning_content"] = reasoning
    return {
        "id": "",
        "object": "",
        "created": 0,
        "model": "",
        "choices": [{"delta": delta, "index": 0, "finish_reason": finish_reason}],
    }


@dataclass
class FastGptDialect:
    """Turns one execution's events into FastGPT's frames. ``nodes``: our node id -> its
    FastGPT id and type (from the translated definition's node metadata); ``variables``: the
    translated definition's variables and the execution's inputs, for ``updateVariables``."""

    nodes: Mapping[str, tuple[str, str, str]]
    """Our node id -> (FastGPT node id, flowNodeType, name)."""
    shown: frozenset[str] = frozenset()
    """Our ids of the nodes whose start FastGPT announces (``showStatus``)."""
    globals_spec: Mapping[str, Any] = field(default_factory=dict)
    request_variables: Mapping[str, Any] = field(default_factory=dict)
    detail: bool = True
    responses: list[dict[str, Any]] = field(default_factory=list)
    ended: bool = False
    """FastGPT's response is over (it waits for the user): the stream closes."""
    _seeded: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The responses ``seed`` took from stored results, by our node id: a replayed event of
    the same node replaces its one (the seed goes by time, to the millisecond, and a node's
    event is written just after its result)."""
    _first_ms: float | None = None

    @classmethod
    def of(
        cls,
        definition: Mapping[str, Any] | None,
        inputs: Mapping[str, Any] | None,
        *,
        detail: bool,
        started_ms: float | None = None,
    ) -> FastGptDialect:
        """The dialect of an execution of ``definition`` (translated from FastGPT) with
        ``inputs``; ``started_ms``: when it was created (``workflowDuration`` counts from it)."""
        nodes: dict[str, tuple[str, str, str]] = {}
        shown: set[str] = set()
        for node in _all_nodes((definition or {}).get("nodes") or []):
            meta = _mapping(_mapping(node.get("metadata")).get("fastgpt"))
            if meta.get("showStatus", True):
                shown.add(str(node.get("id")))
            node_type = str(node.get("type", ""))
            flow_type = meta.get("flowNodeType") or node_type.removeprefix(TYPE_PREFIX)
            node_id = str(node.get("id"))
            name = str(node.get("name") or flow_type)
            nodes[node_id] = (str(meta.get("nodeId") or node_id), flow_type, name)
        variables = _mapping((definition or {}).get("variables"))
        request = (inputs or {}).get("variables")
        return cls(
            nodes=nodes,
            shown=frozenset(shown),
            globals_spec=_mapping(variables.get(GLOBALS_VARIABLE)),
            request_variables=request if isinstance(request, Mapping) else {},
            detail=detail,
            _first_ms=started_ms,
        )

    def frames(self, event: Event) -> list[Frame]:
        data = event.data if isinstance(event.data, dict) else {}
        if "childExecutionId" in data:  # a child's copy: FastGPT streams the app's own nodes
            return []
        if self._first_ms is None:
            self._first_ms = _ms(event.timestamp)
        out: list[tuple[str, Any]] = []
        node_id = str(data.get("nodeId"))
        if (
            event.type == ev.NODE_STARTED
            and _own_id(node_id) in self.shown
            and not self._in_tool_run(node_id)
        ):
            out.append(
                (
                    "flowNodeStatus",
                    {"status": "running", "name": self._node(data)[2]},
                )
            )
        elif event.type == ev.NODE_STREAM:
            out += self._streamed(data)
        elif event.type in (ev.NODE_COMPLETED, ev.NODE_FAILED) and "iteration" not in data:
            out += self._finished(data)  # (a loop's own runs send no responses in FastGPT)
        elif event.type == ev.NODE_COMPLETED and self._node(data)[1] == "variableUpdate":
            out += self._updated(data.get("output"))  # (in a loop's run: no response, but this)
        elif event.type == ev.EXECUTION_WAITING:
            out += self._waiting(data)
        elif event.type == ev.EXECUTION_COMPLETED:
            seconds = round(max(0.0, (_ms(event.timestamp) - (self._first_ms or 0)) / 1000), 2)
            out.append(("workflowDuration", {"durationSeconds": seconds}))
            out.append(("answer", chunk(None, finish_reason="stop")))
            out.append(("answer", DONE))
            out.append(("flowResponses", self.responses))
        elif event.type in (ev.EXECUTION_FAILED, ev.EXECUTION_CANCELLED):
            error = data.get("error") if isinstance(data.get("error"), dict) else {}
            message = (error or {}).get("message") or event.type.rpartition(".")[2]
            out.append(("error", {"message": message}))
        return [f for name, value in out if (f := self._frame(name, value, event.id)) is not None]

    def _frame(self, name: str, value: Any, event_id: str) -> Frame | None:
        """One frame; without ``detail`` only the answers, without their event name, and an
        error (FastGPT's ``sseErrRes`` names it whatever ``detail`` is)."""
        if not self.detail and name not in ("answer", "fastAnswer", "error"):
            return None
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        return Frame(name if self.detail or name == "error" else None, text, event_id)

    def _node(self, data: Mapping[str, Any]) -> tuple[str, str, str]:
        node_id = str(data.get("nodeId", ""))
        return self.nodes.get(_own_id(node_id), (node_id, "", node_id))

    def _in_tool_run(self, node_id: str) -> bool:
        """A node of a tool's run (``<toolsId>[<n>].<node>``): FastGPT announces neither its
        start nor its response (``isToolCall``)."""
        holders = RUN_INDEX.split(node_id)[:-1]
        return any(self.nodes.get(_own_id(h), ("", "", ""))[1] == "tools" for h in holders)

    def _streamed(self, data: Mapping[str, Any]) -> list[tuple[str, Any]]:
        piece = data.get("chunk")
        if not isinstance(piece, Mapping):
            return []
        for name in TOOL_EVENTS:
            if isinstance(piece.get(name), Mapping):
                return [(name, {"tool": piece[name]})]
        name = "fastAnswer" if self._node(data)[1] in FAST_ANSWER_TYPES else "answer"
        if isinstance(piece.get("reasoning"), str):
            return [(name, chunk(reasoning=piece["reasoning"]))]
        if isinstance(piece.get("text"), str):
            return [(name, chunk(piece["text"]))]
        return []

    def seed(self, results: list[dict[str, Any]], before_ms: float) -> None:
        """A client resuming after ``Last-Event-ID``: the nodes that ended before it (node
        results, wire form) are in ``flowResponses`` too, as on an unbroken stream."""
        ended = [
            r
            for r in results
            if r.get("status") in ("completed", "failed")
            and "[" not in str(r.get("nodeId"))
            and _ms(str(r.get("completedAt") or "")) <= before_ms
        ]
        for result in sorted(ended, key=lambda r: str(r.get("completedAt"))):
            self._seeded[str(result.get("nodeId", ""))] = self._response(result)

    def _finished(self, data: Mapping[str, Any]) -> list[tuple[str, Any]]:
        response = self._response(data)
        output = data.get("output")
        out: list[tuple[str, Any]] = [("flowNodeResponse", response)]
        if response["moduleType"] == "variableUpdate":
            out += self._updated(output)
        return out

    def _updated(self, output: Any) -> list[tuple[str, Any]]:
        """``updateVariables`` after a ``variableUpdate``: the variables it left."""
        if not isinstance(output, Mapping):
            return []
        return [("updateVariables", self._variables(output.get(WRITES_VARIABLE)))]

    def _response(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """A node's FastGPT response (``flowNodeResponse``), kept for ``flowResponses``."""
        node_id = str(data.get("nodeId", ""))
        fastgpt_id, flow_type, name = self._node(data)
        response: dict[str, Any] = {
            "id": node_id,
            "nodeId": fastgpt_id,
            "moduleName": name,
            "moduleType": flow_type,
            "runningTime": round((data.get("durationMs") or 0) / 1000, 2),
        }
        error = data.get("error")
        if isinstance(error, Mapping):
            response["error"] = error.get("message")
        output = data.get("output")
        if flow_type == "loopEnd" and isinstance(output, Mapping):
            response["loopOutputValue"] = output.get("loopOutputValue")
        seeded = self._seeded.pop(node_id, None)
        if seeded is not None:
            self.responses.remove(seeded)
        self.responses.append(response)
        return response

    def _waiting(self, data: Mapping[str, Any]) -> list[tuple[str, Any]]:
        """A run waiting for the user ends FastGPT's response: the interactive payload, the
        stop chunk, ``[DONE]`` (the answer resumes it: follow the stream again from the last
        id)."""
        frames: list[tuple[str, Any]] = []
        for waiting in data.get("nodes") or []:
            if isinstance(waiting, Mapping) and isinstance(waiting.get("interactive"), Mapping):
                frames.append(("interactive", {"interactive": waiting["interactive"]}))
        if frames:
            frames += [("answer", chunk(None, finish_reason="stop")), ("answer", DONE)]
            self.ended = True
        return frames

    def _variables(self, written: Any) -> dict[str, Any]:
        view: dict[str, Any] = dict(self.request_variables)
        for key, item in self.globals_spec.items():
            label = item.get("label") if isinstance(item, Mapping) else None
            value = self.request_variables.get(label) if isinstance(label, str) else None
            if value is None:
                value = self.request_variables.get(key)
            if value is None and isinstance(item, Mapping):
                value = item.get("default")
            view[key] = value
            if isinstance(label, str) and label != key:
                view.pop(label, None)
        if isinstance(written, Mapping):
            view.update(written)
        return {k: v for k, v in view.items() if k not in SYSTEM_VARIABLES}


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _all_nodes(nodes: list[Any]) -> list[dict[str, Any]]:
    """The nodes of a definition, those of loop bodies too."""
    found: list[dict[str, Any]] = []
    pending = list(nodes)
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            found.append(node)
            body = _mapping(node.get("inputs")).get("body")
            if isinstance(body, dict):
                pending.extend(body.get("nodes") or [])
    return found


def _own_id(node_id: str) -> str:
    """A loop iteration's node (``loop[2].x``) is its body node ``x``."""
    return node_id.rpartition(".")[2]


def _ms(timestamp: str) -> float:
    try:
        return datetime.fromisoformat(timestamp).timestamp() * 1000
    except ValueError:
        return 0.0
