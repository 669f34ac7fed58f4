"""Typed views of what the API sends."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

FINAL_EVENT_TYPES = frozenset({"execution.completed", "execution.failed", "execution.cancelled"})


class Event(BaseModel):
    """One execution or node event (SPEC section 5)."""

    model_config = ConfigDict(populate_by_name=True, frozen=True)

    id: str
    execution_id: str = Field(alias="executionId")
    type: str
    timestamp: str
    data: Any = None

    @property
    def final(self) -> bool:
        """The execution ended with this event."""
        return self.type in FINAL_EVENT_TYPES
