"""Validation of ``loop`` bodies: a workflow of their own, with paths under
``nodes[i].inputs.body``; ``item``/``index`` only inside a body."""

from __future__ import annotations

from typing import Any

from tests.definition.test_validate import codes, problems, t, wf
from workflow_engine.definition.validate import Limits


def loop(body: Any, node_id: str = "loop", **inputs: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "loop", "inputs": {"items": [1, 2], "body": body, **inputs}}


def body(
    nodes: list[dict[str, Any]], edges: list[dict[str, Any]] | None = None, output: str = "x"
) -> dict[str, Any]:
    return {"nodes": nodes, "edges": edges or [], "output": output}


def edge(source: str, target: str) -> dict[str, str]:
    return {"source": source, "target": target}


def test_a_valid_loop_passes() -> None:
    definition = wf(
        [
            t("up"),
            loop(
                body(
                    [
                        t("x", value="{{ item }}-{{ index }}-{{ nodes.up.output }}"),
                        t("y", value="{{ nodes.x.output }}"),
                    ],
                    [edge("x", "y")],
                    output="y",
                ),
                items="{{ nodes.up.output }}",
            ),
            t("after", value="{{ nodes.loop.output }}"),
        ],
        [edge("up", "loop"), edge("loop", "after")],
    )
    assert problems(definition) == []


def test_body_problems_have_paths_inside_the_body() -> None:
    definition = wf(
        [
            t("a"),
            t("b"),
            loop(
                body(
                    [
                        t("x"),
                        {"id": "x", "type": "transform"},
                        {"id": "z", "type": "nope"},
                        {"id": "w", "type": "transform", "retries": 3},
                    ],
                    [edge("x", "q"), edge("x", "x")],
                    output="missing",
                )
            ),
        ]
    )
    assert codes(definition) == {
        ("nodes[2].inputs.body.nodes[1].id", "duplicate_id"),
        ("nodes[2].inputs.body.nodes[2].type", "unknown_type"),
        ("nodes[2].inputs.body.nodes[3].retries", "invalid"),
        ("nodes[2].inputs.body.edges[0].target", "dangling_edge"),
        ("nodes[2].inputs.body.edges[1]", "self_edge"),
        ("nodes[2].inputs.body.output", "dangling_output"),
    }


def test_cycles_and_inputs_inside_the_body() -> None:
    definition = wf(
        [
            loop(
                body(
                    [t("x"), t("y"), {"id": "h", "type": "http", "inputs": {"method": 5}}],
                    [edge("x", "y"), edge("y", "x")],
                )
            )
        ]
    )
    found = codes(definition)
    assert ("nodes[0].inputs.body.edges[1]", "cycle") in found
    assert any(p == "nodes[0].inputs.body.nodes[2].inputs.method" for p, _ in found)


def test_body_references_name_body_nodes_upstream_or_nodes_upstream_of_the_loop() -> None:
    definition = wf(
        [
            t("up"),
            t("beside"),
            loop(
                body(
                    [
                        t("x", value="{{ nodes.y.output }}"),
                        t("y", value="{{ nodes.up.output }}"),
                        t("z", value="{{ nodes.beside.output }}{{ nodes.ghost.output }}"),
                        t("w", value="{{ nodes.loop.output }}"),
                    ]
                )
            ),
        ],
        [edge("up", "loop")],
    )
    messages = {(p.path, p.message) for p in problems(definition)}
    assert messages == {
        (
            "nodes[2].inputs.body.nodes[0].inputs.value",
            "node 'x' refers to node 'y', which is not upstream of it",
        ),
        (
            "nodes[2].inputs.body.nodes[2].inputs.value",
            "node 'z' refers to node 'beside', which is not upstream of loop 'loop'",
        ),
        ("nodes[2].inputs.body.nodes[2].inputs.value", "reference to unknown node 'ghost'"),
        (
            "nodes[2].inputs.body.nodes[3].inputs.value",
            "node 'w' refers to node 'loop', which is not upstream of loop 'loop'",
        ),
    }


