"""What a JSON value from a client must be before it is stored, queued or published (SPEC
section 8, value bounds): finite numbers, integers within 64 bits, valid Unicode (no lone
surrogate, in keys or strings), at most ``MAX_DEPTH`` levels of nesting.

Python's ``json`` (which parses request bodies) accepts every one of these; orjson, which
stores and publishes them, refuses them (or writes ``NaN`` as null) — so they are refused where
they come in, each problem located by its JSON path."""

from __future__ import annotations

import math
from typing import Any

from workflow_engine.errors import Problem

MAX_DEPTH = 64
"""Levels of arrays/objects inside one request field (orjson recurses only ~255 deep)."""
MIN_INT = -(2**63)
MAX_INT = 2**64 - 1
"""The integers orjson can write."""
MAX_PROBLEMS = 20
"""Enough to show a client what is wrong; a body full of bad values gets a short answer."""


def value_problems(value: Any, root: str, *, max_depth: int = MAX_DEPTH) -> list[Problem]:
    """Every way ``value`` (parsed JSON) breaks the bounds, at most ``MAX_PROBLEMS``; a path
    is under ``root``. Nesting is counted from ``value`` itself: ``{"a": [1]}`` is 2 deep."""
    if _clean(value, max_depth):
        return []
    return _located(value, root, max_depth)


def _clean(value: Any, levels: int) -> bool:
    """Whether ``value`` holds nothing out of bounds: the common case, answered without
    building a path per value (a 10 MB body: a fraction of its parse time; the walk below,
    which names paths, runs only when something is wrong)."""
    kind = type(value)
    if kind is dict:
        if levels == 0:
            return False
        return all(
            type(key) is str and _valid_unicode(key) and _clean_item(item, levels)
            for key, item in value.items()
        )
    if kind is list:
        return levels > 0 and all(_clean_item(item, levels) for item in value)
    return _clean_item(value, levels + 1)


def _clean_item(item: Any, levels: int) -> bool:
    """An item of a container with ``levels`` left (scalars inline: most values are)."""
    kind = type(item)
    if kind is str:
        return _valid_unicode(item)
    if kind is int:
        return bool(MIN_INT <= item <= MAX_INT)
    if kind is float:
        return math.isfinite(item)
    if kind is dict or kind is list:
        return _clean(item, levels - 1)
    return True


def _located(value: Any, root: str, max_depth: int) -> list[Problem]:
    problems: list[Problem] = []
    # iterative: a body nested thousands deep must not exhaust the interpreter's stack here
    stack: list[tuple[Any, str, int]] = [(value, root, 0)]
    while stack and len(problems) < MAX_PROBLEMS:
        item, path, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= max_depth:
                problems.append(Problem(path, f"nested deeper than {max_depth} levels", "too_deep"))
                continue
            if isinstance(item, dict):
                for key, child in reversed(item.items()):
                    key_text = str(key)
                    if not _valid_unicode(key_text):
                        problems.append(
                            Problem(_join(path, _printable(key_text)), _UNICODE, "invalid_unicode")
                        )
                        continue
                    stack.append((child, _join(path, key_text), depth + 1))
            else:
                for index in reversed(range(len(item))):
                    stack.append((item[index], f"{path}[{index}]", depth + 1))
        elif isinstance(item, str):
            if not _valid_unicode(item):
                problems.append(Problem(path, _UNICODE, "invalid_unicode"))
        elif isinstance(item, float):
            if not math.isfinite(item):
                problems.append(Problem(path, "numbers must be finite", "not_finite"))
        elif isinstance(item, int) and not MIN_INT <= item <= MAX_INT:
            problems.append(Problem(path, "integers must fit in 64 bits", "out_of_range"))
    return [p if p.path else Problem("$", p.message, p.code) for p in problems]


_UNICODE = "strings must be valid Unicode (no lone surrogate)"


def _valid_unicode(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(text: str) -> str:
    """``text`` with lone surrogates escaped, so that the error itself can be rendered."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def json_size_below(value: Any, stop: int) -> int:
    """A lower bound of ``value``'s JSON size in bytes, walked until it reaches ``stop`` (so a
    huge value costs no more than ``stop`` to judge)."""
    size = 0
    stack = [value]
    while stack and size < stop:
        item = stack.pop()
        if type(item) is str:
            size += len(item) + 2
        elif type(item) is dict:
            size += 2
            for key, child in item.items():
                size += len(key) + 4 if type(key) is str else 4
                stack.append(child)
        elif isinstance(item, list | tuple):
            size += 2 + len(item)
            stack.extend(item)
        else:
            size += 4
    return size
