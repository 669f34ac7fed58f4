"""The web UI (SPEC section 12): a single-page app under ``/ui``, its files shipped in the
package (``workflow_engine/ui/static``: our ES modules and CSS, and the vendored Preact + htm
and dagre bundles), so that a browser on it never asks another host for anything. The app
talks to the ordinary HTTP API with the key the user entered; the two JSON routes here are the
only things the API did not already answer: who a key is, and the graph of an execution.
None of it is part of the OpenAPI document."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles

from workflow_engine.api.auth import KeyRing
from workflow_engine.api.deps import Svc, Who
from workflow_engine.api.errors import ApiError
from workflow_engine.queue.submit import NotFound

router = APIRouter(include_in_schema=False)

STATIC = Path(str(files("workflow_engine"))) / "ui" / "static"
"""The app's files: a data directory of the package (no Python in it)."""

# 'self' only: a script, style, image or connection to any other host is refused by the
# browser itself (and reported), on top of the app never naming one
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # the files change with the package version; revalidating (ETag) costs a 304
    "Cache-Control": "no-cache",
}
_FILES = StaticFiles(directory=STATIC)
"""Starlette's file serving: paths resolved inside STATIC only, ETag and 304s."""


@router.get("/ui")
async def index() -> HTMLResponse:
    return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"), headers=HEADERS)


@router.get("/ui/")
async def index_slash() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=308)


@router.get("/ui/static/{path:path}")
async def static(path: str, request: Request) -> Response:
    try:
        response = await _FILES.get_response(path, request.scope)
    except HTTPException as exc:
        raise NotFound(f"/ui/static/{path} not found") from exc
    response.headers.update(HEADERS)
    return response


@router.get("/ui/api/session")
async def session(request: Request) -> dict[str, Any]:
    """Whether the caller's key (if any) is accepted, its tenant and whether it is an admin.
    A refused key is an answer here, not a 401: the login screen asks before it has a key, and
    a browser reports every 401 it receives as an error on the console."""
    keys: KeyRing = request.app.state.services.keys
    try:
        who = keys.authenticate(request.headers.get("authorization"))
    except ApiError as refused:
        return {"authenticated": False, "authRequired": True, "message": refused.message}
    return {
        "authenticated": True,
        "authRequired": keys.enabled,
        "tenant": who.tenant,
        "admin": who.admin,
    }


@router.get("/ui/api/graph/{execution_id}")
async def graph(execution_id: str, who: Who, svc: Svc) -> dict[str, Any]:
    """The nodes and edges of the definition an execution runs (the status answer has its node
    results, not its shape)."""
    record = await svc.store.get(execution_id, who.tenant_id, with_definition=True)
    if record is None:
        raise NotFound(f"execution {execution_id} not found")
    return shape(record.definition or {})


def shape(definition: dict[str, Any]) -> dict[str, Any]:
    """What the graph view draws of a definition: ids, types, names; edges and their branch."""
    nodes = [
        {"id": n.get("id"), "type": n.get("type"), "name": n.get("name")}
        for n in definition.get("nodes", [])
        if isinstance(n, dict)
    ]
    edges = [
        {
            "source": e.get("source"),
            "target": e.get("target"),
            "branch": e.get("branch"),
            "recursive": bool(e.get("recursive")),
        }
        for e in definition.get("edges", [])
        if isinstance(e, dict)
    ]
    return {"workflowId": definition.get("id"), "nodes": nodes, "edges": edges}
