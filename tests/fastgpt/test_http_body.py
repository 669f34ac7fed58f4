"""FastGPT's HTTP node body templating and output picking, pinned against
``packages/service/core/workflow/dispatch/utils/replaceJsonBodyString.ts`` and
``packages/service/core/workflow/dispatch/tools/http468.ts`` (``labring/FastGPT``); several
cases are FastGPT's own ``replaceJsonBodyString`` vitest cases."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fastgpt.test_values import FakeGraph
from workflow_engine.fastgpt.http_body import (
    InvalidJsonBody,
    body_value_text,
    pick_outputs,
    replace_json_body,
    replace_json_body_text,
)
from workflow_engine.fastgpt.values import UNDEFINED

GRAPH = FakeGraph(
    {
        "node1": {
            "outputs": {
                "output1": ("Hello World", "string"),
                "output2": (42, "number"),
                "output4": ({"nested": "value"}, "object"),
                "output5": ([1, 2, 3], "arrayNumber"),
                "loop": ("see {{node1.loop}}", "string"),
            },
            "inputs": {"city": "Paris"},
        }
    }
)
VARIABLES: dict[str, Any] = {
    "undefinedVar": UNDEFINED,
    "nullVar": None,
    "userName": "John Doe",
    "userAge": 30,
    "isActive": True,
    "falseBool": False,
    "userProfile": {"name": "John", "email": "john@example.com"},
    "tags": ["developer", "tester"],
    "quoted": 'say "hi"\n',
    "numberText": "12345",
    "objectText": '{"key":"value"}',
    "plain": "not json",
    "word": "undefined",
    "selfRef": "{{selfRef}}",
    "circularA": "{{circularB}}",
    "circularB": "{{circularA}}",
}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"name": "{{undefinedVar}}"}', '{"name": ""}'),
        (
            '{"name": "{{userName}}", "greeting": "Hello {{userName}}"}',
            '{"name": "John Doe", "greeting": "Hello John Doe"}',
        ),
        (
            '{"age": {{userAge}}, "calculation": "{{userAge}} years old"}',
            '{"age": 30, "calculation": "30 years old"}',
        ),
        (
            '{"active": {{isActive}}, "inactive": {{falseBool}}, "status": "User is {{isActive}}"}',
            '{"active": true, "inactive": false, "status": "User is true"}',
        ),
        (
            '{"tags": {{tags}}, "nodeOutput": "{{$node1.output1$}}", '
            '"numbers": {{$node1.output5$}}}',
            '{"tags": ["developer","tester"], "nodeOutput": "Hello World", "numbers": [1,2,3]}',
        ),
        (
            '{"nullVar": {{nullVar}}, "undefinedVar": {{undefinedVar}}}',
            '{"nullVar": null, "undefinedVar": null}',
        ),
        (
            '{"missing": "{{nonExistentVar}}", "raw": {{nonExistentVar}}}',
            '{"missing": "", "raw": }',
        ),
        (
            '{"raw": {{nonExistentVar}}, "missing": "{{nonExistentVar}}"}',
            '{"raw": null, "missing": "null"}',
        ),
        ('{"static": "value", "number": 123}', '{"static": "value", "number": 123}'),
        ("", ""),
        (
            '{"p": "{{userProfile}}"}',
            '{"p": "{\\"name\\":\\"John\\",\\"email\\":\\"john@example.com\\"}"}',
        ),
        (
            '{"profile": {{userProfile}}, "info": "Profile: {{userProfile}}"}',
            '{"profile": {"name":"John","email":"john@example.com"}, '
            '"info": "Profile: {"name":"John","email":"john@example.com"}"}',
        ),
        ('{"q": "{{quoted}}"}', '{"q": "say \\"hi\\"\\n"}'),
        ('{"q": {{quoted}}}', '{"q": say \\"hi\\"\\n}'),
        ('{"n": {{numberText}}, "s": "{{numberText}}"}', '{"n": 12345, "s": "12345"}'),
        ('{"o": {{objectText}}}', '{"o": {"key":"value"}}'),
        ('{"t": {{plain}}}', '{"t": not json}'),
        ('{"w": {{word}}}', '{"w":null}'),
        ('{"a": "x \\" {{userName}}", "b": {{userAge}}}', '{"a": "x \\" John Doe", "b": 30}'),
        ('{"n": {{$node1.output2$}}, "c": "{{$node1.city$}}"}', '{"n": 42, "c": "Paris"}'),
        ('{"o": {{$node1.output4$}}}', '{"o": {"nested":"value"}}'),
        ('{"g": "{{$ghost.out$}}", "h": {{$ghost.out$}}}', '{"g": "", "h": }'),
        ('{"l": "{{$node1.loop$}}"}', '{"l": ""}'),
        ('{"self": "{{selfRef}}"}', '{"self": "{{selfRef}}"}'),
        ('{"c": "{{circularA}}"}', '{"c": "{{circularB}}"}'),
    ],
)
def test_replace_json_body_text_is_replace_json_body_string(body: str, expected: str) -> None:
    assert replace_json_body_text(body, GRAPH, VARIABLES) == expected


def test_replace_json_body_text_stops_after_ten_more_passes() -> None:
    chain = {f"level{i}": f"{{{{level{i + 1}}}}}" for i in range(1, 12)} | {"level12": "final"}
    assert (
        replace_json_body_text('{"deep": "{{level1}}"}', GRAPH, chain) == '{"deep": "{{level12}}"}'
    )
    assert replace_json_body_text('{"deep": "{{level3}}"}', GRAPH, chain) == '{"deep": "final"}'


def test_replace_json_body_text_keeps_a_hostile_value_inside_its_string() -> None:
    variables = {"inject": '", "admin": true, "x": "', "regex": ".*+?^${}()|[]\\"}
    text = replace_json_body_text('{"a": "{{inject}}", "b": "{{regex}}"}', GRAPH, variables)
    assert json.loads(text) == {"a": '", "admin": true, "x": "', "b": ".*+?^${}()|[]\\"}


@pytest.mark.parametrize(
    ("value", "quoted", "expected"),
    [
        (UNDEFINED, True, ""),
        (UNDEFINED, False, "null"),
        (None, True, ""),
        (None, False, "null"),
        ({"a": "b"}, True, '{\\"a\\":\\"b\\"}'),
        ({"a": "b"}, False, '{"a":"b"}'),
        ([1, 2.0], False, "[1,2]"),
        ("line\n", True, "line\\n"),
        ("[1, 2]", False, "[1, 2]"),
        ("[1, 2", False, "[1, 2"),
        ('say "x"', False, 'say \\"x\\"'),
        ("NaN", False, "NaN"),
        (1.0, False, "1"),
        (1.0, True, "1"),
        (False, True, "false"),
    ],
)
def test_body_value_text_quotes_by_position(value: Any, quoted: bool, expected: str) -> None:
    assert body_value_text(value, quoted=quoted) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("", {}),
        ('{"name": "{{userName}}", "age": {{userAge}}}', {"name": "John Doe", "age": 30}),
        (
            "{name: '{{userName}}', tags: {{tags}}, /* c */ }",
            {"name": "John Doe", "tags": ["developer", "tester"]},
        ),
        ('{"x": {{undefinedVar}}}', {"x": None}),
        ('[{{userAge}}, "{{isActive}}"]', [30, "true"]),
    ],
)
def test_replace_json_body_parses_json5(body: str, expected: Any) -> None:
    assert replace_json_body(body, GRAPH, VARIABLES) == expected


def test_replace_json_body_rejects_what_does_not_parse() -> None:
    with pytest.raises(InvalidJsonBody, match=r"^Invalid JSON body: \{\"t\": \{\{plain\}\}\}$"):
        replace_json_body('{"t": {{plain}}}', GRAPH, VARIABLES)


RESPONSE: dict[str, Any] = {
    "user": {"name": "Ann", "age": 12},
    "list": [{"name": "x", "age": 5}, {"name": "y", "age": 50}],
    "empty": None,
    "中文": {"键": 1},
    "data-set": 3,
}


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("user", {"name": "Ann", "age": 12}),
        ("user.name", "Ann"),
        ("$.user.age", 12),
        ("list[1].name", "y"),
        ("list[0]", {"name": "x", "age": 5}),
        ("list[*].name", ["x", "y"]),
        ("$..age", [12, 5, 50]),
        ("list[?(@.age > 10)].name", ["y"]),
        ("list[:1]", [{"name": "x", "age": 5}]),
        ("list[0:1]", {"name": "x", "age": 5}),
        ("$['user','empty']", [{"name": "Ann", "age": 12}, None]),
        ("empty", None),
        ("missing", UNDEFINED),
        ("list[*].missing", UNDEFINED),
        ("中文.键", 1),
        ("data-set", 3),
        ("list[", UNDEFINED),
    ],
)
def test_pick_outputs_reads_jsonpath(key: str, expected: Any) -> None:
    picked = pick_outputs(RESPONSE, [key])[key]
    assert picked is expected if expected is UNDEFINED else picked == expected


@pytest.mark.parametrize("response", ["text", 5, True])
def test_pick_outputs_reads_a_non_object_response_as_empty(response: Any) -> None:
    assert pick_outputs(response, ["a", "$"]) == {"a": UNDEFINED, "$": {}}


def test_pick_outputs_reads_nothing_from_a_null_response() -> None:
    assert pick_outputs(None, ["a", "$"]) == {"a": UNDEFINED, "$": UNDEFINED}


def test_pick_outputs_reads_a_list_response() -> None:
    assert pick_outputs([{"a": 1}], ["$[0].a", "$[*].a"]) == {"$[0].a": 1, "$[*].a": [1]}
