"""Workflow definitions the browser tests run."""

from __future__ import annotations

from typing import Any


def pause(seconds: float) -> dict[str, Any]:
    """start -> wait (a delay) -> done."""
    return {
        "id": "pause",
        "nodes": [
            {"id": "start", "type": "transform", "inputs": {"value": {"n": 1}}},
            {"id": "wait", "type": "delay", "inputs": {"seconds": seconds}},
            {"id": "done", "type": "output", "inputs": {"value": "{{ nodes.start.output }}"}},
        ],
        "edges": [{"source": "start", "target": "wait"}, {"source": "wait", "target": "done"}],
    }


APPROVAL: dict[str, Any] = {
    "id": "approval",
    "nodes": [
        {
            "id": "ask",
            "type": "wait_input",
            "inputs": {
                "prompt": "Ship order 42?",
                "schema": {
                    "type": "object",
                    "properties": {
                        "approved": {"type": "boolean", "title": "Approved"},
                        "note": {"type": "string"},
                        "copies": {"type": "integer", "minimum": 1},
                    },
                    "required": ["approved", "copies"],
                },
            },
        },
        {"id": "result", "type": "output", "inputs": {"value": "{{ nodes.ask.output }}"}},
    ],
    "edges": [{"source": "ask", "target": "result"}],
}

PICK = "{{ nodes.loud.output if nodes.loud.status == 'completed' else nodes.calm.output }}"
STORED: dict[str, Any] = {
    "id": "greet",
    "name": "Greeting",
    "input_schema": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "who to greet"},
            "times": {"type": "integer", "default": 2},
            "tone": {"enum": ["warm", "dry"]},
        },
        "required": ["name"],
    },
    "nodes": [
        {"id": "hello", "type": "transform", "inputs": {"value": "Hello {{ inputs.name }}"}},
        {
            "id": "check",
            "type": "condition",
            "inputs": {"branches": [{"name": "many", "when": "inputs.times > 1"}]},
        },
        {"id": "loud", "type": "transform", "inputs": {"value": "{{ nodes.hello.output }}!!"}},
        {"id": "calm", "type": "transform", "inputs": {"value": "{{ nodes.hello.output }}."}},
        {"id": "out", "type": "output", "inputs": {"value": PICK}},
    ],
    "edges": [
        {"source": "hello", "target": "check"},
        {"source": "check", "target": "loud", "branch": "many"},
        {"source": "check", "target": "calm", "branch": "else"},
        {"source": "loud", "target": "out"},
        {"source": "calm", "target": "out"},
    ],
}
