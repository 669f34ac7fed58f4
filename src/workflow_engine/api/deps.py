"""What the JSON routes depend on: the caller (by its key) and the services the API holds."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from workflow_engine.api.auth import Principal, principal
from workflow_engine.api.services import Services

Who = Annotated[Principal, Depends(principal)]


async def services(request: Request) -> Services:
    """(``async``: FastAPI runs a plain ``def`` dependency on its thread pool, a hop per
    request that was 7-19% of a busy API's event loop.)"""
    svc: Services = request.app.state.services
    return svc


Svc = Annotated[Services, Depends(services)]
