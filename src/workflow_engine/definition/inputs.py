"""Which workflow inputs an ``input_schema`` declares, and the problems of a set of inputs.

Plain JSON Schema lets any property in unless ``additionalProperties`` says otherwise; a
workflow does not (docs/decisions.md): once the schema lists ``properties``, an input it does
not declare is unknown (a typo, ``totl`` for ``total``), at submit and in the templates that
read it, unless the schema sets ``additionalProperties`` to ``true`` or to a schema of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema

from workflow_engine.errors import Problem
from workflow_engine.jsonschemas import json_path, pattern_matches


@dataclass(frozen=True, slots=True)
class DeclaredInputs:
    """The inputs of a closed ``input_schema``: its ``properties``, and the names its
    ``patternProperties`` match."""

    names: frozenset[str]
    patterns: tuple[str, ...] = ()

    @classmethod
    def of(cls, schema: Any) -> DeclaredInputs | None:
        """None when ``schema`` lets any input in: no ``properties`` object at its top, or an
        ``additionalProperties`` other than ``false``."""
        if not isinstance(schema, Mapping):
            return None
        properties = schema.get("properties")
        if not isinstance(properties, Mapping):
            return None
        if schema.get("additionalProperties", False) is not False:
            return None
        patterns = schema.get("patternProperties")
        return cls(
            frozenset(properties),
            tuple(p for p in patterns if isinstance(p, str))
            if isinstance(patterns, Mapping)
            else (),
        )

    def with_names(self, names: frozenset[str]) -> DeclaredInputs:
        return DeclaredInputs(self.names | names, self.patterns)

    def declares(self, name: str) -> bool:
        return name in self.names or any(pattern_matches(p, name) for p in self.patterns)

    def describe(self) -> str:
        """The declared names, for a message."""
        listed = [*sorted(self.names), *(f"/{p}/" for p in self.patterns)]
        return ", ".join(listed) if listed else "none"

    def unknown_input(self, path: str, name: str) -> Problem:
        return Problem(
            path,
            f"unknown input '{name}': input_schema does not declare it "
            f"(declared: {self.describe()})",
            "unknown_input",
        )


def input_problems(
    validator: jsonschema.protocols.Validator | None,
    declared: DeclaredInputs | None,
    inputs: Mapping[str, Any],
) -> list[Problem]:
    """Every way ``inputs`` break the schema, each undeclared input a problem of its own
    (``additionalProperties: false`` alone would name them all in one)."""
    errors = [] if validator is None else list(validator.iter_errors(dict(inputs)))
    problems = [
        Problem(json_path("inputs", e.path), e.message, "invalid_input")
        for e in errors
        if declared is None or e.path or e.validator != "additionalProperties"
    ]
    if declared is not None:
        problems.extend(
            declared.unknown_input(json_path("inputs", [name]), name)
            for name in inputs
            if not declared.declares(name)
        )
    return problems
