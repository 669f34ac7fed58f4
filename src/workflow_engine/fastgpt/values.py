"""FastGPT's value semantics: references, ``{{…}}`` templates and type coercion, ported from
its TypeScript (v4.9+ line) so a FastGPT graph computes the same strings and values here.

Sources (``labring/FastGPT``): ``packages/global/core/workflow/runtime/utils.ts``
(``getReferenceVariableValue``, ``formatVariableValByType``, ``valueTypeFormat``),
``packages/service/common/string/replaceVariable.ts`` (``valToStr``, ``replaceVariable``) and
``packages/service/core/workflow/dispatch/utils/replaceEditorVariable.ts``.

FastGPT runs on JavaScript, and the difference shows in its strings: ``undefined`` is not
``null`` (a missing value renders as ``''``, ``null`` as ``'null'``), ``String(1.0)`` is
``'1'``, ``JSON.stringify`` writes no spaces, ``Number('')`` is 0 and an empty list is truthy.
The ``js_*`` functions reproduce those rules for JSON-like Python values; :data:`UNDEFINED`
stands for ``undefined``."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, ClassVar, Final, Protocol

import json5
import orjson
import re2

VARIABLE_NODE_ID: Final = "VARIABLE_NODE_ID"
"""The pseudo node id of a reference to a global variable (``[VARIABLE_NODE_ID, key]``)."""

MAX_REPLACEMENT_DEPTH: Final = 10
"""Passes after the first that a template replacement makes while values bring new
placeholders (FastGPT's ``MAX_REPLACEMENT_DEPTH``): the guard against reference cycles."""

MAX_STRING_LENGTH: Final = 4 * 1024 * 1024
"""The longest text a replacement may make (FastGPT's ``SYSTEM_MAX_STRING_LENGTH`` defaults
to 100,000,000; a tenant's placeholders must not make one worker hold gigabytes): a pass that
would make it longer raises ``TextTooLong``."""


class TextTooLong(ValueError):
    """A replacement would make text longer than ``MAX_STRING_LENGTH``."""


NODE_VARIABLE_PATTERN: Final = re2.compile(r"\{\{\$([^.]+)\.([^$]+)\$\}\}")
"""``{{$nodeId.outputId$}}``, FastGPT's editor reference."""

VARIABLE_PLACEHOLDER_PATTERN: Final = re2.compile(r"\{\{([^}]+)\}\}")
"""``{{key}}``, FastGPT's legacy variable placeholder."""

_JS_WHITESPACE: Final = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_JS_DECIMAL: Final = re.compile(
    r"[+-]?(?:Infinity|[0-9]+\.?[0-9]*(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)"
)
_JS_RADIX: Final = {"0x": 16, "0o": 8, "0b": 2}
_JS_ARRAY_INDEX_LIMIT: Final = 2**32 - 1
_SAFE_INTEGER: Final = 2**53


class Undefined:
    """JavaScript's ``undefined``: a value that is absent, as opposed to ``None`` (``null``).
    Falsy; one instance, :data:`UNDEFINED`, survives copying and pickling."""

    _instance: ClassVar[Undefined | None] = None

    def __new__(cls) -> Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __reduce__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Final = Undefined()


class GraphView(Protocol):
    """The running graph as FastGPT's resolvers read it: node outputs by **id**, inputs by
    **key**."""

    def has_node(self, node_id: str) -> bool: ...

    def output(self, node_id: str, output_id: str) -> Any:
        """The output's current value; UNDEFINED when the node has no such output or the
        output has no value yet."""

    def output_type(self, node_id: str, output_id: str) -> str | None:
        """The output's ``valueType``; None when it has none (or there is no such output)."""

    def input(self, node_id: str, key: str) -> Any:
        """The node's input value (as stored, unresolved); UNDEFINED when it has none."""


# -- JavaScript semantics ---------------------------------------------------------------------


def is_js_number(value: Any) -> bool:
    """``typeof value === 'number'`` (a bool is not a number here, unlike Python)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_js_object(value: Any) -> bool:
    """``typeof value === 'object'`` for a non-null value: a mapping or a list."""
    return isinstance(value, Mapping | list | tuple)


def js_trim(text: str) -> str:
    """``String.prototype.trim``: strips JavaScript's whitespace set, which differs from
    Python's (it includes U+FEFF and excludes U+001C to U+001F and U+0085)."""
    return text.strip(_JS_WHITESPACE)


def js_truthy(value: Any) -> bool:
    """``Boolean(value)``: only undefined, null, false, 0, NaN and '' are false; an empty list
    or object is true."""
    if value is UNDEFINED or value is None:
        return False
    if isinstance(value, bool | str):
        return bool(value)
    if is_js_number(value):
        return value != 0 and not math.isnan(value)
    return True


def js_number(value: Any) -> float:
    """``Number(value)``: '' and null are 0, booleans 1/0, text is parsed the strict
    JavaScript way (``'12abc'`` and ``'inf'`` are NaN, ``' 0x1F '`` is 31), a list goes
    through its string form, an object is NaN."""
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int):
        return _int_to_float(value)
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        return _parse_js_number(value)
    if isinstance(value, list | tuple):
        return _parse_js_number(js_string(value))
    return math.nan


