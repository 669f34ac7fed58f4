from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workflow_engine.definition.expressions import ExpressionEngine, Scope
from workflow_engine.errors import ExpressionError

ENGINE = ExpressionEngine()


def scope(**inputs: Any) -> Scope:
    nodes = {"a": {"status": "completed", "output": {"total": 150, "items": [1, 2]}, "error": None}}
    return ENGINE.scope(inputs=inputs, nodes=nodes, execution={"id": "exec_1"})


def resolve(value: Any, s: Scope | None = None) -> Any:
    resolver = ENGINE.compile_value(value)
    return value if resolver is None else resolver(s or scope())


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ nodes.a.output }}", {"total": 150, "items": [1, 2]}),
        ("{{ nodes.a.output.total }}", 150),
        ("{{ nodes.a.output.total > 100 }}", True),
        ("{{ none }}", None),
        ("{{ 1.5 }}", 1.5),
        ("{{ nodes.a.output['items'] }}", [1, 2]),
        ("{{ nodes.a.output.items | map('string') }}", ["1", "2"]),
        ("{{ (1, 2) }}", [1, 2]),
        ("{{- nodes.a.output.total -}}", 150),
    ],
)
def test_a_lone_expression_keeps_its_native_type(template: str, expected: Any) -> None:
    assert resolve(template) == expected


def test_mixed_text_renders_a_string() -> None:
    assert resolve("total={{ nodes.a.output.total }}!") == "total=150!"
    assert resolve("{{ 1 }}{{ 2 }}") == "12"
    assert resolve(" {{ 1 }}") == " 1"


def test_nested_structures_resolve_recursively_and_literals_stay() -> None:
    value = {"a": ["x", "{{ inputs.n * 2 }}", {"b": "{{ inputs.n }}-{{ inputs.n }}"}], "c": 3}
    assert resolve(value, scope(n=4)) == {"a": ["x", 8, {"b": "4-4"}], "c": 3}


def test_untemplated_values_compile_to_nothing() -> None:
    assert ENGINE.compile_value({"a": [1, "plain", {"b": None}]}) is None


def test_mapping_keys_win_over_dict_methods() -> None:
    s = ENGINE.scope(inputs={"items": [1, 2], "keys": "k", "values": 3}, nodes={}, execution={})
    assert resolve("{{ inputs.items }}", s) == [1, 2]
    assert resolve("{{ inputs.keys }}", s) == "k"
    assert resolve("{{ inputs.values + 1 }}", s) == 4


def test_dict_methods_still_work_when_no_key_shadows_them() -> None:
    s = ENGINE.scope(inputs={"d": {"x": 1}}, nodes={}, execution={})
    assert resolve("{{ inputs.d.items() | list }}", s) == [["x", 1]]


def test_missing_value_fails_with_path_and_expression() -> None:
    resolver = ENGINE.compile_value({"url": "{{ inputs.base_url }}/x"})
    assert resolver is not None
    with pytest.raises(ExpressionError) as info:
        resolver(scope())
    message = str(info.value)
    assert "input 'url'" in message
    assert "'{{ inputs.base_url }}/x'" in message
    assert "base_url" in message


def test_default_filter_rescues_a_missing_value() -> None:
    assert resolve("{{ inputs.missing | default('fallback') }}") == "fallback"


@pytest.mark.parametrize(
    "template",
    [
        "{{ inputs.__class__ }}",
        "{{ ''.__class__.__mro__ }}",
        "{{ nodes.a.output['items'].append(3) }}",
        "{{ 'x' * 100000000 }}",
        "{{ 10 ** 100000 }}",
        "{{ range(10**9) | list }}",
    ],
)
def test_the_sandbox_refuses(template: str) -> None:
    with pytest.raises(ExpressionError):
        resolve(template)


def test_no_environment_or_files_are_reachable() -> None:
    for template in ("{{ env }}", "{{ os }}", "{{ config }}", "{{ request }}", "{{ self }}"):
        with pytest.raises(ExpressionError):
            resolve(template)


def test_non_json_results_are_refused() -> None:
    with pytest.raises(ExpressionError, match="no JSON form"):
        resolve("{{ cycler(1, 2) }}")


def test_bare_expressions_and_braced_ones_evaluate_alike() -> None:
    s = scope()
    assert ENGINE.evaluate("nodes.a.output.total > 100", s) is True
    assert ENGINE.evaluate("{{ nodes.a.output.total > 200 }}", s) is False


def test_compiled_templates_are_cached() -> None:
    engine = ExpressionEngine()
    engine.compile_value("{{ inputs.x }}")
    engine.compile_value("{{ inputs.x }}")
    info = engine.compile_expression.cache_info()  # type: ignore[attr-defined]
    assert (info.hits, info.misses) == (1, 1)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=5), children, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_any_json_value_round_trips_through_a_lone_expression(value: Any) -> None:
    s = ENGINE.scope(inputs={"v": value}, nodes={}, execution={})
    assert resolve("{{ inputs.v }}", s) == value
