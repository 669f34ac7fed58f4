"""FastGPT's HTTP node (``httpRequest468``): its JSON body templating and the JSONPath reads of
its custom outputs, ported from ``packages/service/core/workflow/dispatch/tools/http468.ts``
and ``…/dispatch/utils/replaceJsonBodyString.ts`` (newest line, which scans quotes with
escapes and substitutes each placeholder once per pass).

A JSON body is text with ``{{$nodeId.key$}}`` and ``{{key}}`` placeholders. Replacement is
quote-aware so the result stays JSON: inside a string literal a value is written escaped
(objects as escaped JSON, undefined/null as nothing); outside one it is written as raw JSON
(text that is itself valid JSON as it is, undefined/null as ``null``). The result is read
with JSON5, so comments, single quotes and trailing commas are accepted."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any, Final

import re2
from jsonpath_ng.exceptions import JSONPathError
from jsonpath_ng.ext.parser import parse as parse_jsonpath

from workflow_engine.fastgpt.values import (
    MAX_REPLACEMENT_DEPTH,
    MAX_STRING_LENGTH,
    NODE_VARIABLE_PATTERN,
    UNDEFINED,
    VARIABLE_PLACEHOLDER_PATTERN,
    GraphView,
    is_js_object,
    js_json,
    js_json_parse,
    js_string,
    node_variable_value,
    parse_json5,
    substitute_placeholders,
)

_UNDEFINED_MEMBER: Final = re2.compile(r"(\"[^\n\r\x{2028}\x{2029}]*?\")\s*:\s*undefined\b")
"""``"key": undefined`` left in the text, which FastGPT rewrites to ``"key":null``."""

_ARRAY_RESULT: Final = re.compile(r"[*]|\[[:?]|\.\.|,")
"""A JSONPath that can match several values (``*``, ``[:``, ``[?``, ``..``, ``,``)."""

_DOTTED_NAME: Final = re.compile(r"(?<!\.)\.([^.\[\]'\"*]+)")


class InvalidJsonBody(ValueError):
    """The body is not JSON5 once its placeholders are replaced; FastGPT fails the node with
    ``Invalid JSON body: <the body as written>``."""


def replace_json_body(body: str, graph: GraphView, variables: Mapping[str, Any]) -> Any:
    """The request body FastGPT sends for a JSON body ``body``: ``{}`` when it is empty, else
    :func:`replace_json_body_text` read as JSON5; :class:`InvalidJsonBody` when that does not
    parse (FastGPT does not fall back to the text for the JSON content type).

    ``variables`` is what FastGPT calls ``allVariables``: the global variables, the node's
    own params (its dynamic inputs), ``appId``/``chatId``/``responseChatItemId``/
    ``histories``, and all of that again under ``system_addInputParam``."""
    if not body:
        return {}
    text = replace_json_body_text(body, graph, variables)
    try:
        return parse_json5(text)
    except (ValueError, RecursionError):
        raise InvalidJsonBody(f"Invalid JSON body: {body}") from None


def replace_json_body_text(body: str, graph: GraphView, variables: Mapping[str, Any]) -> str:
    """FastGPT's ``replaceJsonBodyString``. Each pass replaces every ``{{$nodeId.key$}}`` (read
    by :func:`~workflow_engine.fastgpt.values.node_variable_value`), then every ``{{key}}``
    (``variables[key]``; an unknown key is undefined, so it is replaced too, unlike in
    editor text). Passes repeat while something changes, up to
    :data:`~workflow_engine.fastgpt.values.MAX_REPLACEMENT_DEPTH` more.

    As in FastGPT: a placeholder's first occurrence in a pass decides its quoting for all
    of them; a value holding its own placeholder (``{{nodeId.key}}`` for a node reference,
    ``{{key}}`` for a variable) leaves it unreplaced; ``"key": undefined`` left at the end
    becomes ``"key":null``."""
    if len(body) > MAX_STRING_LENGTH:
        return body
    result = body
    for _ in range(MAX_REPLACEMENT_DEPTH + 1):
        if "{{" not in result:
            break
        result, nodes_changed = _replace_node_placeholders(result, graph, variables)
        result, variables_changed = _replace_variable_placeholders(result, variables)
        if len(result) > MAX_STRING_LENGTH:
            return result
        if not (nodes_changed or variables_changed):
            break
    replaced: str = _UNDEFINED_MEMBER.sub(r"\1:null", result)
    return replaced


def _replace_node_placeholders(
    text: str, graph: GraphView, variables: Mapping[str, Any]
) -> tuple[str, bool]:
    in_quotes = _QuoteScanner(text)

    def replacement(match: re.Match[str]) -> str | None:
        node_id, key = match.group(1), match.group(2)
        quoted = in_quotes(match.start())
        value = node_variable_value(node_id, key, graph, variables)
        if f"{{{{{node_id}.{key}}}}}" in js_string(value):
            return None
        return body_value_text(value, quoted=quoted)

    return substitute_placeholders(NODE_VARIABLE_PATTERN, text, replacement)


def _replace_variable_placeholders(text: str, variables: Mapping[str, Any]) -> tuple[str, bool]:
    in_quotes = _QuoteScanner(text)

    def replacement(match: re.Match[str]) -> str | None:
        key = match.group(1)
        value = variables.get(key, UNDEFINED)
        if isinstance(value, str) and f"{{{{{key}}}}}" in value:
            return None
        return body_value_text(value, quoted=in_quotes(match.start()))

    return substitute_placeholders(VARIABLE_PLACEHOLDER_PATTERN, text, replacement)


class _QuoteScanner:
    """Whether an offset of ``text`` lies inside a double-quoted string, for increasing
    offsets (one scan overall); a backslash escapes the next character, in or out of
    quotes."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._cursor = 0
        self._in_quotes = False
        self._escaped = False

    def __call__(self, offset: int) -> bool:
        while self._cursor < offset:
            char = self._text[self._cursor]
            if self._escaped:
                self._escaped = False
            elif char == "\\":
                self._escaped = True
            elif char == '"':
                self._in_quotes = not self._in_quotes
            self._cursor += 1
        return self._in_quotes


def body_value_text(value: Any, *, quoted: bool) -> str:
    """How a value is written into a JSON body. Inside quotes: undefined/null as nothing,
    text JSON-escaped, an object or list as its JSON with every ``"`` escaped. Outside: null
    as ``null``, text that parses as JSON as it is (``'123'`` stays a number, ``'{"a":1}'``
    an object), other text JSON-escaped without quotes, an object or list as its JSON,
    anything else ``String(value)``."""
    if value is None or value is UNDEFINED:
        return "" if quoted else "null"
    if is_js_object(value):
        text = js_json(value)
        return text.replace('"', '\\"') if quoted else text
    if isinstance(value, str):
        if not quoted and _is_json(value):
            return value
        return js_json(value)[1:-1]
    return js_string(value)


def _is_json(text: str) -> bool:
    try:
        js_json_parse(text)
    except (ValueError, RecursionError):
        return False
    return True


def pick_outputs(response: Any, keys: list[str]) -> dict[str, Any]:
    """The HTTP node's custom outputs: each key is a JSONPath (``$.`` prepended unless it
    starts with ``$``) into the response (an object or list; anything else reads as ``{}``,
    except null, in which jsonpath-plus finds nothing at all).
    A path that can match several values (``*``, ``[:``, ``[?``, ``..``, ``,``) gives the
    list of matches; any other the first match. No match, or a path that does not parse,
    gives UNDEFINED.

    FastGPT evaluates with jsonpath-plus, this with jsonpath-ng's extended parser; they
    agree on names, indexes, wildcards, slices, recursive descent and ``[?(@.a > 1)]``
    filters. A dotted name the parser rejects (non-ASCII, say) is retried in bracket form."""
    if response is None:
        return dict.fromkeys(keys, UNDEFINED)
    document = response if is_js_object(response) else {}
    return {key: _pick(document, key) for key in keys}


def _pick(document: Any, key: str) -> Any:
    path = key if key.startswith("$") else f"$.{key}"
    matches = _find(path, document)
    if not matches:
        return UNDEFINED
    return matches if _ARRAY_RESULT.search(path) else matches[0]


def _find(path: str, document: Any) -> list[Any]:
    expression = _compile_path(path)
    if expression is None:
        return []
    try:
        return [match.value for match in expression.find(document)]
    except (TypeError, ValueError, KeyError, AttributeError):
        return []


@functools.lru_cache(maxsize=512)
def _compile_path(path: str) -> Any:
    """The parsed JSONPath, or None when neither it nor its bracket form parses."""
    bracketed = _DOTTED_NAME.sub(lambda m: f"['{m.group(1)}']", path)
    for candidate in dict.fromkeys((path, bracketed)):
        try:
            return parse_jsonpath(candidate)
        except (JSONPathError, ValueError, TypeError, AttributeError):
            continue
    return None