def _int_to_float(value: int) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _parse_js_number(text: str) -> float:
    text = js_trim(text)
    if not text:
        return 0.0
    if _JS_DECIMAL.fullmatch(text):
        return float(text)
    radix = _JS_RADIX.get(text[:2].lower())
    if radix is not None:
        try:
            return _int_to_float(int(text[2:], radix))
        except ValueError:
            return math.nan
    return math.nan


def js_string(value: Any) -> str:
    """``String(value)``: ``null``, ``true``, ``1`` for 1.0, ``1e+21``, ``NaN``,
    ``Infinity``; a list joined by commas (null items empty); an object
    ``[object Object]``."""
    if value is UNDEFINED:
        return "undefined"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if abs(value) < 10**21 else _float_string(_int_to_float(value))
    if isinstance(value, float):
        return _float_string(value)
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return "[object Object]"
    if isinstance(value, list | tuple):
        return ",".join(
            "" if item is None or item is UNDEFINED else js_string(item) for item in value
        )
    return str(value)


def _float_string(value: float) -> str:
    """``Number.prototype.toString()``: the shortest round-trip digits (as Python's repr),
    laid out by ECMAScript's rules: plain up to 1e21, exponent form below 1e-6."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    digit_tuple = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple.digits))
    exponent = digit_tuple.exponent
    assert isinstance(exponent, int)
    point = len(digits) + exponent
    return sign + _layout_digits(digits, point)


def _layout_digits(digits: str, point: int) -> str:
    """``digits`` with the decimal point after ``point`` digits, in JavaScript's layout."""
    count = len(digits)
    if count <= point <= 21:
        return digits + "0" * (point - count)
    if 0 < point <= 21:
        return f"{digits[:point]}.{digits[point:]}"
    if -6 < point <= 0:
        return "0." + "0" * -point + digits
    exponent = point - 1
    mantissa = digits if count == 1 else f"{digits[0]}.{digits[1:]}"
    return f"{mantissa}e{'+' if exponent >= 0 else '-'}{abs(exponent)}"


def js_json(value: Any) -> str:
    """``JSON.stringify(value)``: no spaces, non-ASCII kept, numbers as in :func:`js_string`
    (NaN and Infinity as ``null``), undefined members of an object dropped and undefined list
    items written ``null``, object keys in JavaScript's order (integer keys first).

    The one departure: ``JSON.stringify(undefined)`` is ``undefined`` itself, not text; no
    FastGPT path stringifies it, and this returns ``'null'``."""
    if value is None or value is UNDEFINED:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if is_js_number(value):
        number = js_number(value)
        return js_string(value) if math.isfinite(number) else "null"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        members = (
            f"{json.dumps(key, ensure_ascii=False)}:{js_json(item)}"
            for key, item in _js_object_entries(value)
            if item is not UNDEFINED
        )
        return "{" + ",".join(members) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(js_json(item) for item in value) + "]"
    return json.dumps(js_string(value), ensure_ascii=False)


def _js_object_entries(obj: Mapping[Any, Any]) -> list[tuple[str, Any]]:
    """An object's entries in JavaScript's property order: array-index keys ascending, then
    the others in insertion order."""
    entries = [(key if isinstance(key, str) else js_string(key), item) for key, item in obj.items()]
    indexed = sorted((e for e in entries if _is_array_index(e[0])), key=lambda e: int(e[0]))
    return indexed + [e for e in entries if not _is_array_index(e[0])]


