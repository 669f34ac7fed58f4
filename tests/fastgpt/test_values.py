"""FastGPT's value rules, pinned case by case against its TypeScript (``labring/FastGPT``):
``packages/global/core/workflow/runtime/utils.ts`` (``getReferenceVariableValue``,
``formatVariableValByType``, ``valueTypeFormat``), ``packages/service/common/string/
replaceVariable.ts`` (``valToStr``, ``replaceVariable``) and ``packages/service/core/workflow/
dispatch/utils/replaceEditorVariable.ts``; the JavaScript built-ins (``String``, ``Number``,
``JSON.stringify``) by ECMAScript."""

from __future__ import annotations

import copy
import math
import pickle
from collections.abc import Mapping
from typing import Any

import pytest

from workflow_engine.fastgpt.values import (
    UNDEFINED,
    VARIABLE_NODE_ID,
    Undefined,
    format_by_type,
    is_reference,
    js_json,
    js_number,
    js_string,
    js_trim,
    js_truthy,
    replace_editor_variables,
    replace_variables,
    resolve_reference,
    val_to_str,
    value_type_format,
)


class FakeGraph:
    """A ``GraphView`` over ``{node_id: {"outputs": {id: (value, type)}, "inputs": {key: v}}}``."""

    def __init__(self, nodes: Mapping[str, Mapping[str, Any]]) -> None:
        self.nodes = nodes

    def has_node(self, node_id: str) -> bool:
        return node_id in self.nodes

    def output(self, node_id: str, output_id: str) -> Any:
        return self._output(node_id, output_id)[0]

    def output_type(self, node_id: str, output_id: str) -> str | None:
        return self._output(node_id, output_id)[1]

    def input(self, node_id: str, key: str) -> Any:
        return self.nodes.get(node_id, {}).get("inputs", {}).get(key, UNDEFINED)

    def _output(self, node_id: str, output_id: str) -> tuple[Any, str | None]:
        outputs = self.nodes.get(node_id, {}).get("outputs", {})
        return outputs.get(output_id, (UNDEFINED, None))  # type: ignore[no-any-return]


GRAPH = FakeGraph(
    {
        "start": {"outputs": {"userChatInput": ("hi", "string"), "files": (["a", "b"], None)}},
        "http": {
            "outputs": {
                "count": ("7", "number"),
                "flag": ([], "boolean"),
                "obj": ({"k": 1}, "object"),
                "notObj": ("text", "object"),
                "list": ([1, 2], "arrayNumber"),
                "notList": ("x", "arrayString"),
                "none": (None, "string"),
                "empty": (UNDEFINED, "string"),
                "float": (2.0, None),
            },
            "inputs": {"city": ["start", "userChatInput"], "plain": "Paris"},
        },
        "loop": {"outputs": {"self": ("again {{$loop.self$}}", "string")}},
    }
)
VARIABLES: dict[str, Any] = {"name": "Ann", "age": 3, "nothing": None, "gone": UNDEFINED}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (UNDEFINED, "undefined"),
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (1, "1"),
        (1.0, "1"),
        (1.5, "1.5"),
        (-0.0, "0"),
        (0.1 + 0.2, "0.30000000000000004"),
        (math.nan, "NaN"),
        (math.inf, "Infinity"),
        (-math.inf, "-Infinity"),
        (1e21, "1e+21"),
        (123456789012345680000.0, "123456789012345680000"),
        (10**22, "1e+22"),
        (1e-7, "1e-7"),
        (0.000001, "0.000001"),
        (2.5e-10, "2.5e-10"),
        ("text", "text"),
        ([1, None, UNDEFINED, [2, 3.0], "x"], "1,,,2,3,x"),
        ([], ""),
        ({"a": 1}, "[object Object]"),
        ([{"a": 1}], "[object Object]"),
    ],
)
def test_js_string_is_javascripts_string(value: Any, expected: str) -> None:
    assert js_string(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"a": 1, "b": [1, 2]}, '{"a":1,"b":[1,2]}'),
        ({"a": UNDEFINED, "b": None}, '{"b":null}'),
        ([UNDEFINED, None, math.nan, math.inf], "[null,null,null,null]"),
        ({"x": 1.0, "y": 1e21}, '{"x":1,"y":1e+21}'),
        ({"b": 1, "10": 2, "2": 3, "01": 4}, '{"2":3,"10":2,"b":1,"01":4}'),
        ({"s": 'é "q"\n'}, '{"s":"é \\"q\\"\\n"}'),
        ({1: "a"}, '{"1":"a"}'),
        ("plain", '"plain"'),
        (True, "true"),
    ],
)
def test_js_json_is_compact_json_stringify(value: Any, expected: str) -> None:
    assert js_json(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", 0.0),
        ("  12  ", 12.0),
        ("\u3000 7\ufeff", 7.0),
        ("1e3", 1000.0),
        (".5", 0.5),
        ("5.", 5.0),
        ("+5", 5.0),
        ("0x1F", 31.0),
        ("0b101", 5.0),
        ("0o17", 15.0),
        ("Infinity", math.inf),
        ("-Infinity", -math.inf),
        (None, 0.0),
        (True, 1.0),
        (False, 0.0),
        ([], 0.0),
        (["5"], 5.0),
        (3, 3.0),
    ],
)
def test_js_number_parses_like_number(value: Any, expected: float) -> None:
    assert js_number(value) == expected


