"""Node types for tests, bound to a ``Probe`` that records what ran and lets a test hold nodes."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from workflow_engine.errors import NodeError
from workflow_engine.nodes.base import NodeContext, NodeInputs, NodeType
from workflow_engine.nodes.registry import NodeRegistry


@dataclass
class Probe:
    started: list[str] = field(default_factory=list)
    calls: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    entered: defaultdict[str, asyncio.Event] = field(
        default_factory=lambda: defaultdict(asyncio.Event)
    )
    release: defaultdict[str, asyncio.Event] = field(
        default_factory=lambda: defaultdict(asyncio.Event)
    )
    active: int = 0
    max_active: int = 0


class GateInputs(NodeInputs):
    gate: str = ""


class FlakyInputs(NodeInputs):
    failures: int = 1
    retryable: bool = True


def make_registry(probe: Probe) -> NodeRegistry:
    """Built-ins plus ``gate`` (waits until the test releases it), ``flaky`` (fails its first
    ``failures`` calls) and ``count`` (records its call), all bound to ``probe``."""
    registry = NodeRegistry.with_builtins()

    @registry.register
    class Gate(NodeType[GateInputs]):
        type_name = "gate"
        Inputs = GateInputs

        async def run(self, ctx: NodeContext, inputs: GateInputs) -> Any:
            name = inputs.gate or ctx.node_id
            probe.started.append(ctx.node_id)
            probe.active += 1
            probe.max_active = max(probe.max_active, probe.active)
            probe.entered[name].set()
            try:
                await probe.release[name].wait()
            finally:
                probe.active -= 1
            return {"gate": name}

    @registry.register
    class Flaky(NodeType[FlakyInputs]):
        type_name = "flaky"
        Inputs = FlakyInputs

        async def run(self, ctx: NodeContext, inputs: FlakyInputs) -> Any:
            probe.calls[ctx.node_id] += 1
            if probe.calls[ctx.node_id] <= inputs.failures:
                raise NodeError(f"failure {probe.calls[ctx.node_id]}", retryable=inputs.retryable)
            return {"calls": probe.calls[ctx.node_id], "attempt": ctx.attempt}

    @registry.register
    class Stubborn(NodeType[GateInputs]):
        """Ignores cancellation (as some client libraries do) and fails later instead."""

        type_name = "stubborn"
        Inputs = GateInputs

        async def run(self, ctx: NodeContext, inputs: GateInputs) -> Any:
            probe.entered[ctx.node_id].set()
            try:
                await probe.release[ctx.node_id].wait()
            except asyncio.CancelledError:
                await probe.release[ctx.node_id].wait()
                raise NodeError("too late") from None
            return "done"

    @registry.register
    class Count(NodeType[GateInputs]):
        type_name = "count"
        Inputs = GateInputs

        async def run(self, ctx: NodeContext, inputs: GateInputs) -> Any:
            probe.started.append(ctx.node_id)
            probe.calls[ctx.node_id] += 1
            return ctx.node_id

    return registry
