"""Validation of execution variables (SPEC section 9) and of the inputs templates read
against ``input_schema``: each problem with its JSON path."""

from __future__ import annotations

from typing import Any

from workflow_engine.definition.expressions import ExpressionEngine
from workflow_engine.definition.validate import find_problems, inspect_definition
from workflow_engine.errors import Problem
from workflow_engine.nodes.registry import NodeRegistry

REGISTRY = NodeRegistry.with_builtins()
ENGINE = ExpressionEngine()


def problems(raw: Any) -> list[Problem]:
    return find_problems(raw, REGISTRY, ENGINE)


def warnings(raw: Any) -> list[Problem]:
    """What is likely a mistake but runs (an input read that the schema does not declare)."""
    return inspect_definition(raw, REGISTRY, ENGINE).warnings


def wf(
    nodes: list[dict[str, Any]], edges: tuple[tuple[str, str], ...] = (), **extra: Any
) -> dict[str, Any]:
    return {
        "id": "w",
        "nodes": nodes,
        "edges": [{"source": s, "target": t} for s, t in edges],
        **extra,
    }


def transform(node_id: str, value: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "transform", "inputs": {"value": value}}


def setter(node_id: str, values: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "set_variables", "inputs": {"values": values}}


def test_declared_variables_read_and_set_are_valid() -> None:
    raw = wf(
        [
            setter("s", {"total": "{{ vars.total + inputs.n }}", "tag": "x"}),
            transform("t", "{{ vars.total }} {{ vars['tag'] }} {{ vars }}"),
            {
                "id": "c",
                "type": "condition",
                "inputs": {"branches": [{"name": "big", "when": "vars.total > 10"}]},
            },
        ],
        (("s", "t"), ("t", "c")),
        variables={"total": 0, "tag": None},
    )
    assert problems(raw) == []


def test_reading_an_undeclared_variable_names_it_and_its_path() -> None:
    raw = wf(
        [
            transform("a", "{{ vars.totl }}"),
            {
                "id": "c",
                "type": "condition",
                "inputs": {"branches": [{"name": "x", "when": "vars['nope'] > 1"}]},
            },
        ],
        variables={"total": 0},
    )
    assert [(p.path, p.code) for p in problems(raw)] == [
        ("nodes[0].inputs.value", "unknown_variable"),
        ("nodes[1].inputs.branches[0].when", "unknown_variable"),
    ]
    assert problems(raw)[0].message == (
        "'{{ vars.totl }}' reads variable 'totl', which is not declared in variables "
        "(declared: total)"
    )


def test_without_variables_any_read_is_undeclared() -> None:
    found = problems(wf([transform("a", "{{ vars.x }}")]))
    assert [(p.path, p.code) for p in found] == [("nodes[0].inputs.value", "unknown_variable")]
    assert "(none is declared)" in found[0].message


def test_reading_vars_whole_or_by_a_computed_key_is_not_checked() -> None:
    raw = wf(
        [transform("a", "{{ vars[inputs.k] }} {{ vars | length }} {{ vars.get('x') }}")],
        variables={"x": 1},
    )
    assert problems(raw) == []


def test_setting_an_undeclared_variable_names_it_and_its_path() -> None:
    raw = wf([setter("s", {"total": 1, "totl": 2, "other": 3})], variables={"total": 0})
    assert [(p.path, p.code, p.message) for p in problems(raw)] == [
        (
            "nodes[0].inputs.values.totl",
            "unknown_variable",
            "sets variable 'totl', which is not declared in variables (declared: total)",
        ),
        (
            "nodes[0].inputs.values.other",
            "unknown_variable",
            "sets variable 'other', which is not declared in variables (declared: total)",
        ),
    ]


def test_set_variables_values_must_be_an_object_with_names() -> None:
    templated = problems(wf([setter("s", "{{ inputs.all }}")], variables={"a": 1}))
    assert [(p.path, p.code) for p in templated] == [("nodes[0].inputs.values", "invalid_inputs")]
    not_an_object = problems(wf([setter("s", [1])], variables={"a": 1}))
    assert [(p.path, p.code) for p in not_an_object] == [
        ("nodes[0].inputs.values", "invalid_inputs")
    ]
    missing = problems(wf([{"id": "s", "type": "set_variables"}], variables={"a": 1}))
    assert [(p.path, p.code) for p in missing] == [("nodes[0].inputs.values", "invalid_inputs")]


def test_variable_names_are_identifiers() -> None:
    found = problems(wf([transform("a", 1)], variables={"ok": 1, "not-ok": 2}))
    assert [(p.path, p.message) for p in found] == [
        (
            "variables['not-ok']",
            "invalid name 'not-ok': String should match pattern '^[A-Za-z_][A-Za-z0-9_]{0,63}$'",
        )
    ]


# -- inputs the templates read, against input_schema ------------------------------------------

SCHEMA = {"type": "object", "properties": {"total": {"type": "number"}}, "required": ["total"]}


def test_a_template_reading_an_undeclared_input_is_a_warning_with_its_path() -> None:
    """A warning, not a problem: SPEC section 2's own example reads ``inputs.base_url``,
    which its schema omits, and it must keep running."""
    raw = wf(
        [
            transform("a", "{{ inputs.totl }}"),
            transform("b", "{{ inputs.total }} {{ inputs['total'] }}"),
            {
                "id": "c",
                "type": "condition",
                "inputs": {"branches": [{"name": "x", "when": "inputs.nope > 1"}]},
            },
        ],
        input_schema=SCHEMA,
    )
    assert problems(raw) == []
    found = warnings(raw)
    assert [(p.path, p.code) for p in found] == [
        ("nodes[0].inputs.value", "unknown_input"),
        ("nodes[2].inputs.branches[0].when", "unknown_input"),
    ]
    assert found[0].message == (
        "'{{ inputs.totl }}' reads unknown input 'totl': input_schema does not declare it "
        "(declared: total)"
    )


def test_inputs_are_open_without_properties_or_with_additional_properties() -> None:
    reads = [transform("a", "{{ inputs.anything }}")]
    assert warnings(wf(reads)) == []
    assert warnings(wf(reads, input_schema={"type": "object"})) == []
    open_schema = {**SCHEMA, "additionalProperties": True}
    assert warnings(wf(reads, input_schema=open_schema)) == []
    typed_extras = {**SCHEMA, "additionalProperties": {"type": "string"}}
    assert warnings(wf(reads, input_schema=typed_extras)) == []
    closed = {**SCHEMA, "additionalProperties": False}
    assert [p.code for p in warnings(wf(reads, input_schema=closed))] == ["unknown_input"]


def test_pattern_properties_declare_the_names_they_match() -> None:
    schema = {**SCHEMA, "patternProperties": {"^x_": {"type": "string"}}}
    raw = wf([transform("a", "{{ inputs.x_one }} {{ inputs.y }}")], input_schema=schema)
    found = warnings(raw)
    assert [(p.path, p.code) for p in found] == [("nodes[0].inputs.value", "unknown_input")]
    assert "input 'y'" in found[0].message
    assert "(declared: total, /^x_/)" in found[0].message


def test_method_calls_on_inputs_are_not_reads() -> None:
    raw = wf([transform("a", "{{ inputs.get('total', 0) }}")], input_schema=SCHEMA)
    assert problems(raw) == []