def test_item_and_index_are_visible_only_inside_a_body() -> None:
    definition = wf([t("a", value="{{ item }}"), loop(body([t("x", value="{{ index }}")]))])
    assert [(p.path, p.message) for p in problems(definition)] == [
        ("nodes[0].inputs.value", "'item' in '{{ item }}' is only visible inside a loop body")
    ]
    # nor in the loop's own inputs: they are rendered outside the body
    assert codes(wf([loop(body([t("x")]), items="{{ item }}")])) == {
        ("nodes[0].inputs.items", "unknown_name")
    }


def test_the_body_must_be_an_object_and_name_its_output() -> None:
    assert codes(wf([loop("{{ inputs.graph }}")])) == {("nodes[0].inputs.body", "invalid_inputs")}
    found = codes(wf([loop({"nodes": [], "output": "x", "extra": 1})]))
    assert ("nodes[0].inputs.body.nodes", "invalid_inputs") in found
    assert ("nodes[0].inputs.body.extra", "invalid_inputs") in found
    assert codes(wf([loop({"nodes": [t("x")]})])) == {
        ("nodes[0].inputs.body.output", "invalid_inputs")
    }


def test_variables_inside_a_body_are_read_not_set() -> None:
    definition = wf(
        [
            loop(
                body(
                    [
                        t("x", value="{{ vars.seen }}{{ vars.nope }}"),
                        {"id": "s", "type": "set_variables", "inputs": {"values": {"seen": 1}}},
                    ]
                )
            )
        ],
        variables={"seen": 0},
    )
    assert codes(definition) == {
        ("nodes[0].inputs.body.nodes[0].inputs.value", "unknown_variable"),
        ("nodes[0].inputs.body.nodes[1].type", "unsupported"),
    }


def test_nested_loops_see_the_enclosing_bodies() -> None:
    inner = loop(
        body(
            [t("deep", value="{{ item }}{{ nodes.first.output }}{{ nodes.top.output }}")],
            output="deep",
        ),
        node_id="inner",
    )
    definition = wf(
        [
            t("top"),
            loop(
                body([t("first"), inner], [edge("first", "inner")], output="inner"), node_id="outer"
            ),
        ],
        [edge("top", "outer")],
    )
    assert problems(definition) == []
    inner_bad = loop(
        body([t("deep", value="{{ nodes.late.output }}")], output="deep"), node_id="inner"
    )
    definition = wf([loop(body([inner_bad, t("late")], output="inner"), node_id="outer")])
    assert [p.path for p in problems(definition)] == [
        "nodes[0].inputs.body.nodes[0].inputs.body.nodes[0].inputs.value"
    ]


def test_a_body_has_the_node_limit_too() -> None:
    found = problems(
        wf([loop(body([t(f"n{i}") for i in range(3)], output="n0"))]), Limits(max_nodes=2)
    )
    assert [(p.path, p.code) for p in found] == [("nodes[0].inputs.body.nodes", "limit")]


def test_max_items_cannot_be_raised_past_ten_thousand() -> None:
    """Every iteration's node results are stored: a tenant may not ask for a billion."""
    from workflow_engine.definition.expressions import ExpressionEngine
    from workflow_engine.definition.validate import find_problems
    from workflow_engine.nodes.registry import NodeRegistry

    body = {"nodes": [{"id": "c", "type": "echo", "inputs": {}}], "edges": [], "output": "c"}
    raw = {
        "id": "big",
        "nodes": [
            {
                "id": "loop",
                "type": "loop",
                "inputs": {"items": [1], "body": body, "max_items": 1_000_000_000},
            }
        ],
    }
    found = find_problems(raw, NodeRegistry.default(), ExpressionEngine())
    assert [p.path for p in found] == ["nodes[0].inputs.max_items"]
