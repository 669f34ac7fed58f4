"""Issue 14, findings 7, 8, 9 and 14: value bounds (SPEC section 8). A value that cannot be
stored or published, or that asks for something absurd, is a 422 naming its path — never a
500 (orjson refusing it) nor a 503 "Redis is unreachable" (bullmq refusing it).

Bodies are written by hand: httpx's ``json=`` refuses NaN, and the attacks are exactly the
JSON a stricter client would not send (``Infinity``, ``"\\ud800"``, 29-digit integers)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import make_settings
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services
from workflow_engine.config import Settings


def definition(**node: Any) -> dict[str, Any]:
    return {
        "id": "bounds",
        "nodes": [{"id": "out", "type": "output", "inputs": {"value": 1}, **node}],
    }


async def post_raw(api: httpx.AsyncClient, path: str, text: str) -> httpx.Response:
    return await api.post(path, content=text, headers={"content-type": "application/json"})


async def execute_raw(api: httpx.AsyncClient, text: str) -> httpx.Response:
    return await post_raw(api, "/api/workflow/execute", text)


def refused(response: httpx.Response, path: str) -> dict[str, Any]:
    """The 422 of SPEC section 4 with a problem at ``path``."""
    assert response.status_code == 422, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert path in [d["path"] for d in error["details"]], error
    return error


def body(**fields: Any) -> str:
    return json.dumps({"workflowDefinition": definition(), **fields})


# -- finding 9: finite numbers, bounded waits --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path"),
    [
        (
            json.dumps({"workflowDefinition": definition(timeout=float("inf"))}),
            "workflowDefinition.nodes[0].timeout",
        ),
        (
            json.dumps({"workflowDefinition": definition(inputs={"value": float("nan")})}),
            "workflowDefinition.nodes[0].inputs.value",
        ),
        (
            json.dumps(
                {"workflowDefinition": definition(retry={"attempts": 3, "backoff": float("inf")})}
            ),
            "workflowDefinition.nodes[0].retry.backoff",
        ),
        (
            json.dumps(
                {"workflowDefinition": definition(retry={"attempts": 2, "max_backoff": 1e400})}
            ),
            "workflowDefinition.nodes[0].retry.max_backoff",
        ),
        (body(inputs={"x": [1, float("nan")]}), "inputs.x[1]"),
        (body(metadata={"m": float("-inf")}), "metadata.m"),
        (
            json.dumps({"workflowDefinition": definition(metadata={"x": float("inf")})}),
            "workflowDefinition.nodes[0].metadata.x",
        ),
        (body(inputs={"deep": {"n": -1e400}}), "inputs.deep.n"),
    ],
)
async def test_non_finite_numbers_are_422(api: httpx.AsyncClient, text: str, path: str) -> None:
    refused(await execute_raw(api, text), path)


@pytest.mark.parametrize(
    ("retry", "path"),
    [
        ({"attempts": 3, "backoff": 1e308}, "workflowDefinition.nodes[0].retry.backoff"),
        ({"attempts": 3, "backoff": 3601}, "workflowDefinition.nodes[0].retry.backoff"),
        ({"attempts": 3, "max_backoff": 7200}, "workflowDefinition.nodes[0].retry.max_backoff"),
    ],
)
async def test_retry_backoff_is_at_most_an_hour(
    api: httpx.AsyncClient, retry: dict[str, Any], path: str
) -> None:
    response = await api.post(
        "/api/workflow/execute", json={"workflowDefinition": definition(retry=retry)}
    )
    assert refused(response, path)["code"] == "invalid_definition"
    fine = definition(retry={"attempts": 3, "backoff": 3600, "max_backoff": 3600})
    assert (await api.post("/api/workflow/execute", json={"workflowDefinition": fine})).is_success


# -- finding 14 (and 9): delay -----------------------------------------------------------------


@pytest.mark.parametrize("delay", [10**15, 10**30, 366 * 86_400_000 + 1])
async def test_a_delay_beyond_366_days_is_422(api: httpx.AsyncClient, delay: int) -> None:
    refused(await execute_raw(api, body(delay=delay)), "delay")


async def test_a_delay_of_366_days_is_accepted(api: httpx.AsyncClient) -> None:
    response = await execute_raw(api, body(delay=366 * 86_400_000))
    assert response.status_code == 202, response.text


# -- finding 7 (and 9): repeat -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("repeat", "path"),
    [
        ({"every": 1}, "repeat.every"),
        ({"every": 999}, "repeat.every"),
        ({"every": 10**30}, "repeat.every"),
        ({"every": 60_000, "limit": 10**30}, "repeat.limit"),
        ({"cron": "* * * * *", "limit": 10**30}, "repeat.limit"),
    ],
)
async def test_repeat_every_and_limit_are_bounded(
    api: httpx.AsyncClient, repeat: dict[str, Any], path: str
) -> None:
    refused(await execute_raw(api, body(repeat=repeat)), path)
    schedules = (await api.get("/api/workflow/schedules")).json()["items"]
    assert schedules == []  # nothing was created


async def test_the_minimum_repeat_interval_is_a_setting(
    services: Services, settings: Settings
) -> None:
    lenient = make_settings(settings.redis_url, settings.store_url, min_repeat_ms=200)
    app = create_app(lenient, await Services.open(lenient))
    opened: Services = app.state.services
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api"
        ) as client:
            refused(await execute_raw(client, body(repeat={"every": 199})), "repeat.every")
            created = await execute_raw(client, body(repeat={"every": 1000}))
            assert created.status_code == 201, created.text
            schedule_id = created.json()["scheduleId"]
            assert (await client.delete(f"/api/workflow/schedules/{schedule_id}")).is_success
    finally:
        await opened.close()


# -- finding 8: nesting, Unicode, integers -----------------------------------------------------


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


async def test_json_nested_300_deep_is_422_not_500(api: httpx.AsyncClient) -> None:
    deep = "[" * 300 + "1" + "]" * 300
    text = f'{{"workflowDefinition": {json.dumps(definition())}, "inputs": {{"x": {deep}}}}}'
    error = refused(await execute_raw(api, text), "inputs.x" + "[0]" * 63)
    assert error["details"][0]["code"] == "too_deep"


async def test_json_nested_beyond_the_parsers_reach_is_422_too(api: httpx.AsyncClient) -> None:
    deep = "[" * 100_000 + "]" * 100_000  # Python's json gives up near 1,000 levels
    text = f'{{"workflowDefinition": {json.dumps(definition())}, "inputs": {{"x": {deep}}}}}'
    error = refused(await execute_raw(api, text), "$")
    assert error["details"][0]["code"] == "too_deep"


async def test_64_levels_in_a_field_are_accepted_65_are_not(api: httpx.AsyncClient) -> None:
    accepted = await execute_raw(api, body(metadata=nested(64)))  # metadata is the first
    assert accepted.status_code == 202, accepted.text
    refused(await execute_raw(api, body(metadata=nested(65))), "metadata" + ".a" * 64)


@pytest.mark.parametrize(
    ("text", "path"),
    [
        (body(inputs={"s": "\ud800"}), "inputs.s"),
        (body(inputs={"list": ["ok", "x\udfffy"]}), "inputs.list[1]"),
        (body(userId="\ud800"), "userId"),
        (body(inputs={"\ud800": 1}), "inputs.\\ud800"),
        (
            json.dumps({"workflowDefinition": definition(name="\udc00")}),
            "workflowDefinition.nodes[0].name",
        ),
    ],
)
async def test_a_lone_surrogate_is_422_not_500(
    api: httpx.AsyncClient, text: str, path: str
) -> None:
    assert "\\ud" in text  # the escape is in the JSON text, as a fuzzer sends it
    error = refused(await execute_raw(api, text), path)
    assert error["details"][0]["code"] == "invalid_unicode"


@pytest.mark.parametrize(
    ("text", "path"),
    [
        (body(inputs={"n": 10**28}), "inputs.n"),
        (body(inputs={"n": -(2**63) - 1}), "inputs.n"),
        (body(metadata={"n": [2**64]}), "metadata.n[0]"),
        (
            json.dumps({"workflowDefinition": {**definition(), "version": 10**28}}),
            "workflowDefinition.version",
        ),
    ],
)
async def test_an_integer_beyond_64_bits_is_422_not_500(
    api: httpx.AsyncClient, text: str, path: str
) -> None:
    refused(await execute_raw(api, text), path)


async def test_integers_at_the_64_bit_edges_are_accepted(api: httpx.AsyncClient) -> None:
    response = await execute_raw(api, body(inputs={"low": -(2**63), "high": 2**64 - 1}))
    assert response.status_code == 202, response.text


async def test_every_body_is_checked_resume_and_rerun_too(api: httpx.AsyncClient) -> None:
    """The bounds hold for every route with a JSON body (checked before the execution is
    even looked up)."""
    resume = await post_raw(api, "/api/workflow/resume/exec_nope", '{"input": NaN}')
    refused(resume, "input")
    rerun = await post_raw(
        api, "/api/workflow/rerun/exec_nope", '{"fromNode": "a", "inputs": {"s": "\\ud800"}}'
    )
    refused(rerun, "inputs.s")


async def test_a_request_without_a_key_is_refused_before_its_values_are_checked(
    settings: Settings,
) -> None:
    """Keys on: a body out of bounds without a key is a 401, not a 422 that describes it."""
    keyed = settings.model_copy(update={"api_keys": "t1=secret"})
    services = await Services.open(keyed)
    try:
        app = create_app(keyed, services)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.post(
                "/api/workflow/execute",
                content=b'{"workflowDefinition": {"id": "w", "nodes": []}, "delay": 1e400}',
                headers={"content-type": "application/json"},
            )
    finally:
        await services.close()
    assert response.status_code == 401, response.text
