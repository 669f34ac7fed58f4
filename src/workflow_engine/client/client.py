"""The Python SDK: ``AsyncWorkflowEngineClient`` and its blocking twin ``WorkflowEngineClient``.

async with AsyncWorkflowEngineClient("http://127.0.0.1:8000", api_key="...") as client:
    submitted = await client.execute(definition, inputs={"order_id": "A1"})
    final = await client.wait(submitted["executionId"])
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from workflow_engine.client.errors import ClientError, ServiceUnavailable, error_from_response

FINAL = frozenset({"completed", "failed", "cancelled", "skipped"})
DEFAULT_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)


def _execute_call(
    definition: dict[str, Any], inputs: dict[str, Any] | None, options: dict[str, Any]
) -> Call:
    body = {"workflowDefinition": definition, "inputs": inputs or {}}
    body.update({_camel(k): v for k, v in options.items() if v is not None})
    return Call("POST", "/api/workflow/execute", body)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _result(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        raise error_from_response(response.status_code, body)
    return body


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class AsyncWorkflowEngineClient:
    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncWorkflowEngineClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _do(self, call: Call) -> Any:
        try:
            response = await self._http.request(
                call.method, call.path, json=call.json, params=call.params or None
            )
        except httpx.TransportError as exc:
            raise ServiceUnavailable(f"cannot reach {self.base_url}: {exc!r}") from exc
        return _result(response)

    async def execute(
        self, definition: dict[str, Any], inputs: dict[str, Any] | None = None, **options: Any
    ) -> dict[str, Any]:
        """Submit; ``options``: type, priority, delay, client_id, user_id, metadata,
        idempotency_key. Returns ``{executionId, jobId, status}``."""
        result: dict[str, Any] = await self._do(_execute_call(definition, inputs, options))
        return result

    async def get_status(self, execution_id: str, *, nodes: bool = False) -> dict[str, Any]:
        params = {"nodes": "true"} if nodes else {}
        result: dict[str, Any] = await self._do(
            Call("GET", f"/api/workflow/status/{execution_id}", params=params)
        )
        return result

    async def cancel(self, execution_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._do(
            Call("POST", f"/api/workflow/cancel/{execution_id}")
        )
        return result

    async def reconnect(self, client_id: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._do(
            Call("GET", f"/api/workflow/reconnect/{client_id}")
        )
        return result

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._do(Call("GET", "/api/workflow/stats"))
        return result

    async def executions(self, **filters: Any) -> dict[str, Any]:
        params = {_camel(k): v for k, v in filters.items() if v is not None}
        result: dict[str, Any] = await self._do(
            Call("GET", "/api/workflow/executions", params=params)
        )
        return result

    async def wait(
        self,
        execution_id: str,
        *,
        poll: float = 0.2,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        """Poll until the execution is final; return its status (with node results)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = await self.get_status(execution_id, nodes=True)
            if status["context"]["status"] in FINAL:
                return status
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"execution {execution_id} did not finish within {timeout}s")
            await asyncio.sleep(poll)


class WorkflowEngineClient:
    """The blocking client: the same methods as ``AsyncWorkflowEngineClient``."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    def __enter__(self) -> WorkflowEngineClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _do(self, call: Call) -> Any:
        try:
            response = self._http.request(
                call.method, call.path, json=call.json, params=call.params or None
            )
        except httpx.TransportError as exc:
            raise ServiceUnavailable(f"cannot reach {self.base_url}: {exc!r}") from exc
        return _result(response)

    def execute(
        self, definition: dict[str, Any], inputs: dict[str, Any] | None = None, **options: Any
    ) -> dict[str, Any]:
        result: dict[str, Any] = self._do(_execute_call(definition, inputs, options))
        return result

    def get_status(self, execution_id: str, *, nodes: bool = False) -> dict[str, Any]:
        params = {"nodes": "true"} if nodes else {}
        result: dict[str, Any] = self._do(
            Call("GET", f"/api/workflow/status/{execution_id}", params=params)
        )
        return result

    def cancel(self, execution_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._do(Call("POST", f"/api/workflow/cancel/{execution_id}"))
        return result

    def reconnect(self, client_id: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._do(Call("GET", f"/api/workflow/reconnect/{client_id}"))
        return result

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._do(Call("GET", "/api/workflow/stats"))
        return result


__all__ = ["AsyncWorkflowEngineClient", "ClientError", "WorkflowEngineClient"]
