"""``delay``: wait a number of seconds. A wait longer than the worker's ``park_after`` parks the
execution (no worker holds it) and a delayed job resumes it on any worker."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from workflow_engine.nodes.base import NodeContext, NodeInputs, NodeType
from workflow_engine.vocabulary import from_iso, iso


class DelayInputs(NodeInputs):
    seconds: float = Field(ge=0, le=31 * 24 * 3600)


class DelayNode(NodeType[DelayInputs]):
    type_name = "delay"
    description = "Waits `seconds`; long waits park the execution instead of holding a worker."
    Inputs = DelayInputs
    pure = True

    async def run(self, ctx: NodeContext, inputs: DelayInputs) -> Any:
        now = ctx.clock.now()
        ticket = ctx.ticket or {}
        resume_at = from_iso(ticket.get("resumeAt")) or now + inputs.seconds
        remaining = resume_at - now
        if ctx.park_after is not None and remaining > ctx.park_after:
            ctx.park({"waitingFor": "time", "resumeAt": iso(resume_at)}, resume_at)
        if remaining > 0:
            await ctx.sleep(remaining)
        return {"delayed": inputs.seconds}
