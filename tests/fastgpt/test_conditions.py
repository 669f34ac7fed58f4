"""FastGPT's ifElse operators and branch choice, pinned against
``packages/service/core/workflow/dispatch/tools/runIfElse.ts`` (``labring/FastGPT``, commit
``94155880``: trims, reference right sides) and ``getElseIFLabel`` in
``packages/global/core/workflow/utils.ts``."""

from __future__ import annotations

import time
from typing import Any

import pytest

from workflow_engine.fastgpt.conditions import (
    ELSE,
    ConditionError,
    check_condition,
    choose_branch,
    if_else_label,
)
from workflow_engine.fastgpt.values import UNDEFINED, VARIABLE_NODE_ID

NAN = float("nan")


@pytest.mark.parametrize(
    ("input_value", "operator", "value", "expected"),
    [
        # isEmpty / isNotEmpty
        (UNDEFINED, "isEmpty", "", True),
        (None, "isEmpty", "", True),
        (" \n\u3000", "isEmpty", "", True),
        (NAN, "isEmpty", "", True),
        ([], "isEmpty", "", True),
        ({}, "isEmpty", "", True),
        (0, "isEmpty", "", False),
        (False, "isEmpty", "", False),
        ([None], "isEmpty", "", False),
        ("x", "isNotEmpty", "", True),
        ("  ", "isNotEmpty", "", False),
        # equalTo / notEqual: String(left).trim() === right.trim()
        (" yes ", "equalTo", "yes  ", True),
        (5, "equalTo", "5", True),
        (5.0, "equalTo", "5", True),
        (True, "equalTo", "true", True),
        (True, "equalTo", "True", False),
        (None, "equalTo", "null", True),
        (UNDEFINED, "equalTo", "undefined", True),
        ([1, 2], "equalTo", "1,2", True),
        ({"a": 1}, "equalTo", "[object Object]", True),
        ("a", "notEqual", "b", True),
        (" a", "notEqual", "a ", False),
        # Number(left) <op> Number(right)
        ("10", "greaterThan", "9", True),
        ("10", "greaterThan", "10", False),
        ("abc", "greaterThan", "-1", False),
        ("abc", "lessThan", "1", False),
        ("", "lessThan", "1", True),
        (None, "greaterThanOrEqualTo", "0", True),
        (UNDEFINED, "greaterThanOrEqualTo", "0", False),
        ("0x10", "greaterThan", "15", True),
        (" 3 ", "lessThanOrEqualTo", "3", True),
        (True, "greaterThan", "0", True),
        ([7], "greaterThan", "6", True),
        (5, "lessThan", "", False),
        # include / notInclude
        ("hello world", "include", "lo w", True),
        ("hello", "include", "H", False),
        ([1, 2, 3], "include", "2", True),
        ([1, 2, 3], "include", 2, False),
        ([True, None], "include", "null", True),
        ([" a"], "include", "a", False),
        ({"a": 1}, "include", "a", False),
        (12, "include", "1", False),
        ("abc", "notInclude", "z", True),
        ([1], "notInclude", "1", False),
        (None, "notInclude", "x", True),
        # startWith / endWith: the left side is trimmed, the right is not
        ("  hello", "startWith", "he", True),
        ("hello", "startWith", " he", False),
        ("hello  ", "endWith", "lo", True),
        ("hello", "endWith", "LO", False),
        (UNDEFINED, "startWith", "a", False),
        (None, "endWith", "a", False),
        ("a1", "endWith", 1, True),
        # reg: one leading and one trailing slash stripped, no flags, left side trimmed
        ("abc123", "reg", "/\\d+/", True),
        ("abc", "reg", "/\\d+/", False),
        ("a/b", "reg", "a/b", True),
        ("ABC", "reg", "/abc/i", False),
        ("x/i", "reg", "/x/i/", True),
        (" abc ", "reg", "^abc$", True),
        ("abc\n", "reg", "^abc$", True),
        ("abc\ndef", "reg", "abc$", False),
        ("a\rb", "reg", "a.b", False),
        ("a\u3000b", "reg", "a\\sb", True),
        ("é", "reg", "\\u00e9", True),
        ("x\ny", "reg", "x[^]y", True),
        ("anything", "reg", "/", True),
        (5, "reg", "5", False),
        ("abc", "reg", "", False),
        # lengths: UTF-16 units of text, items of a list
        ("abc", "lengthEqualTo", "3", True),
        ("😀", "lengthEqualTo", "2", True),
        ([1, 2], "lengthEqualTo", "2", True),
        ([1, 2], "lengthEqualTo", 2, True),
        ("abc", "lengthEqualTo", "x", False),
        (UNDEFINED, "lengthEqualTo", "0", False),
        (5, "lengthNotEqualTo", "1", True),
        (None, "lengthNotEqualTo", "0", True),
        ("ab", "lengthNotEqualTo", "2", False),
        ({"length": 4}, "lengthEqualTo", "4", True),
        ({"a": 1}, "lengthEqualTo", "1", False),
        ([1, 2, 3], "lengthGreaterThan", "2", True),
        ("ab", "lengthGreaterThan", "2", False),
        ("ab", "lengthGreaterThanOrEqualTo", "2", True),
        ([], "lengthLessThan", "1", True),
        (None, "lengthLessThan", "1", False),
        ("abc", "lengthLessThanOrEqualTo", "2", False),
        ("", "lengthLessThanOrEqualTo", "", True),
        # unknown operator
        ("a", "equals", "a", False),
        ("a", "", "a", False),
    ],
)
def test_check_condition_is_run_if_else_check_condition(
    input_value: Any, operator: str, value: Any, expected: bool
) -> None:
    assert check_condition(input_value, operator, value) is expected


