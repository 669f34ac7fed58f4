"""The API's documentation (issue 18): ``/docs`` and ``/redoc`` load everything from this server
(they work offline), and the OpenAPI document names the bearer key scheme and the error body
with the statuses each operation answers with."""

from __future__ import annotations

import re

import httpx

from tests.support.served import served
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services

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
