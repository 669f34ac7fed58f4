"""FastGPT's ifElse node: its comparison operators and branch choice, ported from
``packages/service/core/workflow/dispatch/tools/runIfElse.ts`` (v4.9+, commit ``94155880``)
and ``getElseIFLabel`` (``packages/global/core/workflow/utils.ts``).

The operators keep JavaScript's coercions: both sides of ``equalTo`` are stringified and
trimmed, the ordering operators compare ``Number(…)``s, lengths count UTF-16 code units.
Where JavaScript throws (``value.trim()`` on a right side that is not text, an invalid
regular expression) FastGPT fails the node; here :class:`ConditionError` is raised.

``reg`` runs a tenant's pattern, so it runs on RE2 (google-re2, already the engine's regex
engine for JSON Schema patterns): matching takes time linear in the input whatever the
pattern. RE2 has no backreferences or lookaround; such a pattern raises
:class:`ConditionError` rather than running on a backtracking engine."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import re2

from workflow_engine.fastgpt.values import (
    UNDEFINED,
    is_js_number,
    js_number,
    js_string,
    js_trim,
    js_truthy,
)

IF: Final = "IF"
ELSE_IF: Final = "ELSE IF"
ELSE: Final = "ELSE"

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False

_JS_SPACE_CLASS: Final = (
    r"\t\n\v\f\r \x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}\x{feff}"
)
_JS_ESCAPES_OUTSIDE_CLASS: Final = {
    "s": f"[{_JS_SPACE_CLASS}]",
    "S": f"[^{_JS_SPACE_CLASS}]",
}
_JS_DOT: Final = r"[^\n\r\x{2028}\x{2029}]"
_JS_ANY: Final = r"[\x{0}-\x{10ffff}]"
_UNICODE_ESCAPE: Final = re.compile(r"u([0-9a-fA-F]{4})")


class ConditionError(ValueError):
    """A comparison FastGPT cannot evaluate: JavaScript throws there, failing the node."""


def if_else_label(index: int) -> str:
    """The label of branch ``index``: ``'IF'``, then ``'ELSE IF 1'``, ``'ELSE IF 2'``…"""
    return IF if index == 0 else f"{ELSE_IF} {index}"


def choose_branch(if_else_list: list[dict[str, Any]], resolve: Callable[[Any], Any]) -> str:
    """The label of the first branch whose conditions hold, else :data:`ELSE`.

    A branch is ``{condition: 'AND'|'OR', list: [{variable, condition, value, valueType?}]}``;
    ``resolve`` turns a reference (``variable``, and ``value`` when ``valueType`` is
    ``'reference'``) into its value. Every item of a branch is evaluated (FastGPT maps the
    whole list before combining); an item without an operator is false; an empty ``AND``
    list holds and an empty ``OR`` list does not (``every``/``some`` of nothing)."""
    for index, branch in enumerate(if_else_list):
        if _branch_holds(branch, resolve):
            return if_else_label(index)
    return ELSE


def _branch_holds(branch: Mapping[str, Any], resolve: Callable[[Any], Any]) -> bool:
    items = branch.get("list")
    if not isinstance(items, list):
        raise ConditionError("an ifElse branch needs a `list` of conditions")
    results = [_item_holds(item, resolve) for item in items]
    return all(results) if branch.get("condition") == "AND" else any(results)


def _item_holds(item: Mapping[str, Any], resolve: Callable[[Any], Any]) -> bool:
    operator = item.get("condition")
    if not js_truthy(operator):
        return False
    left = resolve(item.get("variable", UNDEFINED))
    right = item.get("value", UNDEFINED)
    if item.get("valueType") == "reference":
        right = resolve(right)
    return check_condition(left, str(operator), right)


def check_condition(input_value: Any, operator: str, value: Any) -> bool:
    """Whether ``input_value`` (the resolved left side) satisfies ``operator`` against
    ``value`` (the right side: text, or a resolved reference); False for an unknown
    operator."""
    operation = _OPERATIONS.get(operator)
    return operation(input_value, value) if operation is not None else False


def is_empty(value: Any) -> bool:
    """undefined, null, blank text, NaN, an empty list or an object without keys."""
    if value is UNDEFINED or value is None:
        return True
    if isinstance(value, str):
        return js_trim(value) == ""
    if is_js_number(value):
        return math.isnan(value)
    if isinstance(value, list | tuple | Mapping):
        return len(value) == 0
    return False


def _equal_to(input_value: Any, value: Any) -> bool:
    """``String(inputValue).trim() === value.trim()``."""
    return js_trim(js_string(input_value)) == js_trim(_text(value, "value"))


def _includes(input_value: Any, value: Any) -> bool:
    """A list holds ``value`` among its items' strings (strict: only text can match); text
    contains ``String(value)``; anything else holds nothing."""
    if isinstance(input_value, list | tuple):
        return isinstance(value, str) and value in [js_string(item) for item in input_value]
    if isinstance(input_value, str):
        return js_string(value) in input_value
    return False


def _starts_with(input_value: Any, value: Any) -> bool:
    """``inputValue?.trim()?.startsWith(value)``."""
    text = _optional_text(input_value)
    return text is not None and js_trim(text).startswith(js_string(value))


def _ends_with(input_value: Any, value: Any) -> bool:
    """``inputValue?.trim()?.endsWith(value)``."""
    text = _optional_text(input_value)
    return text is not None and js_trim(text).endswith(js_string(value))


def _matches(input_value: Any, value: Any) -> bool:
    """``new RegExp(pattern, 'g').test(inputValue.trim())`` where ``pattern`` is ``value`` less
    one leading and one trailing ``/`` (flags after a closing slash are not read: ``/a/i``
    is the pattern ``a/i``); false unless the input is text and ``value`` is truthy."""
    if not isinstance(input_value, str) or not js_truthy(value):
        return False
    pattern = _text(value, "value")
    pattern = pattern.removeprefix("/")
    pattern = pattern.removesuffix("/")
    return _compile_js_regex(pattern).search(js_trim(input_value)) is not None


@functools.lru_cache(maxsize=512)
def _compile_js_regex(pattern: str) -> Any:
    """The RE2 form of a JavaScript pattern; :class:`ConditionError` when it is invalid or
    needs backtracking."""
    try:
        return re2.compile(_translate_js_pattern(pattern), _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid"
        reason = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
        raise ConditionError(
            f"regular expression /{pattern}/ cannot run ({reason}; backreferences and "
            "lookaround are not supported)"
        ) from None


def _translate_js_pattern(pattern: str) -> str:
    """Rewrites what JavaScript reads differently from RE2: ``\\uXXXX`` escapes, ``\\s``/``\\S``
    (Unicode whitespace in JavaScript, ASCII in RE2), ``.`` (which excludes ``\\r`` and the
    line separators in JavaScript) and ``[^]`` (any character)."""
    out: list[str] = []
    index, in_class = 0, False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            token, index = _translate_escape(pattern, index, in_class)
            out.append(token)
            continue
        if in_class:
            in_class = char != "]"
        elif pattern.startswith("[^]", index):
            out.append(_JS_ANY)
            index += 3
            continue
        elif char == "[":
            in_class = True
        elif char == ".":
            char = _JS_DOT
        out.append(char)
        index += 1
    return "".join(out)


def _translate_escape(pattern: str, index: int, in_class: bool) -> tuple[str, int]:
    """The RE2 form of the escape at ``index`` and the index after it."""
    escaped = pattern[index + 1]
    unicode = _UNICODE_ESCAPE.match(pattern, index + 1)
    if unicode is not None:
        return f"\\x{{{unicode.group(1)}}}", unicode.end()
    if escaped == "s" and in_class:
        return _JS_SPACE_CLASS, index + 2
    if escaped in _JS_ESCAPES_OUTSIDE_CLASS and not in_class:
        return _JS_ESCAPES_OUTSIDE_CLASS[escaped], index + 2
    return pattern[index : index + 2], index + 2


def _js_length(value: Any) -> Any:
    """``value?.length``: UTF-16 code units of text, items of a list, an object's own
    ``length`` member; undefined for anything else."""
    if isinstance(value, str):
        return len(value.encode("utf-16-le")) // 2
    if isinstance(value, list | tuple):
        return len(value)
    if isinstance(value, Mapping):
        return value.get("length", UNDEFINED)
    return UNDEFINED


def _length_equal(input_value: Any, value: Any) -> bool:
    """``inputValue?.length === Number(value)`` (strict: the length must be a number)."""
    length = _js_length(input_value)
    return is_js_number(length) and js_number(length) == js_number(value)


def _text(value: Any, name: str) -> str:
    """``value`` where JavaScript calls a string method on it."""
    if not isinstance(value, str):
        raise ConditionError(f"{name}.trim is not a function ({name} is {js_string(value)!r})")
    return value


def _optional_text(value: Any) -> str | None:
    """``value?.trim``: None for undefined or null, the text for text; JavaScript throws for
    anything else."""
    if value is UNDEFINED or value is None:
        return None
    return _text(value, "inputValue")


_OPERATIONS: Final[Mapping[str, Callable[[Any, Any], bool]]] = {
    "isEmpty": lambda i, v: is_empty(i),
    "isNotEmpty": lambda i, v: not is_empty(i),
    "equalTo": _equal_to,
    "notEqual": lambda i, v: not _equal_to(i, v),
    "greaterThan": lambda i, v: js_number(i) > js_number(v),
    "lessThan": lambda i, v: js_number(i) < js_number(v),
    "greaterThanOrEqualTo": lambda i, v: js_number(i) >= js_number(v),
    "lessThanOrEqualTo": lambda i, v: js_number(i) <= js_number(v),
    "include": _includes,
    "notInclude": lambda i, v: not _includes(i, v),
    "startWith": _starts_with,
    "endWith": _ends_with,
    "reg": _matches,
    "lengthEqualTo": _length_equal,
    "lengthNotEqualTo": lambda i, v: not _length_equal(i, v),
    "lengthGreaterThan": lambda i, v: js_number(_js_length(i)) > js_number(v),
    "lengthGreaterThanOrEqualTo": lambda i, v: js_number(_js_length(i)) >= js_number(v),
    "lengthLessThan": lambda i, v: js_number(_js_length(i)) < js_number(v),
    "lengthLessThanOrEqualTo": lambda i, v: js_number(_js_length(i)) <= js_number(v),
}
"""FastGPT's ``VariableConditionEnum`` values and their checks (left side, right side)."""
