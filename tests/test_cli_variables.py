"""``wfe validate`` and ``wfe run`` with variables and a closed ``input_schema``, run as a
separate process as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.test_cli import wfe, write

TYPO: dict[str, Any] = {
    "id": "typo",
    "input_schema": {"type": "object", "properties": {"total": {"type": "number"}}},
    "variables": {"seen": 0},
    "nodes": [
        {"id": "a", "type": "transform", "inputs": {"value": "{{ inputs.totl }}"}},
        {"id": "s", "type": "set_variables", "inputs": {"values": {"sen": 1}}},
        {"id": "b", "type": "transform", "inputs": {"value": "{{ vars.seem }}"}},
    ],
    "edges": [{"source": "a", "target": "s"}, {"source": "s", "target": "b"}],
}

COUNTER: dict[str, Any] = {
    "id": "counter",
    "variables": {"count": 0},
    "nodes": [
        {
            "id": "s",
            "type": "set_variables",
            "inputs": {"values": {"count": "{{ vars.count + 2 }}"}},
        },
        {"id": "o", "type": "output", "inputs": {"value": "{{ vars.count }}"}},
    ],
    "edges": [{"source": "s", "target": "o"}],
}


def test_validate_reports_undeclared_inputs_and_variables_with_their_paths(tmp_path: Path) -> None:
    proc = wfe("validate", str(write(tmp_path / "typo.json", TYPO)))
    assert proc.returncode == 1  # the variables; the input read alone is a warning (below)
    assert "warning nodes[0].inputs.value: '{{ inputs.totl }}' reads unknown input 'totl'" in (
        proc.stderr
    )
    assert "nodes[1].inputs.values.sen: sets variable 'sen', which is not declared" in proc.stderr
    assert "nodes[2].inputs.value: '{{ vars.seem }}' reads variable 'seem'" in proc.stderr


def test_validate_accepts_undeclared_inputs_when_the_schema_allows_them(tmp_path: Path) -> None:
    allowed = {**TYPO, "input_schema": {**TYPO["input_schema"], "additionalProperties": True}}
    allowed["nodes"] = [TYPO["nodes"][0]]
    allowed["edges"] = []
    proc = wfe("validate", str(write(tmp_path / "open.json", allowed)))
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr


def test_validate_warns_of_an_undeclared_input_read_and_passes(tmp_path: Path) -> None:
    reads = {**TYPO, "nodes": [TYPO["nodes"][0]], "edges": [], "variables": {}}
    proc = wfe("validate", str(write(tmp_path / "reads.json", reads)))
    assert proc.returncode == 0, proc.stderr
    assert "warning nodes[0].inputs.value: '{{ inputs.totl }}' reads unknown input 'totl'" in (
        proc.stderr
    )


def test_run_json_prints_the_final_variables(tmp_path: Path) -> None:
    path = write(tmp_path / "counter.json", COUNTER)
    proc = wfe("run", str(path), "--json", "-q")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["result"] == 2
    assert record["variables"] == {"count": 2}


def test_run_refuses_unknown_inputs(tmp_path: Path) -> None:
    proc = wfe("run", "examples/if_else.json", "-i", "total=5", "-i", "totl=6", "-q")
    assert proc.returncode == 1
    assert "inputs.totl: unknown input 'totl': input_schema does not declare it" in proc.stderr
