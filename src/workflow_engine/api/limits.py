"""413 for request bodies over the limit, in the API's error shape.

FastAPI counts a body as it arrives (``max_body_size`` on the routers, see ``create_app``) and
raises a 413 ``HTTPException`` once it is over; ``install_body_limit`` answers that in our shape.
A declared ``Content-Length`` over the limit is refused here, before routing, without reading
anything: Starlette's limiter answers such a request with its own plain-text 413, replacing
whatever the application sends, so our answer must come before the request reaches it. For the
same reason the limit is set on the routers, not on the ``FastAPI`` app: the app's limiter
wraps every middleware, this one included."""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from workflow_engine.api.errors import error_response
from workflow_engine.api.responses import FastJSONResponse


def too_large(max_bytes: int) -> FastJSONResponse:
    # the client may still be sending: the connection cannot be used for another request
    return error_response(
        413,
        "payload_too_large",
        f"the request body exceeds {max_bytes} bytes",
        headers={"Connection": "close"},
    )


class DeclaredLengthLimit:
    """Refuses a request whose ``Content-Length`` is over ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = dict(scope.get("headers") or []).get(b"content-length", b"")
            if declared.isdigit() and int(declared) > self.max_bytes:
                await too_large(self.max_bytes)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install_body_limit(app: FastAPI, max_bytes: int) -> None:
    """Our 413 for a body over ``max_bytes``, declared or counted by FastAPI's limiter."""

    async def body_too_large(_: Request, __: Exception) -> FastJSONResponse:
        return too_large(max_bytes)

    app.add_exception_handler(413, body_too_large)
    app.add_middleware(DeclaredLengthLimit, max_bytes=max_bytes)