def _is_array_index(key: str) -> bool:
    return (
        key.isascii()
        and key.isdigit()
        and (key == "0" or not key.startswith("0"))
        and int(key) < _JS_ARRAY_INDEX_LIMIT
    )


def js_json_parse(text: str) -> Any:
    """``JSON.parse(text)``: strict JSON (no NaN or Infinity); raises ``ValueError``."""
    return json.loads(text, parse_constant=_reject_constant)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _python_number(number: float) -> int | float:
    """A JavaScript number as Python would hold it: an exact integer (within 2**53) as
    ``int``, anything else (fractions, NaN, infinities, -0) as ``float``."""
    if (
        math.isfinite(number)
        and number.is_integer()
        and abs(number) <= _SAFE_INTEGER
        and math.copysign(1.0, number) > 0
    ):
        return int(number)
    return number


# -- FastGPT's formatting ---------------------------------------------------------------------


def val_to_str(value: Any) -> str:
    """FastGPT's ``valToStr``, how a value is written into text: undefined is ``''``, null is
    ``'null'``, an object or list its JSON, anything else ``String(value)``."""
    if value is UNDEFINED:
        return ""
    if value is None:
        return "null"
    if is_js_object(value):
        return js_json(value)
    return js_string(value)


def format_by_type(value: Any, value_type: str | None) -> Any:
    """FastGPT's ``formatVariableValByType``, applied to a node output read by a
    ``{{$node.output$}}`` template: a value that does not fit its declared type becomes
    undefined (an ``array…`` that is not a list, an ``object`` that is not an object),
    ``boolean``/``number``/``string`` are coerced the JavaScript way."""
    if not value_type:
        return value
    if value is None or value is UNDEFINED:
        return UNDEFINED
    if value_type.startswith("array") and not isinstance(value, list | tuple):
        return UNDEFINED
    if value_type == "boolean":
        return js_truthy(value)
    if value_type == "number":
        return _python_number(js_number(value))
    if value_type == "string":
        return js_json(value) if is_js_object(value) else js_string(value)
    if value_type in ("object", "datasetQuote", "selectApp", "selectDataset") and not is_js_object(
        value
    ):
        return UNDEFINED
    return value


def value_type_format(value: Any, value_type: str | None) -> Any:
    """FastGPT's ``valueTypeFormat``, which types every node input and default output: a value
    already of the type is kept; otherwise ``string`` stringifies, ``number`` parses (``''``
    gives null), ``boolean`` reads ``'true'`` case-insensitively, and ``object``, ``array…``,
    ``chatHistory`` and the dataset/app types parse JSON5 text that looks like ``{…}`` or
    ``[…]``, falling back to ``{}``, ``[value]`` or ``[]``."""
    if value is None or value is UNDEFINED:
        return value
    if not value_type or value_type == "any":
        return value
    if _has_type(value, value_type):
        return value
    if value_type == "string":
        return js_json(value) if is_js_object(value) else js_string(value)
    if value_type == "number":
        return None if value == "" else _python_number(js_number(value))
    if value_type == "boolean":
        return value.lower() == "true" if isinstance(value, str) else js_truthy(value)
    if value_type == "object":
        return _parse_object_string(js_trim(value) if isinstance(value, str) else value, dict)
    if value_type.startswith("array"):
        return _parse_object_string(value, lambda: [value])
    if value_type in ("datasetQuote", "selectDataset", "selectApp", "chatHistory"):
        return _parse_object_string(value, list)
    return value


def _has_type(value: Any, value_type: str) -> bool:
    """Whether ``value`` already has ``value_type`` as ``valueTypeFormat`` checks it (an
    ``object`` accepts a list: ``typeof [] === 'object'``)."""
    if value_type == "string":
        return isinstance(value, str)
    if value_type == "number":
        return is_js_number(value)
    if value_type == "boolean":
        return isinstance(value, bool)
    if value_type.startswith("array") or value_type in ("datasetQuote", "selectDataset"):
        return isinstance(value, list | tuple)
    if value_type in ("object", "selectApp"):
        return is_js_object(value)
    if value_type == "chatHistory":
        return isinstance(value, list | tuple) or is_js_number(value)
    return False