@pytest.mark.parametrize(
    "value",
    ["abc", "12abc", "inf", "nan", "infinity", "1_000", "-0x1", "0x", UNDEFINED, {}, [1, 2]],
)
def test_js_number_is_nan_where_javascript_gives_nan(value: Any) -> None:
    assert math.isnan(js_number(value))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (UNDEFINED, False),
        (None, False),
        (0, False),
        (math.nan, False),
        ("", False),
        ([], True),
        ({}, True),
        ("0", True),
        (-1, True),
    ],
)
def test_js_truthy_treats_empty_lists_and_objects_as_true(value: Any, expected: bool) -> None:
    assert js_truthy(value) is expected


def test_js_trim_uses_javascripts_whitespace() -> None:
    assert js_trim("\ufeff\u3000 a \u00a0\n") == "a"
    assert js_trim("\x1ca\x85") == "\x1ca\x85"


def test_undefined_is_a_falsy_singleton() -> None:
    assert Undefined() is UNDEFINED
    assert not UNDEFINED
    assert repr(UNDEFINED) == "UNDEFINED"
    assert copy.deepcopy(UNDEFINED) is UNDEFINED
    assert pickle.loads(pickle.dumps(UNDEFINED)) is UNDEFINED


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (UNDEFINED, ""),
        (None, "null"),
        ({"a": [1, 2.0]}, '{"a":[1,2]}'),
        ([1, "x"], '[1,"x"]'),
        (1.0, "1"),
        (True, "true"),
        ("text", "text"),
    ],
)
def test_val_to_str_renders_undefined_empty_and_null_as_null(value: Any, expected: str) -> None:
    assert val_to_str(value) == expected


@pytest.mark.parametrize(
    ("value", "value_type", "expected"),
    [
        ("x", None, "x"),
        (UNDEFINED, None, UNDEFINED),
        (None, "any", UNDEFINED),
        (None, "string", UNDEFINED),
        ("a", "arrayString", UNDEFINED),
        (["a"], "arrayString", ["a"]),
        ([], "boolean", True),
        ("", "boolean", False),
        ("0", "boolean", True),
        ("7", "number", 7),
        ("1.5", "number", 1.5),
        ("", "number", 0),
        ({"a": 1}, "string", '{"a":1}'),
        (2.0, "string", "2"),
        ("x", "object", UNDEFINED),
        (1, "selectApp", UNDEFINED),
        ({"a": 1}, "object", {"a": 1}),
        ([1], "object", [1]),
        ("x", "chatHistory", "x"),
    ],
)
def test_format_by_type_is_format_variable_val_by_type(
    value: Any, value_type: str | None, expected: Any
) -> None:
    assert _same(format_by_type(value, value_type), expected)


def test_format_by_type_number_gives_nan_for_text() -> None:
    assert math.isnan(format_by_type("abc", "number"))