@pytest.mark.parametrize(
    ("input_value", "operator", "value"),
    [
        ("5", "equalTo", 5),
        ("x", "equalTo", UNDEFINED),
        ("x", "notEqual", None),
        (5, "startWith", "5"),
        (["a"], "endWith", "a"),
        ("abc", "reg", 5),
        ("abc", "reg", "(a"),
        ("aa", "reg", "(a)\\1"),
        ("ab", "reg", "a(?=b)"),
    ],
)
def test_check_condition_raises_where_javascript_throws(
    input_value: Any, operator: str, value: Any
) -> None:
    with pytest.raises(ConditionError):
        check_condition(input_value, operator, value)


def test_reg_runs_a_catastrophic_pattern_in_linear_time() -> None:
    started = time.monotonic()
    assert not check_condition("a" * 50_000 + "!", "reg", "^(a+)+$")
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(("index", "label"), [(0, "IF"), (1, "ELSE IF 1"), (12, "ELSE IF 12")])
def test_if_else_label_is_get_else_if_label(index: int, label: str) -> None:
    assert if_else_label(index) == label


VALUES: dict[str, Any] = {"n": 5, "s": "yes", "t": "5", "e": ""}


def resolve(reference: Any) -> Any:
    if isinstance(reference, list) and reference[0] == VARIABLE_NODE_ID:
        return VALUES.get(reference[1], UNDEFINED)
    return reference


def item(key: str, condition: str | None, value: Any, value_type: str | None = None) -> Any:
    entry = {"variable": [VARIABLE_NODE_ID, key], "condition": condition, "value": value}
    return entry if value_type is None else {**entry, "valueType": value_type}


@pytest.mark.parametrize(
    ("branches", "expected"),
    [
        ([{"condition": "AND", "list": [item("n", "greaterThan", "3")]}], "IF"),
        ([{"condition": "AND", "list": [item("n", "lessThan", "3")]}], ELSE),
        (
            [
                {"condition": "AND", "list": [item("n", "lessThan", "3")]},
                {"condition": "OR", "list": [item("s", "equalTo", "no")]},
                {"condition": "OR", "list": [item("s", "equalTo", "no"), item("e", "isEmpty", "")]},
                {"condition": "AND", "list": [item("s", "equalTo", "yes")]},
            ],
            "ELSE IF 2",
        ),
        (
            [
                {
                    "condition": "AND",
                    "list": [item("n", "greaterThan", "3"), item("s", "equalTo", "no")],
                }
            ],
            ELSE,
        ),
        ([{"condition": "AND", "list": []}], "IF"),
        ([{"condition": "OR", "list": []}], ELSE),
        ([{"condition": "AND", "list": [item("n", None, "")]}], ELSE),
        ([{"condition": "OR", "list": [item("n", "", ""), item("n", "isNotEmpty", "")]}], "IF"),
        ([{"list": [item("n", "isEmpty", ""), item("n", "isNotEmpty", "")]}], "IF"),
        (
            [{"condition": "AND", "list": [item("n", "equalTo", "n", "input")]}],
            ELSE,
        ),
        (
            [
                {
                    "condition": "AND",
                    "list": [item("n", "equalTo", [VARIABLE_NODE_ID, "t"], "reference")],
                }
            ],
            "IF",
        ),
        ([], ELSE),
    ],
)
def test_choose_branch_picks_the_first_branch_that_holds(
    branches: list[dict[str, Any]], expected: str
) -> None:
    assert choose_branch(branches, resolve) == expected


def test_choose_branch_evaluates_every_item_of_a_branch() -> None:
    branch = {
        "condition": "OR",
        "list": [
            item("s", "equalTo", "yes"),
            item("n", "equalTo", [VARIABLE_NODE_ID, "n"], "reference"),
        ],
    }
    with pytest.raises(ConditionError):
        choose_branch([branch], resolve)


def test_choose_branch_needs_a_condition_list() -> None:
    with pytest.raises(ConditionError):
        choose_branch([{"condition": "AND"}], resolve)
