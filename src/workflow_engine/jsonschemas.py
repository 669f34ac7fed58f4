"""JSON Schema checks shared by the definition's ``input_schema``, ``wait_input`` answers and
node inputs: every problem, each located by a JSON path.

A schema comes from a tenant and is checked in the API process, so its regexes must not be able
to stall it (SPEC section 8): ``pattern``, ``patternProperties`` and the patterns
``additionalProperties`` weighs are matched by RE2, in time linear in the input, never by
Python's backtracking ``re`` (``^(a+)+$`` against 40 a's and a "!" would take hours there). A
pattern RE2 cannot compile (backreferences, lookaround) makes the schema invalid."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import jsonschema
import re2
from jsonschema.exceptions import FormatError, ValidationError

from workflow_engine.errors import Problem

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is the caller's error, not a log line

# Keywords whose stock implementation in jsonschema would still run a user's regex through
# ``re`` (its helper for them calls ``re.search``): refused rather than matched unsafely.
_UNSAFE_WITH_PATTERNS = "unevaluatedProperties"


def json_path(root: str, parts: Iterable[int | str]) -> str:
    """``("a", 0, "b")`` under ``root`` -> ``root.a[0].b``."""
    return root + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def compile_schema(schema: Mapping[str, Any]) -> jsonschema.protocols.Validator:
    """A validator for ``schema`` (its ``$schema`` dialect, else the latest) whose regexes run
    on RE2; raises ``jsonschema.SchemaError`` when the schema itself is invalid, or uses a
    pattern RE2 cannot run."""
    cls = _linear(jsonschema.validators.validator_for(schema))
    cls.check_schema(schema, format_checker=_schema_format_checker(cls))
    _check_unsupported(schema)
    return cls(schema)


def schema_problems(
    validator: jsonschema.protocols.Validator, value: Any, root: str, code: str
) -> list[Problem]:
    return [Problem(json_path(root, e.path), e.message, code) for e in validator.iter_errors(value)]


# -- regexes -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _regex(pattern: str) -> Any:
    """The compiled RE2 form of ``pattern``; raises ``re2.error`` when RE2 cannot run it."""
    return re2.compile(pattern, _RE2_OPTIONS)


def _refusal(pattern: str) -> str | None:
    """Why RE2 cannot run ``pattern``, or None."""
    try:
        _regex(pattern)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid"
        reason = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
        return (
            f"{pattern!r} is not a supported regular expression ({reason}; "
            "backreferences and lookaround are not supported)"
        )
    return None


def _search(pattern: str, text: str) -> bool:
    return _regex(pattern).search(text) is not None


def pattern_matches(pattern: str, text: str) -> bool:
    """Whether ``pattern`` (a schema's regex, run by RE2) matches ``text``; False for a pattern
    RE2 cannot run (the schema holding it is invalid anyway)."""
    return _refusal(pattern) is None and _search(pattern, text)


# -- keywords replaced in every dialect -------------------------------------------------------
# Each mirrors jsonschema's own (``jsonschema._keywords``) with ``re.search`` swapped for RE2.
# A pattern RE2 refuses is caught by ``compile_schema``; one that slips through (a dialect
# whose meta-schema does not mark ``patternProperties`` keys as regexes) fails validation
# instead of being matched by ``re``.


def _pattern(
    validator: Any, pattern: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "string"):
        return
    refusal = _refusal(pattern)
    if refusal is not None:
        yield ValidationError(refusal)
    elif not _search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: Mapping[str, Any], instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        refusal = _refusal(pattern)
        if refusal is not None:
            yield ValidationError(refusal)
            continue
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    patterns = [p for p in schema.get("patternProperties", {}) if _refusal(p) is None]
    extras = {
        key
        for key in instance
        if key not in properties and not any(_search(p, key) for p in patterns)
    }
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        names = ", ".join(repr(each) for each in sorted(extras, key=str))
        if "patternProperties" in schema:
            verb = "does" if len(extras) == 1 else "do"
            listed = ", ".join(repr(each) for each in sorted(schema["patternProperties"]))
            yield ValidationError(f"{names} {verb} not match any of the regexes: {listed}")
        else:
            verb = "was" if len(extras) == 1 else "were"
            yield ValidationError(
                f"Additional properties are not allowed ({names} {verb} unexpected)"
            )


@functools.cache
def _linear(cls: Any) -> Any:
    """``cls`` with its regex keywords on RE2 (one class per dialect, made once)."""
    replaced = {"pattern": _pattern, "patternProperties": _pattern_properties}
    if "additionalProperties" in cls.VALIDATORS:
        replaced["additionalProperties"] = _additional_properties
    return jsonschema.validators.extend(cls, replaced)


@functools.cache
def _schema_format_checker(cls: Any) -> jsonschema.FormatChecker:
    """The meta-schema's format checker, whose ``regex`` format (the meta-schema puts it on
    every ``pattern`` and ``patternProperties`` key) asks RE2 instead of ``re``: a schema with
    a pattern RE2 cannot run is invalid, and the error's path names that pattern."""
    stock = jsonschema.validators.validator_for(cls.META_SCHEMA, default=cls).FORMAT_CHECKER
    checker = jsonschema.FormatChecker(())
    checker.checkers = {**stock.checkers, "regex": (_is_re2_regex, ())}
    return checker


def _is_re2_regex(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    refusal = _refusal(instance)
    if refusal is not None:
        raise FormatError(refusal)
    return True


def _check_unsupported(schema: Mapping[str, Any]) -> None:
    """Refuse what would escape the RE2 keywords: a ``patternProperties`` key RE2 cannot run
    (in any dialect), a nested ``$schema`` (jsonschema switches to
    its stock validator class there) and ``unevaluatedProperties`` next to
    ``patternProperties`` (its stock helper matches those with ``re``)."""
    nested_dialect: list[tuple[int | str, ...]] = []
    refused: list[tuple[tuple[int | str, ...], str]] = []
    seen: set[str] = set()

    def walk(node: Any, path: tuple[int | str, ...]) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if key == "$schema" and path:
                    nested_dialect.append((*path, key))
                if key == "patternProperties" and isinstance(value, Mapping):
                    # draft 4 and older do not mark these keys as regexes in the meta-schema
                    refused.extend(((*path, key), r) for r in map(_refusal, value) if r is not None)
                seen.add(key)
                walk(value, (*path, key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, (*path, index))

    walk(schema, ())
    if refused:
        raise jsonschema.SchemaError(refused[0][1], path=refused[0][0])
    if nested_dialect:
        raise jsonschema.SchemaError(
            "a nested $schema is not supported (give the dialect at the top)",
            path=nested_dialect[0],
        )
    if _UNSAFE_WITH_PATTERNS in seen and "patternProperties" in seen:
        raise jsonschema.SchemaError(
            "unevaluatedProperties together with patternProperties is not supported"
        )