@pytest.mark.parametrize(
    ("value", "value_type", "expected"),
    [
        (UNDEFINED, "string", UNDEFINED),
        (None, "number", None),
        ({"a": 1}, None, {"a": 1}),
        (5, "any", 5),
        ("5", "string", "5"),
        (5, "string", "5"),
        (5.0, "string", "5"),
        ({"a": 1}, "string", '{"a":1}'),
        (True, "string", "true"),
        ("", "number", None),
        ("12", "number", 12),
        (" 1.5 ", "number", 1.5),
        (True, "number", 1),
        ("TRUE", "boolean", True),
        ("yes", "boolean", False),
        (0, "boolean", False),
        ([], "boolean", True),
        ("{a: 1, 'b': [2,],}", "object", {"a": 1, "b": [2]}),
        ('  {"a": 1}  ', "object", {"a": 1}),
        ("[1, 2]", "object", [1, 2]),
        ("{broken", "object", {}),
        ("not json", "object", {}),
        (5, "object", {}),
        ([1], "object", [1]),
        ("[1, 'two']", "arrayAny", [1, "two"]),
        ('{"a": 1}', "arrayObject", {"a": 1}),
        ("plain", "arrayString", ["plain"]),
        ("true", "arrayString", ["true"]),
        (5, "arrayNumber", [5]),
        ("[{obj: 1}]", "chatHistory", [{"obj": 1}]),
        (3, "chatHistory", 3),
        ("nope", "chatHistory", []),
        ("nope", "datasetQuote", []),
        ({"a": 1}, "selectApp", {"a": 1}),
        ("nope", "selectApp", []),
        ("x", "dynamic", "x"),
    ],
)
def test_value_type_format_is_value_type_format(
    value: Any, value_type: str | None, expected: Any
) -> None:
    assert _same(value_type_format(value, value_type), expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["node", "out"], True),
        (("node", "out"), True),
        (["node", 3], True),
        ([1, "out"], False),
        (["a", "b", "c"], False),
        ("node.out", False),
        ([["a", "b"]], False),
    ],
)
def test_is_reference_is_a_pair_starting_with_text(value: Any, expected: bool) -> None:
    assert is_reference(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([VARIABLE_NODE_ID, "name"], "Ann"),
        ([VARIABLE_NODE_ID, "missing"], UNDEFINED),
        ([VARIABLE_NODE_ID, ""], UNDEFINED),
        ([VARIABLE_NODE_ID, "nothing"], None),
        (["start", "userChatInput"], "hi"),
        (["start", "nope"], UNDEFINED),
        (["http", "count"], "7"),
        (["ghost", "out"], ["ghost", "out"]),
        ([["start", "userChatInput"], ["start", "files"]], ["hi", "a", "b"]),
        ([["start", "nope"], [VARIABLE_NODE_ID, "age"]], [3]),
        ([[VARIABLE_NODE_ID, "nothing"]], [None]),
        ([["ghost", "x"], ["start", "userChatInput"]], ["ghost", "x", "hi"]),
        ([["start", "userChatInput"], "loose"], [["start", "userChatInput"], "loose"]),
        ([], []),
        ("", ""),
        (0, 0),
        (None, None),
        (UNDEFINED, UNDEFINED),
        ("text", "text"),
    ],
)
def test_resolve_reference_is_get_reference_variable_value(value: Any, expected: Any) -> None:
    assert _same(resolve_reference(value, GRAPH, VARIABLES), expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hi {{name}}!", "Hi Ann!"),
        ("{{name}}{{name}}", "AnnAnn"),
        ("{{unknown}} stays", "{{unknown}} stays"),
        ("[{{gone}}]", "[]"),
        ("{{nothing}}", "null"),
        ("{{obj}}", '{"k":[1,2]}'),
        ("{{num}}", "2"),
        ("{{outer}}", "<Ann>"),
        ("{{me}}", "{{me}}"),
        ("{{ name }}", "{{ name }}"),
        ("{{$node.out$}}", "{{$node.out$}}"),
        ("", ""),
    ],
)
def test_replace_variables_replaces_only_present_keys(text: str, expected: str) -> None:
    variables = {
        **VARIABLES,
        "obj": {"k": [1, 2]},
        "num": 2.0,
        "outer": "<{{name}}>",
        "me": "loop {{me}}",
    }
    assert replace_variables(text, variables) == expected


