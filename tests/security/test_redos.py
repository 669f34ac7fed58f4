"""Issue 14, finding 2: a tenant's JSON Schema regex cannot stall the API process. Patterns
are matched by RE2 (linear time); one RE2 cannot run is refused at submit, by its path.

Each ReDoS case doubles its cost per character with Python's ``re`` (~1 s at 24 a's here, ~1
min at 32, hours at 40). ``re`` holds the GIL, so pytest-timeout cannot interrupt it: the
attack is long enough that ``re`` takes far longer than the timeout, short enough that it
returns within a minute or so, and then the timeout fails the test. With RE2 it takes
microseconds."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.processes import wait_until

EVIL = "^(a+)+$"
ATTACK = "a" * 32 + "!"


def definition(input_schema: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "redos",
        "nodes": [{"id": "out", "type": "output", "inputs": {"value": "{{ inputs }}"}}],
    }
    if input_schema is not None:
        body["input_schema"] = input_schema
    return body


def asking(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "ask_redos",
        "nodes": [
            {"id": "ask", "type": "wait_input", "inputs": {"prompt": "?", "schema": schema}},
            {"id": "out", "type": "output", "inputs": {"value": "{{ nodes.ask.output }}"}},
        ],
        "edges": [{"source": "ask", "target": "out"}],
    }


async def execute(api: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await api.post("/api/workflow/execute", json=body)


@pytest.mark.timeout(5)
async def test_a_catastrophic_pattern_in_input_schema_is_matched_in_linear_time(
    api: httpx.AsyncClient,
) -> None:
    schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": EVIL}}}
    response = await execute(
        api, {"workflowDefinition": definition(schema), "inputs": {"s": ATTACK}}
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_inputs"
    assert [d["path"] for d in error["details"]] == ["inputs.s"]
    # the same pattern still accepts what it should
    ok = await execute(api, {"workflowDefinition": definition(schema), "inputs": {"s": "aaaa"}})
    assert ok.status_code == 202


@pytest.mark.timeout(5)
async def test_pattern_properties_and_additional_properties_are_matched_in_linear_time(
    api: httpx.AsyncClient,
) -> None:
    schema = {
        "type": "object",
        "patternProperties": {EVIL: {"type": "integer"}},
        "additionalProperties": False,
    }
    response = await execute(
        api, {"workflowDefinition": definition(schema), "inputs": {ATTACK: 1, "aaa": "x"}}
    )
    assert response.status_code == 422
    details = response.json()["error"]["details"]
    assert {d["path"] for d in details} == {"inputs", "inputs.aaa"}
    assert any(ATTACK in d["message"] for d in details)  # not a pattern property: an extra one


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        (
            {"properties": {"s": {"type": "string", "pattern": r"^(a)\1$"}}},
            "workflowDefinition.input_schema.properties.s.pattern",
        ),
        (
            {"properties": {"s": {"type": "string", "pattern": "^(?=a).*$"}}},
            "workflowDefinition.input_schema.properties.s.pattern",
        ),
        (
            {"patternProperties": {r"(x)\1": {}}},
            "workflowDefinition.input_schema.patternProperties",
        ),
        (  # draft 4's meta-schema does not mark patternProperties keys as regexes
            {
                "$schema": "http://json-schema.org/draft-04/schema#",
                "patternProperties": {r"(?<=x)y": {}},
            },
            "workflowDefinition.input_schema.patternProperties",
        ),
    ],
)
async def test_a_pattern_re2_cannot_run_is_refused_at_submit_by_its_path(
    api: httpx.AsyncClient, schema: dict[str, Any], path: str
) -> None:
    response = await execute(api, {"workflowDefinition": definition({"type": "object", **schema})})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_definition"
    assert [d["path"] for d in error["details"]] == [path]
    assert "not a supported regular expression" in error["details"][0]["message"]


async def test_a_wait_input_schema_with_a_backreference_is_refused_at_submit(
    api: httpx.AsyncClient,
) -> None:
    schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": r"(a)\1"}}}
    response = await execute(api, {"workflowDefinition": asking(schema)})
    assert response.status_code == 422
    (detail,) = response.json()["error"]["details"]
    assert detail["path"].startswith("workflowDefinition.nodes[0].inputs.schema")
    assert "schema.properties.s.pattern" in detail["message"]


@pytest.mark.timeout(15)  # waiting for the worker included; the attack is 4x longer for re
@pytest.mark.usefixtures("worker")
async def test_an_answer_is_checked_against_a_wait_input_pattern_in_linear_time(
    api: httpx.AsyncClient,
) -> None:
    schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": EVIL}}}
    submitted = await execute(api, {"workflowDefinition": asking(schema)})
    assert submitted.status_code == 202, submitted.text
    execution_id = submitted.json()["executionId"]

    async def waiting() -> bool:
        body = (await api.get(f"/api/workflow/status/{execution_id}")).json()
        return bool(body["context"]["status"] == "waiting")

    await wait_until(waiting, 20, f"{execution_id} to wait for input")
    refused = await api.post(
        f"/api/workflow/resume/{execution_id}", json={"input": {"s": "aa" + ATTACK}}
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "invalid_answer"
    assert [d["path"] for d in refused.json()["error"]["details"]] == ["input.s"]
    accepted = await api.post(f"/api/workflow/resume/{execution_id}", json={"input": {"s": "aa"}})
    assert accepted.status_code == 202


async def test_schemas_that_would_reach_backtracking_regexes_are_refused(
    api: httpx.AsyncClient,
) -> None:
    """jsonschema's ``unevaluatedProperties`` helper and a nested dialect's stock validator
    would match patterns with ``re``: refused rather than run unsafely."""
    for schema, path in (
        (
            {"patternProperties": {"^a": {}}, "unevaluatedProperties": False},
            "workflowDefinition.input_schema",
        ),
        (
            {"properties": {"s": {"$schema": "http://json-schema.org/draft-07/schema#"}}},
            "workflowDefinition.input_schema.properties.s.$schema",
        ),
    ):
        response = await execute(api, {"workflowDefinition": definition(schema)})
        assert response.status_code == 422, schema
        assert [d["path"] for d in response.json()["error"]["details"]] == [path]
