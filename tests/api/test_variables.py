"""Execution variables over the real service (a real Redis, a SQLite store, a worker in this
process), and ``input_schema`` enforced at submit: every unknown or missing input listed."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.test_api import final_status
from workflow_engine.api.services import Services

COUNTER: dict[str, Any] = {
    "id": "counter",
    "input_schema": {
        "type": "object",
        "properties": {"step": {"type": "integer"}, "label": {"type": "string"}},
        "required": ["step", "label"],
    },
    "variables": {"count": 0, "label": "", "untouched": True},
    "nodes": [
        {
            "id": "first",
            "type": "set_variables",
            "inputs": {"values": {"count": "{{ vars.count + inputs.step }}"}},
        },
        {
            "id": "second",
            "type": "set_variables",
            "inputs": {"values": {"count": "{{ vars.count * 2 }}", "label": "{{ inputs.label }}"}},
        },
        {"id": "out", "type": "output", "inputs": {"value": "{{ vars.label }}={{ vars.count }}"}},
    ],
    "edges": [{"source": "first", "target": "second"}, {"source": "second", "target": "out"}],
}


async def submit(api: httpx.AsyncClient, definition: Any, inputs: Any) -> httpx.Response:
    return await api.post(
        "/api/workflow/execute", json={"workflowDefinition": definition, "inputs": inputs}
    )


@pytest.mark.usefixtures("worker")
async def test_the_status_answer_has_the_final_variables(api: httpx.AsyncClient) -> None:
    response = await submit(api, COUNTER, {"step": 5, "label": "n"})
    assert response.status_code == 202
    final = await final_status(api, response.json()["executionId"])
    assert final["context"]["status"] == "completed"
    assert final["result"] == "n=10"
    assert final["variables"] == {"count": 10, "label": "n", "untouched": True}
    assert "variables" not in final["context"]
    outputs = {n["nodeId"]: n["output"] for n in final["nodes"]}
    assert outputs["first"] == {"count": 5, "label": "", "untouched": True}
    assert outputs["second"] == {"count": 10, "label": "n", "untouched": True}


@pytest.mark.usefixtures("worker")
async def test_no_variables_in_the_answer_when_none_is_declared(api: httpx.AsyncClient) -> None:
    plain = {"id": "plain", "nodes": [{"id": "o", "type": "output", "inputs": {"value": 1}}]}
    response = await submit(api, plain, {})
    final = await final_status(api, response.json()["executionId"])
    assert final["result"] == 1
    assert "variables" not in final


async def test_unknown_and_missing_inputs_are_422_listing_each(
    api: httpx.AsyncClient, services: Services
) -> None:
    response = await submit(api, COUNTER, {"step": "five", "stpe": 5, "extra": 1})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_inputs"
    assert sorted((d["path"], d["code"]) for d in error["details"]) == [
        ("inputs", "invalid_input"),  # label is missing
        ("inputs.extra", "unknown_input"),
        ("inputs.step", "invalid_input"),  # not an integer
        ("inputs.stpe", "unknown_input"),
    ]
    messages = {d["path"]: d["message"] for d in error["details"]}
    assert messages["inputs"] == "'label' is a required property"
    assert messages["inputs.stpe"] == (
        "unknown input 'stpe': input_schema does not declare it (declared: label, step)"
    )
    assert (await services.store.count_by_status())["pending"] == 0


async def test_additional_properties_false_lists_each_unknown_input(
    api: httpx.AsyncClient,
) -> None:
    closed = {**COUNTER, "input_schema": {**COUNTER["input_schema"], "additionalProperties": False}}
    response = await submit(api, closed, {"step": 1, "label": "x", "a": 1, "b": 2})
    assert response.status_code == 422
    assert [(d["path"], d["code"]) for d in response.json()["error"]["details"]] == [
        ("inputs.a", "unknown_input"),
        ("inputs.b", "unknown_input"),
    ]


@pytest.mark.usefixtures("worker")
async def test_additional_properties_true_lets_other_inputs_in(api: httpx.AsyncClient) -> None:
    schema = {**COUNTER["input_schema"], "additionalProperties": True}
    response = await submit(
        api, {**COUNTER, "input_schema": schema}, {"step": 1, "label": "x", "more": 1}
    )
    assert response.status_code == 202
    final = await final_status(api, response.json()["executionId"])
    assert final["result"] == "x=2"


@pytest.mark.usefixtures("worker")
async def test_an_input_a_template_reads_is_accepted_though_the_schema_omits_it(
    api: httpx.AsyncClient,
) -> None:
    """SPEC section 2's example reads ``inputs.base_url``, which its schema omits: a submit
    giving it runs (``wfe validate`` warns of the read); an input nothing reads is refused."""
    reads = {
        **COUNTER,
        "nodes": [
            *COUNTER["nodes"][:2],
            {"id": "out", "type": "output", "inputs": {"value": "{{ inputs.suffix }}"}},
        ],
    }
    response = await submit(api, reads, {"step": 1, "label": "x", "suffix": "!"})
    assert response.status_code == 202, response.text
    final = await final_status(api, response.json()["executionId"])
    assert final["result"] == "!"
    refused = await submit(api, reads, {"step": 1, "label": "x", "sufix": "!"})
    assert refused.status_code == 422
    assert [(d["path"], d["code"]) for d in refused.json()["error"]["details"]] == [
        ("inputs.sufix", "unknown_input")
    ]


async def test_undeclared_variables_are_an_invalid_definition(api: httpx.AsyncClient) -> None:
    bad = {
        "id": "bad",
        "variables": {"count": 0},
        "nodes": [
            {"id": "s", "type": "set_variables", "inputs": {"values": {"cuont": 1}}},
            {"id": "o", "type": "output", "inputs": {"value": "{{ vars.total }}"}},
        ],
        "edges": [{"source": "s", "target": "o"}],
    }
    response = await submit(api, bad, {})
    assert response.status_code == 422
    assert [(d["path"], d["code"]) for d in response.json()["error"]["details"]] == [
        ("workflowDefinition.nodes[0].inputs.values.cuont", "unknown_variable"),
        ("workflowDefinition.nodes[1].inputs.value", "unknown_variable"),
    ]


SPEC_EXAMPLE: dict[str, Any] = {  # SPEC section 2, verbatim
    "id": "order_enrich",
    "name": "Order enrichment",
    "version": 1,
    "input_schema": {
        "type": "object",
        "properties": {"order_id": {"type": "string"}},
        "required": ["order_id"],
    },
    "nodes": [
        {
            "id": "fetch",
            "type": "http",
            "inputs": {
                "method": "GET",
                "url": "{{ inputs.base_url }}/orders/{{ inputs.order_id }}",
            },
            "timeout": 10,
            "retry": {"attempts": 3, "backoff": 0.5},
        },
        {
            "id": "check",
            "type": "condition",
            "inputs": {
                "branches": [{"name": "big", "when": "nodes.fetch.output.body.total > 100"}],
                "default": "else",
            },
        },
        {
            "id": "vip",
            "type": "transform",
            "inputs": {"value": {"tier": "vip", "total": "{{ nodes.fetch.output.body.total }}"}},
        },
        {"id": "std", "type": "transform", "inputs": {"value": {"tier": "std"}}},
        {
            "id": "result",
            "type": "output",
            "inputs": {
                "value": "{{ nodes.vip.output if nodes.vip.status == 'completed' "
                "else nodes.std.output }}"
            },
        },
    ],
    "edges": [
        {"source": "fetch", "target": "check"},
        {"source": "check", "target": "vip", "branch": "big"},
        {"source": "check", "target": "std", "branch": "else"},
        {"source": "vip", "target": "result"},
        {"source": "std", "target": "result"},
    ],
}


async def test_the_spec_example_is_accepted_with_the_input_it_reads(api: httpx.AsyncClient) -> None:
    inputs = {"order_id": "42", "base_url": "https://shop.example"}
    response = await submit(api, SPEC_EXAMPLE, inputs)
    assert response.status_code == 202, response.text
    typo = await submit(api, SPEC_EXAMPLE, {**inputs, "order": "42"})
    assert typo.status_code == 422
    assert [d["path"] for d in typo.json()["error"]["details"]] == ["inputs.order"]
