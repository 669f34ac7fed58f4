"""The API's documentation (issue 18): ``/docs`` and ``/redoc`` load everything from this server
(they work offline), and the OpenAPI document names the bearer key scheme and the error body
with the statuses each operation answers with, and documents every body with a model and an
example: real answers of a real flow are checked against it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.conftest import make_settings
from tests.support.http_server import LocalHttpServer
from tests.support.processes import wait_until
from tests.support.served import served
from tests.support.services import RedisServer
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services
from workflow_engine.config import Settings
from workflow_engine.worker.worker import WorkerService

REFERENCE = re.compile(r"""(?:src|href|url)\s*[=:(]\s*["']?([^"' )>]+)""")


async def test_the_docs_pages_reference_nothing_outside_the_server(services: Services) -> None:
    async with (
        served(create_app(services.settings, services)) as address,
        httpx.AsyncClient(base_url=f"http://{address}") as http,
    ):
        for page in ("/docs", "/redoc"):
            answer = await http.get(page)
            assert answer.status_code == 200
            html = answer.text
            references = REFERENCE.findall(html)
            assert references, html
            external = [r for r in references if re.match(r"(?:https?:)?//", r)]
            assert not external, (page, external)
            for reference in references:
                if reference.startswith("/docs-assets/"):
                    asset = await http.get(reference)
                    assert asset.status_code == 200, reference
                    assert len(asset.content) > 1000
            assert "/openapi.json" in html


async def test_the_openapi_document_has_the_key_scheme_and_the_error_responses(
    services: Services,
) -> None:
    async with (
        served(create_app(services.settings, services)) as address,
        httpx.AsyncClient(base_url=f"http://{address}") as http,
    ):
        document = (await http.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["bearerKey"]["description"],
    }
    error = document["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["required"] == ["code", "message", "details"]
    execute = document["paths"]["/api/workflow/execute"]["post"]
    assert execute["security"] == [{"bearerKey": []}]
    for status in ("401", "413", "422", "429", "503"):
        ref = execute["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        assert ref == "#/components/schemas/Error"
    status_op = document["paths"]["/api/workflow/status/{execution_id}"]["get"]
    assert "404" in status_op["responses"]
    assert "413" not in status_op["responses"]
    assert "403" in document["paths"]["/api/admin/queues/{name}/pause"]["post"]["responses"]
    assert "security" not in document["paths"]["/health"]["get"]


# -- every body a model with an example, and the models true to the answers -------------------

DOCUMENT_URI = "urn:wfe:openapi"
SSE = ("get", "/api/workflow/events/{execution_id}")
"""The one streamed answer (``text/event-stream``): no JSON body to document."""


@pytest.fixture
def settings(redis_server: RedisServer, tmp_path: Path) -> Settings:
    # a key to encrypt connections and to sign callbacks with
    return make_settings(
        redis_server.url, f"sqlite:///{tmp_path}/wfe.db", secret_key="openapi-test-key"
    )


@pytest.fixture
async def document(services: Services) -> dict[str, Any]:
    async with (
        served(create_app(services.settings, services)) as address,
        httpx.AsyncClient(base_url=f"http://{address}") as http,
    ):
        answer = await http.get("/openapi.json")
    assert answer.status_code == 200
    found: dict[str, Any] = answer.json()
    return found


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of every operation under /api/, and the probes."""
    return [
        (method, path, operation)
        for path, operations in document["paths"].items()
        if path.startswith("/api/") or path in ("/health", "/ready")
        for method, operation in operations.items()
    ]


def _pointer(*parts: str) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


_FORMATS = FormatChecker(formats=())


@_FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    """ISO 8601 with a time zone, as the API writes times (``...T09:15:02.114Z``)."""
    if not isinstance(value, str):
        return True
    return "T" in value and datetime.fromisoformat(value).tzinfo is not None


def _validator(document: dict[str, Any], pointer: str) -> Draft202012Validator:
    """A validator for the schema at ``pointer`` in the document, its ``$ref``s resolved
    against the document."""
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(DOCUMENT_URI, resource)
    return Draft202012Validator(
        {"$ref": f"{DOCUMENT_URI}#{pointer}"}, registry=registry, format_checker=_FORMATS
    )


def _component(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    assert set(schema) == {"$ref"}, schema
    assert ref.startswith("#/components/schemas/"), schema
    component: dict[str, Any] = document["components"]["schemas"][ref.rpartition("/")[2]]
    return component


async def test_every_body_is_documented_by_a_model_with_an_example(
    document: dict[str, Any],
) -> None:
    operations = _operations(document)
    assert len(operations) >= 25
    for method, path, operation in operations:
        where = f"{method.upper()} {path}"
        successes = {s: r for s, r in operation["responses"].items() if s.startswith("2")}
        assert successes, where
        if (method, path) == SSE:
            assert "text/event-stream" in successes["200"]["content"], where
            continue
        for status, response in successes.items():
            schema = response["content"]["application/json"]["schema"]
            assert _component(document, schema).get("examples"), (where, status)
        if "requestBody" in operation:
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            assert _component(document, schema).get("examples"), (where, "request body")
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")):
                schema = response["content"]["application/json"]["schema"]
                expected = "Readiness" if path == "/ready" else "Error"
                assert schema == {"$ref": f"#/components/schemas/{expected}"}, (where, status)


async def test_the_examples_satisfy_their_schemas(document: dict[str, Any]) -> None:
    checked = 0
    for name, schema in document["components"]["schemas"].items():
        validator = _validator(document, _pointer("components", "schemas", name))
        for example in schema.get("examples", []):
            errors = [e.message for e in validator.iter_errors(example)]
            assert not errors, (name, example, errors)
            checked += 1
    assert checked >= 50


@dataclass
class Checked:
    """The API over a real socket; each answer checked against the schema the document gives
    for its operation and status (a status the operation does not document fails)."""

    http: httpx.AsyncClient
    document: dict[str, Any]
    seen: set[tuple[str, str, str]] = field(default_factory=set)

    async def call(
        self,
        method: str,
        template: str,
        expect: int,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        **path: str,
    ) -> Any:
        url = template.format(**path)
        answer = await self.http.request(
            method, url, json=json, content=content, params=params, headers=headers
        )
        assert answer.status_code == expect, (method, url, answer.status_code, answer.text)
        responses = self.document["paths"][template][method]["responses"]
        status = str(answer.status_code)
        assert status in responses, f"{method.upper()} {template} answered an undocumented {status}"
        assert answer.headers["content-type"] == "application/json"
        pointer = _pointer("paths", template, method, "responses", status, "content")
        validator = _validator(self.document, pointer + "/application~1json/schema")
        body = answer.json()
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]
        assert not errors, (method, url, status, errors, body)
        self.seen.add((method, template, status))
        return body

    async def final(self, execution_id: str, **params: Any) -> dict[str, Any]:
        """The execution's status once it ended (each answer on the way checked too)."""

        async def ended() -> dict[str, Any] | None:
            body: dict[str, Any] = await self.call(
                "get",
                "/api/workflow/status/{execution_id}",
                200,
                params=params,
                execution_id=execution_id,
            )
            done = body["context"]["status"] in {"completed", "failed", "cancelled"}
            return body if done else None

        found: dict[str, Any] = await wait_until(ended, 30, f"{execution_id} to end")
        return found

    async def submit(self, body: dict[str, Any], expect: int = 202) -> Any:
        return await self.call("post", "/api/workflow/execute", expect, json=body)


ECHO = {"id": "echo", "nodes": [{"id": "a", "type": "echo", "inputs": {"word": "{{ inputs.w }}"}}]}
VARIABLES = {
    "id": "counter",
    "variables": {"count": 0},
    "nodes": [{"id": "set", "type": "set_variables", "inputs": {"values": {"count": 1}}}],
}
FAILING = {"id": "failing", "nodes": [{"id": "boom", "type": "fail", "inputs": {"message": "no"}}]}
ASK = {
    "id": "ask",
    "nodes": [
        {
            "id": "approve",
            "type": "wait_input",
            "inputs": {
                "prompt": "Refund?",
                "schema": {
                    "type": "object",
                    "properties": {"approved": {"type": "boolean"}},
                    "required": ["approved"],
                },
            },
        },
        {"id": "after", "type": "echo", "inputs": {"answer": "{{ nodes.approve.output }}"}},
    ],
    "edges": [{"source": "approve", "target": "after"}],
}


@pytest.fixture
async def checked(
    services: Services, worker: WorkerService, document: dict[str, Any]
) -> AsyncIterator[Checked]:
    async with (
        served(create_app(services.settings, services)) as address,
        httpx.AsyncClient(base_url=f"http://{address}", timeout=30) as http,
    ):
        yield Checked(http, document)


async def _stored_workflows(api: Checked) -> None:
    for _ in range(2):
        await api.call("post", "/api/workflows", 201, json={"definition": ECHO, "name": "Echo"})
    await api.call("get", "/api/workflows", 200, params={"limit": 1})
    await api.call("get", "/api/workflows/{workflow_id}", 200, workflow_id="echo")
    await api.call(
        "get", "/api/workflows/{workflow_id}", 200, params={"version": 1}, workflow_id="echo"
    )
    versions = await api.call(
        "get", "/api/workflows/{workflow_id}/versions", 200, workflow_id="echo"
    )
    assert [v["version"] for v in versions["items"]] == [1, 2]
    await api.call("get", "/api/workflows/{workflow_id}", 404, workflow_id="nope")
    await api.call("get", "/api/workflows", 422, params={"limit": 0})
    bad = {"definition": {"id": "bad", "nodes": [{"id": "a", "type": "teleport"}]}}
    await api.call("post", "/api/workflows", 422, json=bad)


async def _executions(api: Checked, receiver: LocalHttpServer) -> dict[str, str]:
    """Run one execution of each kind of ending; their ids by kind."""
    ids: dict[str, str] = {}
    stored = await api.submit(
        {
            "workflowId": "echo",
            "inputs": {"w": "hi"},
            "clientId": "c1",
            "metadata": {"orderId": "A-1"},
            "callbackUrl": f"{receiver.base_url}/echo/hook",
        }
    )
    ids["stored"] = stored["executionId"]
    final = await api.final(ids["stored"], nodes="true")
    assert final["context"]["workflowVersion"] == 2
    assert final["nodes"][0]["output"] == {"word": "hi"}

    async def delivered() -> bool:
        body = await api.call(
            "get", "/api/workflow/status/{execution_id}", 200, execution_id=ids["stored"]
        )
        return bool(body["callback"]["deliveries"])

    await wait_until(delivered, 30, "the callback to be delivered")
    # the documented request example is a workflow that runs
    example = api.document["components"]["schemas"]["ExecuteRequest"]["examples"][0]
    first = await api.submit(example)
    assert (await api.submit(example))["executionId"] == first["executionId"]  # idempotent
    assert (await api.final(first["executionId"]))["context"]["status"] == "completed"
    with_variables = await api.submit({"workflowDefinition": VARIABLES})
    assert (await api.final(with_variables["executionId"]))["variables"] == {"count": 1}
    failing = await api.submit({"workflowDefinition": FAILING})
    failed = await api.final(failing["executionId"], nodes="true")
    assert failed["context"]["error"]["nodeId"] == "boom"
    assert failed["nodes"][0]["error"]["type"] == "fail"
    ids["failed"] = failing["executionId"]
    return ids


async def _waiting_and_cancelled(api: Checked, stored_id: str) -> None:
    asking = (await api.submit({"workflowDefinition": ASK, "clientId": "c2"}))["executionId"]

    async def waiting() -> bool:
        body = await api.call(
            "get", "/api/workflow/status/{execution_id}", 200, execution_id=asking
        )
        return bool(body["context"]["status"] == "waiting")

    await wait_until(waiting, 30, "the execution to wait for input")
    active = await api.call("get", "/api/workflow/reconnect/{client_id}", 200, client_id="c2")
    assert [a["executionId"] for a in active] == [asking]
    await api.call(
        "post",
        "/api/workflow/resume/{execution_id}",
        422,
        json={"input": {"approved": "maybe"}},
        execution_id=asking,
    )
    await api.call(
        "post",
        "/api/workflow/resume/{execution_id}",
        202,
        json={"input": {"approved": True}},
        execution_id=asking,
    )
    assert (await api.final(asking))["context"]["status"] == "completed"
    rerun = await api.call(
        "post",
        "/api/workflow/rerun/{execution_id}",
        202,
        json={"fromNode": "a"},
        execution_id=stored_id,
    )
    await api.final(rerun["executionId"])
    later = await api.submit({"workflowDefinition": ECHO, "delay": 60_000, "clientId": "c3"})
    cancel = "/api/workflow/cancel/{execution_id}"
    await api.call("post", cancel, 200, execution_id=later["executionId"])
    await api.call("post", cancel, 409, execution_id=later["executionId"])
    await api.call("post", cancel, 404, execution_id="exec_nope")
    await api.call("get", "/api/workflow/status/{execution_id}", 404, execution_id="exec_nope")


async def _schedules(api: Checked) -> None:
    created = await api.submit(
        {"workflowDefinition": ECHO, "repeat": {"every": 3_600_000}}, expect=201
    )
    await api.call("get", "/api/workflow/schedules", 200)
    one = "/api/workflow/schedules/{schedule_id}"
    await api.call("get", one, 200, schedule_id=created["scheduleId"])
    await api.call("delete", one, 200, schedule_id=created["scheduleId"])
    await api.call("get", one, 404, schedule_id=created["scheduleId"])


async def _listings(api: Checked) -> None:
    await api.call("get", "/api/workflow/stats", 200)
    page = await api.call("get", "/api/workflow/executions", 200, params={"limit": 2})
    assert page["nextCursor"] is not None
    await api.call(
        "get", "/api/workflow/executions", 200, params={"limit": 2, "cursor": page["nextCursor"]}
    )
    await api.call("get", "/api/workflow/executions", 422, params={"status": "sleeping"})
    await api.call("get", "/api/workflow/executions", 422, params={"limit": 0})


async def _refusals(api: Checked) -> None:
    invalid = {"workflowDefinition": {"id": "x", "nodes": [{"id": "a", "type": "teleport"}]}}
    await api.submit(invalid, expect=422)
    await api.submit({"workflowDefinition": ECHO, "colour": "red"}, expect=422)
    await api.call(
        "post",
        "/api/workflow/execute",
        400,
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    await api.submit({"workflowId": "nope"}, expect=404)


async def _connections(api: Checked) -> None:
    body = {"name": "local", "baseUrl": "http://127.0.0.1:1/v1", "apiKey": "sk-test"}
    await api.call("post", "/api/connections", 201, json=body)
    listed = await api.call("get", "/api/connections", 200)
    assert [c["name"] for c in listed["items"]] == ["local"]
    await api.call("delete", "/api/connections/{name}", 200, name="local")
    await api.call("delete", "/api/connections/{name}", 404, name="local")
    await api.call("get", "/api/callbacks/secret", 200)


async def _admin(api: Checked, failed_id: str) -> None:
    await api.call("get", "/api/admin/queues", 200)
    queue = "/api/admin/queues/{name}"
    await api.call("post", queue + "/pause", 200, name="realtime")
    await api.call("post", queue + "/resume", 200, name="realtime")
    await api.call("post", queue + "/pause", 404, name="nope")
    await api.submit({"workflowDefinition": ECHO, "type": "background", "delay": 60_000})
    cleaned = await api.call(
        "post", queue + "/clean", 200, json={"state": "delayed"}, name="background"
    )
    assert cleaned["removed"] == cleaned["cancelled"] == 1
    await api.call("post", queue + "/clean", 422, json={"state": "gone"}, name="background")
    retried = await api.call("post", queue + "/retry-failed", 200, name="workflow")
    assert retried["retried"] == 1
    await api.final(failed_id)


async def _events(api: Checked, execution_id: str) -> None:
    async with api.http.stream("GET", f"/api/workflow/events/{execution_id}") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        text = "".join([chunk async for chunk in stream.aiter_text()])
    assert "execution.completed" in text
    await api.call("get", SSE[1], 404, execution_id="exec_nope")


async def test_real_answers_match_the_documented_schemas(
    checked: Checked, http_server: LocalHttpServer
) -> None:
    api = checked
    await api.call("get", "/health", 200)
    await api.call("get", "/ready", 200)
    await _stored_workflows(api)
    ids = await _executions(api, http_server)
    await _waiting_and_cancelled(api, ids["stored"])
    await _schedules(api)
    await _listings(api)
    await _refusals(api)
    await _connections(api)
    await _admin(api, ids["failed"])
    await _events(api, ids["stored"])
    await api.call("delete", "/api/workflows/{workflow_id}", 200, workflow_id="echo")
    await api.submit({"workflowId": "echo"}, expect=404)
    # every operation answered at least once with a success, checked against its model
    succeeded = {(m, p) for m, p, s in api.seen if s.startswith("2")}
    missing = {(m, p) for m, p, _ in _operations(api.document)} - succeeded - {SSE}
    assert not missing, missing