@pytest.mark.parametrize("text", [None, 5, ["{{name}}"], {"a": "{{name}}"}, UNDEFINED])
def test_replace_variables_returns_non_text_unchanged(text: Any) -> None:
    assert replace_variables(text, VARIABLES) is text


def test_replace_variables_stops_after_ten_more_passes() -> None:
    chain = {f"v{i}": f"{{{{v{i + 1}}}}}" for i in range(1, 13)} | {"v13": "end"}
    assert replace_variables("{{v1}}", chain) == "{{v12}}"
    assert replace_variables("{{v3}}", chain) == "end"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{$start.userChatInput$}}", "hi"),
        ("{{$VARIABLE_NODE_ID.name$}} and {{name}}", "Ann and Ann"),
        ("{{$VARIABLE_NODE_ID.missing$}}|", "|"),
        ("{{$http.count$}}", "7"),
        ("{{$http.flag$}}", "true"),
        ("{{$http.obj$}}", '{"k":1}'),
        ("[{{$http.notObj$}}]", "[]"),
        ("{{$http.list$}}", "[1,2]"),
        ("[{{$http.notList$}}]", "[]"),
        ("[{{$http.none$}}]", "[]"),
        ("[{{$http.empty$}}]", "[]"),
        ("{{$http.float$}}", "2"),
        ("{{$start.files$}}", '["a","b"]'),
        ("{{$http.city$}}", "hi"),
        ("{{$http.plain$}}", "Paris"),
        ("[{{$http.neither$}}]", "[]"),
        ("[{{$ghost.out$}}]", "[]"),
        ("{{$loop.self$}}", "{{$loop.self$}}"),
        ("{{unknown}} {{$start.userChatInput$}}", "{{unknown}} hi"),
        ("no placeholders", "no placeholders"),
        ("", ""),
    ],
)
def test_replace_editor_variables_is_replace_editor_variable(text: str, expected: str) -> None:
    assert replace_editor_variables(text, GRAPH, VARIABLES) == expected


def test_replace_editor_variables_runs_the_legacy_pass_before_node_references() -> None:
    variables = {"which": "{{$start.userChatInput$}}"}
    assert replace_editor_variables("<{{which}}>", GRAPH, variables) == "<hi>"


def test_replace_editor_variables_follows_references_values_bring() -> None:
    graph = FakeGraph(
        {
            "a": {"outputs": {"text": ("A({{$b.text$}}) {{name}}", "string")}},
            "b": {"outputs": {"text": ("B", "string")}},
        }
    )
    assert replace_editor_variables("{{$a.text$}}", graph, VARIABLES) == "A(B) Ann"


def test_replace_editor_variables_stops_after_ten_more_passes() -> None:
    outputs = {f"o{i}": (f"{{{{$n.o{i + 1}$}}}}", "string") for i in range(1, 14)}
    graph = FakeGraph({"n": {"outputs": outputs}})
    assert replace_editor_variables("{{$n.o1$}}", graph, {}) == "{{$n.o12$}}"


def test_replace_editor_variables_ignores_the_current_node_id() -> None:
    text = "{{$http.plain$}}"
    assert replace_editor_variables(text, GRAPH, VARIABLES, current_node_id="http") == "Paris"


@pytest.mark.parametrize("text", [None, 5, ["{{$start.userChatInput$}}"], {"a": 1}])
def test_replace_editor_variables_returns_non_text_unchanged(text: Any) -> None:
    assert replace_editor_variables(text, GRAPH, VARIABLES) is text


def _same(actual: Any, expected: Any) -> bool:
    """Equal, with UNDEFINED compared by identity and bools/ints kept apart."""
    if expected is UNDEFINED or actual is UNDEFINED:
        return actual is expected
    return type(actual) is type(expected) and bool(actual == expected)