def _parse_object_string(value: Any, fallback: Callable[[], Any]) -> Any:
    """``json5.parse(value)`` when it is text shaped like ``{…}`` or ``[…]`` and parses, else
    ``fallback()``."""
    if _is_object_string(value):
        try:
            return parse_json5(value)
        except (ValueError, RecursionError):
            pass
    return fallback()


MAX_JSON5_CHARS: Final = 16 * 1024
"""JSON5 is parsed in pure Python: longer text must be plain JSON (parsed by orjson), or a
tenant's megabytes would hold the worker's event loop for seconds."""


def parse_json5(text: str) -> Any:
    """``JSON5.parse``: plain JSON the fast way, JSON5 (comments, single quotes, trailing
    commas) when short enough; ``ValueError`` when it does not parse."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        if len(text) > MAX_JSON5_CHARS:
            raise ValueError(f"not JSON, and too long for JSON5 ({len(text)} characters)") from None
    try:
        return json5.loads(text)
    except RecursionError:  # nested deeper than Python's stack
        raise ValueError("nested too deep") from None


def _is_object_string(value: Any) -> bool:
    if not isinstance(value, str) or value in ("true", "false"):
        return False
    trimmed = js_trim(value)
    return (trimmed.startswith("{") and trimmed.endswith("}")) or (
        trimmed.startswith("[") and trimmed.endswith("]")
    )


# -- references -------------------------------------------------------------------------------


def is_reference(value: Any) -> bool:
    """FastGPT's ``isValidReferenceValueFormat``: a two-item list whose first item is text
    (``[nodeId, outputId]``)."""
    return isinstance(value, list | tuple) and len(value) == 2 and isinstance(value[0], str)


def resolve_reference(value: Any, graph: GraphView, variables: Mapping[str, Any]) -> Any:
    """FastGPT's ``getReferenceVariableValue``: ``[VARIABLE_NODE_ID, key]`` reads a variable,
    ``[nodeId, outputId]`` a node output by id (UNDEFINED when it has none); a reference to a
    node that does not exist is returned as it is (it may be a literal two-string list). A
    non-empty list of references resolves each, spreads list results one level and drops the
    undefined ones. Anything else, falsy values included, is returned unchanged."""
    if not js_truthy(value):
        return value
    if is_reference(value):
        return _resolve_single(value, graph, variables)
    if isinstance(value, list | tuple) and value and all(is_reference(item) for item in value):
        return _flatten_defined(_resolve_single(item, graph, variables) for item in value)
    return value


def _resolve_single(reference: Any, graph: GraphView, variables: Mapping[str, Any]) -> Any:
    node_id, output_id = reference
    if node_id == VARIABLE_NODE_ID:
        return _variable(variables, output_id) if js_truthy(output_id) else UNDEFINED
    if not graph.has_node(node_id):
        return reference
    return graph.output(node_id, output_id) if isinstance(output_id, str) else UNDEFINED


def _variable(variables: Mapping[str, Any], key: Any) -> Any:
    """``variables[key]``: JavaScript property keys are text, a missing one is undefined."""
    return variables.get(key if isinstance(key, str) else js_string(key), UNDEFINED)


def _flatten_defined(values: Iterable[Any]) -> list[Any]:
    """``values.flat().filter(v => v !== undefined)``."""
    flat: list[Any] = []
    for item in values:
        flat.extend(item if isinstance(item, list | tuple) else [item])
    return [item for item in flat if item is not UNDEFINED]


def node_variable_value(
    node_id: str, key: str, graph: GraphView, variables: Mapping[str, Any]
) -> Any:
    """What ``{{$node_id.key$}}`` stands for: a variable for ``VARIABLE_NODE_ID``; else the
    node's output with id ``key`` (typed by :func:`format_by_type`), else its input with that
    key (resolved as a reference: how the HTTP node reads its own dynamic inputs); UNDEFINED
    for an unknown node.

    ``GraphView`` does not tell an output without value or type from a missing output, so
    such an output falls through to the input of the same key (FastGPT would give
    undefined); node templates never give an output id and an input key the same name."""
    if node_id == VARIABLE_NODE_ID:
        return _variable(variables, key)
    if not graph.has_node(node_id):
        return UNDEFINED
    output = graph.output(node_id, key)
    output_type = graph.output_type(node_id, key)
    if output is not UNDEFINED or output_type is not None:
        return format_by_type(output, output_type)
    return resolve_reference(graph.input(node_id, key), graph, variables)


# -- templates --------------------------------------------------------------------------------


def replace_variables(text: Any, variables: Mapping[str, Any]) -> Any:
    """FastGPT's legacy ``replaceVariable``: every ``{{key}}`` whose key is *present* in
    ``variables`` becomes :func:`val_to_str` of its value (a present undefined gives ``''``;
    an unknown ``{{x}}`` stays). Values that bring placeholders are replaced again, up to
    :data:`MAX_REPLACEMENT_DEPTH` more passes; a value holding its own placeholder is left
    unreplaced. Text that is not a string is returned unchanged."""
    if not isinstance(text, str) or _oversize(text) or "{{" not in text:
        return text
    result = text
    for _ in range(MAX_REPLACEMENT_DEPTH + 1):
        if "{{" not in result:
            break
        result, changed = substitute_placeholders(
            VARIABLE_PLACEHOLDER_PATTERN, result, lambda m: _variable_replacement(m, variables)
        )
        if _oversize(result) or not changed:
            break
    return result


def _variable_replacement(match: re.Match[str], variables: Mapping[str, Any]) -> str | None:
    key = match.group(1)
    if key not in variables:
        return None
    value = variables[key]
    if isinstance(value, str) and f"{{{{{key}}}}}" in value:
        return None
    return val_to_str(value)


def replace_editor_variables(
    text: Any,
    graph: GraphView,
    variables: Mapping[str, Any],
    *,
    current_node_id: str | None = None,
) -> Any:
    """FastGPT's ``replaceEditorVariable``: first :func:`replace_variables`, then every
    ``{{$nodeId.key$}}`` becomes :func:`val_to_str` of :func:`node_variable_value`
    (undefined gives ``''``). Replacement repeats while values bring new node placeholders
    (the legacy pass again before each repeat), up to :data:`MAX_REPLACEMENT_DEPTH` more
    passes; a value that holds its own placeholder leaves it unreplaced (FastGPT's "direct
    self-reference" rule). Text that is not a string is returned unchanged.

    ``current_node_id`` is accepted for the caller's bookkeeping and changes nothing:
    FastGPT's self-reference rule looks at the value, not at which node is running, and a
    node reading its own inputs through ``{{$itself.key$}}`` is how its HTTP node works."""
    del current_node_id
    if not isinstance(text, str) or text == "" or _oversize(text) or "{{" not in text:
        return text
    result: str = replace_variables(text, variables)
    if _oversize(result):
        return result
    for depth in range(1, MAX_REPLACEMENT_DEPTH + 2):
        if "{{$" not in result:
            break
        result, changed = substitute_placeholders(
            NODE_VARIABLE_PATTERN, result, lambda m: _node_replacement(m, graph, variables)
        )
        if not changed or _oversize(result):
            break
        if depth <= MAX_REPLACEMENT_DEPTH and "{{$" in result:
            result = replace_variables(result, variables)
            if _oversize(result):
                break
    return result


def _node_replacement(
    match: re.Match[str], graph: GraphView, variables: Mapping[str, Any]
) -> str | None:
    node_id, key = match.group(1), match.group(2)
    value = node_variable_value(node_id, key, graph, variables)
    if isinstance(value, str) and f"{{{{${node_id}.{key}$}}}}" in value:
        return None
    return val_to_str(value)


def substitute_placeholders(
    pattern: re.Pattern[str], text: str, replacement: Callable[[re.Match[str]], str | None]
) -> tuple[str, bool]:
    """One replacement pass of ``pattern`` over ``text``, the replacement computed once per
    distinct placeholder (None keeps it); also whether anything changed."""
    cache: dict[str, str | None] = {}
    changed = False
    length = len(text)

    def replace(match: re.Match[str]) -> str:
        nonlocal changed, length
        placeholder = match.group(0)
        if placeholder not in cache:
            cache[placeholder] = replacement(match)
        new = cache[placeholder]
        if new is None:
            return placeholder
        changed = changed or new != placeholder
        length += len(new) - len(placeholder)
        if length > MAX_STRING_LENGTH:
            raise TextTooLong(
                f"replacing placeholders makes text over {MAX_STRING_LENGTH} characters"
            )
        return new

    return pattern.sub(replace, text), changed


def _oversize(text: str) -> bool:
    return len(text) > MAX_STRING_LENGTH
