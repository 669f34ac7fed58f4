"""Offline checks of deployment files. Kubernetes objects: Kubernetes' own OpenAPI schemas
(``kubernetes-validate``, strict: unknown fields are errors, at a pinned version) and, for KEDA's
custom resources, a strict schema of ours (tests/deploy/schemas/keda-v1alpha1.json) with the HPA
behavior inside a ScaledObject checked against Kubernetes' schema too. Environments: what a
manifest or env file sets must be accepted by the service's strict configuration."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any
from unittest import mock

import jsonschema
import kubernetes_validate
import yaml

from workflow_engine.config import Settings, load_settings

K8S_VERSION = "1.30.0"
ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "tests" / "deploy" / "schemas"


def documents(text: str) -> list[dict[str, Any]]:
    """The objects of a multi-document YAML text (empty documents dropped)."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def name_of(doc: dict[str, Any]) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


@cache
def _keda_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / "keda-v1alpha1.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _kubernetes_problems(doc: dict[str, Any]) -> list[str]:
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        return [f"{name_of(doc)}: {path}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{name_of(doc)}: no Kubernetes {K8S_VERSION} schema for {doc.get('apiVersion')}"]
    return []


def _keda_problems(doc: dict[str, Any]) -> list[str]:
    found = [
        f"{name_of(doc)}: {'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in _keda_validator().iter_errors(doc)
    ]
    behavior = (
        doc.get("spec", {})
        .get("advanced", {})
        .get("horizontalPodAutoscalerConfig", {})
        .get("behavior")
    )
    if behavior is not None:  # the HPA KEDA makes carries it as it is
        hpa = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": doc["metadata"]["name"]},
            "spec": {
                "scaleTargetRef": {"kind": "Deployment", "name": "x"},
                "maxReplicas": 1,
                "behavior": behavior,
            },
        }
        found += _kubernetes_problems(hpa)
    return found


def problems(docs: Iterable[dict[str, Any]]) -> list[str]:
    """Every schema problem of these objects (empty: all valid)."""
    found: list[str] = []
    for doc in docs:
        if str(doc.get("apiVersion", "")).startswith("keda.sh/"):
            found += _keda_problems(doc)
        else:
            found += _kubernetes_problems(doc)
    return found


def settings_from(env: dict[str, str]) -> Settings:
    """The service's settings from exactly this environment (``ConfigError`` when an unknown
    ``WFE_`` name or a bad value is in it), as ``wfe api``/``wfe worker`` would load them."""
    with mock.patch.dict(os.environ, env, clear=True):
        return load_settings()


def container_env(container: dict[str, Any], secrets: dict[str, str]) -> dict[str, str]:
    """A container's environment with Secret references resolved from ``secrets`` (by key) and
    field references by a stand-in."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif "secretKeyRef" in item.get("valueFrom", {}):
            env[item["name"]] = secrets[item["valueFrom"]["secretKeyRef"]["key"]]
        else:
            env[item["name"]] = f"<{item['name'].lower()}>"
    return env
