"""The FastGPT dialect's rules for the nodes of a loop's and of a tool's runs, event by event
(the service tests follow whole executions): a loop child's ``variableUpdate`` still sends
``updateVariables``; a tool run's nodes announce neither their start nor their response."""

from __future__ import annotations

import json
from typing import Any

from tests.fastgpt.test_tools import weather_app
from workflow_engine.events import model as ev
from workflow_engine.events.model import Event
from workflow_engine.fastgpt.dialect import FastGptDialect
from workflow_engine.fastgpt.translate import translate


def event(kind: str, node_id: str, **data: Any) -> Event:
    return Event("1-0", "e1", kind, "2026-11-30T00:00:00+00:00", {"nodeId": node_id, **data})


def test_a_tool_runs_nodes_are_silent_and_its_tool_events_are_named_as_fastgpt_names_them() -> None:
    dialect = FastGptDialect.of(translate(weather_app()).definition, {}, detail=True)
    started = dialect.frames(event(ev.NODE_STARTED, "agent"))
    assert [(f.event, json.loads(f.data)) for f in started] == [
        ("flowNodeStatus", {"status": "running", "name": "Tool call"})
    ]
    inner = event(ev.NODE_STARTED, "agent[0].forecast", loopId="agent", iteration=0)
    assert dialect.frames(inner) == []
    done = event(ev.NODE_COMPLETED, "agent[0].forecast", loopId="agent", iteration=0)
    assert dialect.frames(done) == []
    call = {"id": "c1", "toolName": "", "toolAvatar": "", "params": "", "response": "ok"}
    [frame] = dialect.frames(event(ev.NODE_STREAM, "agent", chunk={"toolResponse": call}))
    assert (frame.event, json.loads(frame.data)) == ("toolResponse", {"tool": call})
    plain = FastGptDialect.of(translate(weather_app()).definition, {}, detail=False)
    assert plain.frames(event(ev.NODE_STREAM, "agent", chunk={"toolResponse": call})) == []


def test_a_variable_update_among_a_loops_children_sends_update_variables() -> None:
    definition = {
        "nodes": [
            {
                "id": "loop1",
                "type": "fastgpt.loop",
                "inputs": {
                    "body": {
                        "nodes": [{"id": "vu", "type": "fastgpt.variableUpdate", "inputs": {}}]
                    }
                },
            }
        ],
        "variables": {"fastgpt_globals": {"acc": {"label": "acc", "default": ""}}},
    }
    dialect = FastGptDialect.of(definition, {"variables": {"other": 1}}, detail=True)
    written = {"fastgpt": {"acc": "a;"}}
    done = event(ev.NODE_COMPLETED, "loop1[0].vu", loopId="loop1", iteration=0, output=written)
    [frame] = dialect.frames(done)
    assert (frame.event, json.loads(frame.data)) == ("updateVariables", {"other": 1, "acc": "a;"})


def test_a_node_seeded_for_a_resume_and_replayed_after_it_is_listed_once() -> None:
    """A client resumes after an event of the same millisecond as a node's stored end, and
    the node's own event comes after it: ``flowResponses`` lists that node once."""
    definition = {
        "nodes": [
            {"id": "a", "type": "fastgpt.answerNode", "inputs": {}},
            {"id": "b", "type": "fastgpt.answerNode", "inputs": {}},
        ]
    }
    dialect = FastGptDialect.of(definition, {}, detail=True)
    stored = [
        {"nodeId": "a", "status": "completed", "completedAt": "2026-11-30T00:00:00.000Z"},
        {"nodeId": "b", "status": "completed", "completedAt": "2026-11-30T00:00:01.000Z"},
    ]
    dialect.seed(stored, before_ms=1_795_996_801_000.0)  # b's end, to the millisecond
    dialect.frames(event(ev.NODE_COMPLETED, "b", durationMs=20))  # replayed after the resume
    assert [r["id"] for r in dialect.responses] == ["a", "b"]
    assert dialect.responses[-1]["runningTime"] == 0.02  # the event's, not the seed's
