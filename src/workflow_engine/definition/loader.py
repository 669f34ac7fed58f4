"""Reading definitions and input files: JSON, or YAML by extension (``.yaml``/``.yml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from workflow_engine.errors import WorkflowEngineError


class LoadError(WorkflowEngineError):
    """A file could not be read or parsed."""


def load_document(path: str | Path) -> Any:
    file = Path(path)
    try:
        text = file.read_bytes()
    except OSError as exc:
        raise LoadError(f"cannot read {file}: {exc.strerror or exc}") from exc
    if file.suffix.lower() in {".yaml", ".yml"}:
        import yaml  # only for YAML files: ~15 ms that `wfe validate x.json` need not pay

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise LoadError(f"{file} is not valid YAML: {exc}") from exc
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise LoadError(f"{file} is not valid JSON: {exc}") from exc


def parse_assignment(text: str) -> tuple[str, Any]:
    """``key=value`` from the command line; the value is JSON when it parses as JSON
    (``n=3``, ``flag=true``, ``tags=["a"]``), else the literal string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise LoadError(f"expected key=value, got {text!r}")
    try:
        return key, orjson.loads(value)
    except orjson.JSONDecodeError:
        return key, value
