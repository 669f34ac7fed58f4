"""JSON Schema checks shared by the definition's ``input_schema``, ``wait_input`` answers and
node inputs: every problem, each located by a JSON path."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jsonschema

from workflow_engine.errors import Problem


def json_path(root: str, parts: Iterable[int | str]) -> str:
    """``("a", 0, "b")`` under ``root`` -> ``root.a[0].b``."""
    return root + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def compile_schema(schema: Mapping[str, Any]) -> jsonschema.protocols.Validator:
    """A validator for ``schema`` (its ``$schema`` dialect, else the latest); raises
    ``jsonschema.SchemaError`` when the schema itself is invalid."""
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def schema_problems(
    validator: jsonschema.protocols.Validator, value: Any, root: str, code: str
) -> list[Problem]:
    return [Problem(json_path(root, e.path), e.message, code) for e in validator.iter_errors(value)]
