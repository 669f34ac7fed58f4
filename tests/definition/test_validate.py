from __future__ import annotations

from typing import Any

import pytest

from workflow_engine.definition.expressions import ExpressionEngine
from workflow_engine.definition.validate import Limits, find_problems, validate_definition
from workflow_engine.errors import DefinitionError, Problem
from workflow_engine.nodes.registry import NodeRegistry

REGISTRY = NodeRegistry.with_builtins()
ENGINE = ExpressionEngine()


def problems(raw: Any, limits: Limits | None = None) -> list[Problem]:
    return find_problems(raw, REGISTRY, ENGINE, limits or Limits())


def by_path(raw: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in problems(raw):
        out.setdefault(p.path, []).append(p.message)
    return out


def codes(raw: Any) -> set[tuple[str, str]]:
    return {(p.path, p.code) for p in problems(raw)}


def wf(
    nodes: list[dict[str, Any]], edges: list[dict[str, Any]] | None = None, **extra: Any
) -> dict[str, Any]:
    return {"id": "w", "nodes": nodes, "edges": edges or [], **extra}


def t(node_id: str, **inputs: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "transform", "inputs": {"value": inputs.get("value", 1)}}


def test_valid_definition_parses() -> None:
    raw = wf([t("a"), t("b", value="{{ nodes.a.output }}")], [{"source": "a", "target": "b"}])
    definition, _ = validate_definition(raw, REGISTRY, ENGINE)
    assert [n.id for n in definition.nodes] == ["a", "b"]
    assert definition.max_parallel == 16


def test_not_an_object() -> None:
    assert problems([1, 2]) == [Problem("$", "a workflow definition must be a JSON object")]


def test_missing_nodes_and_unknown_top_level_field() -> None:
    found = by_path({"id": "w", "nodez": []})
    assert found["nodes"] == ["Field required"]
    assert found["nodez"] == ["unknown field 'nodez'"]


def test_duplicate_and_malformed_ids() -> None:
    raw = wf([t("a"), t("a"), t("9bad"), t("has-dash")])
    assert codes(raw) >= {
        ("nodes[1].id", "duplicate_id"),
        ("nodes[2].id", "invalid_id"),
        ("nodes[3].id", "invalid_id"),
    }
    assert "first used at nodes[0]" in by_path(raw)["nodes[1].id"][0]


def test_dangling_edges_name_the_missing_node() -> None:
    raw = wf([t("a")], [{"source": "a", "target": "ghost"}, {"source": "nope", "target": "a"}])
    found = by_path(raw)
    assert found["edges[0].target"] == ["edge target 'ghost' is not a node"]
    assert found["edges[1].source"] == ["edge source 'nope' is not a node"]


def test_self_edge() -> None:
    assert ("edges[0]", "self_edge") in codes(wf([t("a")], [{"source": "a", "target": "a"}]))


def test_cycle_is_named() -> None:
    raw = wf(
        [t("start"), t("a"), t("b"), t("c")],
        [
            {"source": "start", "target": "a"},
            {"source": "a", "target": "b"},
            {"source": "b", "target": "c"},
            {"source": "c", "target": "a"},
        ],
    )
    found = [p for p in problems(raw) if p.code == "cycle"]
    assert len(found) == 1
    assert found[0].message == "cycle: a -> b -> c -> a"
    assert found[0].path == "edges[3]"


def test_two_separate_cycles_are_both_reported() -> None:
    raw = wf(
        [t("a"), t("b"), t("c"), t("d")],
        [
            {"source": "a", "target": "b"},
            {"source": "b", "target": "a"},
            {"source": "c", "target": "d"},
            {"source": "d", "target": "c"},
        ],
    )
    messages = sorted(p.message for p in problems(raw) if p.code == "cycle")
    assert messages == ["cycle: a -> b -> a", "cycle: c -> d -> c"]


def test_branch_on_a_node_that_cannot_choose() -> None:
    raw = wf([t("a"), t("b")], [{"source": "a", "target": "b", "branch": "yes"}])
    found = by_path(raw)["edges[0].branch"][0]
    assert "node 'a' cannot choose a branch" in found


def test_branch_must_be_one_the_condition_declares() -> None:
    cond = {
        "id": "c",
        "type": "condition",
        "inputs": {"branches": [{"name": "big", "when": "inputs.n > 1"}]},
    }
    raw = wf(
        [cond, t("x"), t("y"), t("z")],
        [
            {"source": "c", "target": "x", "branch": "big"},
            {"source": "c", "target": "y", "branch": "else"},
            {"source": "c", "target": "z", "branch": "bigg"},
        ],
    )
    assert codes(raw) == {("edges[2].branch", "invalid_branch")}
    assert "has no branch 'bigg' (it can take: big, else)" in by_path(raw)["edges[2].branch"][0]


def test_error_branch_needs_on_error_branch() -> None:
    ok = wf(
        [{"id": "a", "type": "fail", "on_error": "branch"}, t("h")],
        [{"source": "a", "target": "h", "branch": "error"}],
    )
    assert problems(ok) == []
    bad = wf(
        [{"id": "a", "type": "fail", "on_error": "continue"}, t("h")],
        [{"source": "a", "target": "h", "branch": "error"}],
    )
    assert codes(bad) == {("edges[0].branch", "invalid_branch")}


def test_unknown_node_type_lists_known_types() -> None:
    message = by_path(wf([{"id": "a", "type": "teleport"}]))["nodes[0].type"][0]
    assert message.startswith("unknown node type 'teleport' (known types: code, condition, delay")


def test_node_inputs_checked_against_the_type_model() -> None:
    raw = wf(
        [
            {"id": "h", "type": "http", "inputs": {"url": "ftp://x", "method": "FETCH"}},
            {"id": "d", "type": "delay", "inputs": {}},
            {"id": "t", "type": "transform", "inputs": {"value": 1, "extra": 2}},
        ]
    )
    found = codes(raw)
    assert ("nodes[0].inputs.url", "invalid_inputs") in found
    assert ("nodes[0].inputs.method", "invalid_inputs") in found
    assert ("nodes[1].inputs.seconds", "invalid_inputs") in found
    assert ("nodes[2].inputs.extra", "invalid_inputs") in found


def test_templated_inputs_are_not_type_checked_before_rendering() -> None:
    raw = wf(
        [
            {"id": "d", "type": "delay", "inputs": {"seconds": "{{ inputs.wait }}"}},
            {"id": "h", "type": "http", "inputs": {"url": "{{ inputs.base }}/x"}},
        ]
    )
    assert problems(raw) == []


def test_references_must_point_upstream() -> None:
    raw = wf(
        [
            t("a"),
            t("b", value="{{ nodes.c.output }}"),
            t("c"),
            t("d", value="{{ nodes['ghost'].output }}"),
            t("e", value="{{ nodes.e.output }}"),
        ],
        [{"source": "a", "target": "b"}, {"source": "a", "target": "c"}],
    )
    found = by_path(raw)
    assert found["nodes[1].inputs.value"] == [
        "node 'b' refers to node 'c', which is not upstream of it"
    ]
    assert found["nodes[3].inputs.value"] == ["reference to unknown node 'ghost'"]
    assert found["nodes[4].inputs.value"] == [
        "node 'e' refers to node 'e', which is not upstream of it"
    ]


def test_transitive_upstream_reference_is_fine() -> None:
    raw = wf(
        [t("a"), t("b"), t("c", value="{{ nodes.a.output + nodes.b.output }}")],
        [{"source": "a", "target": "b"}, {"source": "b", "target": "c"}],
    )
    assert problems(raw) == []


def test_condition_when_is_a_bare_expression_and_is_checked() -> None:
    cond = {
        "id": "c",
        "type": "condition",
        "inputs": {
            "branches": [
                {"name": "a", "when": "nodes.later.output > 1"},
                {"name": "b", "when": "inputs.x >"},
            ]
        },
    }
    raw = wf([cond, t("later")], [{"source": "c", "target": "later", "branch": "a"}])
    found = by_path(raw)
    assert "not upstream" in found["nodes[0].inputs.branches[0].when"][0]
    assert found["nodes[0].inputs.branches[1].when"][0].startswith("syntax error in 'inputs.x >'")


def test_unknown_names_and_dynamic_node_access() -> None:
    raw = wf([t("a", value="{{ env.HOME }}"), t("b", value="{{ nodes[inputs.k].output }}")])
    found = by_path(raw)
    assert found["nodes[0].inputs.value"] == [
        "unknown name 'env' in '{{ env.HOME }}' (visible: inputs, nodes, vars, execution)"
    ]
    assert "refer to nodes as nodes.<id>" in found["nodes[1].inputs.value"][0]


def test_template_syntax_error_has_its_path() -> None:
    raw = wf([{"id": "a", "type": "echo", "inputs": {"deep": {"list": ["ok", "{{ 1 + }}"]}}}])
    assert codes(raw) == {("nodes[0].inputs.deep.list[1]", "syntax")}


def test_limits() -> None:
    many = wf([t(f"n{i}") for i in range(5)])
    assert codes_with(many, Limits(max_nodes=4)) == {("nodes", "limit")}
    big = wf([t("a", value="{{ '" + "x" * 100 + "' }}")])
    assert codes_with(big, Limits(max_expression_bytes=64)) == {("nodes[0].inputs.value", "limit")}


def codes_with(raw: Any, limits: Limits) -> set[tuple[str, str]]:
    return {(p.path, p.code) for p in problems(raw, limits)}


def test_input_schema_must_be_a_valid_json_schema() -> None:
    raw = wf([t("a")], input_schema={"type": "object", "properties": {"n": {"type": "integr"}}})
    found = [p for p in problems(raw) if p.code == "invalid_schema"]
    assert len(found) == 1
    assert found[0].path.startswith("input_schema")


def test_retry_and_timeout_fields_are_validated() -> None:
    raw = wf([{"id": "a", "type": "echo", "timeout": 0, "retry": {"attempts": 0}, "retries": 3}])
    found = codes(raw)
    assert ("nodes[0].timeout", "invalid") in found
    assert ("nodes[0].retry.attempts", "invalid") in found
    assert ("nodes[0].retries", "invalid") in found


def test_every_problem_is_reported_at_once() -> None:
    """The acceptance case: a cycle, an unknown type, a dangling edge and a bad reference."""
    raw = wf(
        [
            t("a"),
            t("b"),
            {"id": "c", "type": "teleport"},
            t("d", value="{{ nodes.zzz.output }}"),
        ],
        [
            {"source": "a", "target": "b"},
            {"source": "b", "target": "a"},
            {"source": "a", "target": "nowhere"},
        ],
    )
    with pytest.raises(DefinitionError) as info:
        validate_definition(raw, REGISTRY, ENGINE)
    assert {(p.path, p.code) for p in info.value.problems} == {
        ("edges[1]", "cycle"),
        ("nodes[2].type", "unknown_type"),
        ("edges[2].target", "dangling_edge"),
        ("nodes[3].inputs.value", "bad_reference"),
    }
