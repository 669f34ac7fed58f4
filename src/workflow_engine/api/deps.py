"""What the JSON routes depend on: the caller (by its key) and the services the API holds."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from workflow_engine.api.auth import Principal, principal
from workflow_engine.api.services import Services

Who = Annotated[Principal, Depends(principal)]


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


Svc = Annotated[Services, Depends(services)]
