"""Which nodes are decided: the edge bookkeeping of SPEC section 2 "Graph semantics".

An incoming edge is active when its source completed (or failed with ``on_error: continue``)
and, for a choosing source, its branch is the chosen one. A node is decided once all its incoming
edges are: with at least one active edge it runs, otherwise it is skipped, and the skip
propagates. Pure bookkeeping, no I/O: the executor calls it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workflow_engine.definition.model import ERROR_BRANCH
from workflow_engine.plan import WorkflowPlan
from workflow_engine.vocabulary import NodeStatus


@dataclass(frozen=True, slots=True)
class Settled:
    ready: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def edge_active(branch: str | None, status: NodeStatus, on_error: str, chosen: str | None) -> bool:
    """Whether an edge with ``branch`` is active, given how its source ended."""
    if status is NodeStatus.COMPLETED:
        if branch is None:
            return True
        return branch != ERROR_BRANCH and branch == chosen
    if status is NodeStatus.FAILED:
        if on_error == "branch":
            return branch == ERROR_BRANCH
        return on_error == "continue" and branch is None
    return False


class GraphState:
    def __init__(self, plan: WorkflowPlan) -> None:
        self.plan = plan
        self.waiting_edges = {n: p.incoming for n, p in plan.nodes.items()}
        self.active_edges = dict.fromkeys(plan.nodes, 0)
        self.status = dict.fromkeys(plan.nodes, NodeStatus.PENDING)

    def start(self, restored: dict[str, tuple[NodeStatus, str | None]]) -> Settled:
        """Settle the ``restored`` nodes (node -> final status and chosen branch) and return
        the nodes ready to run first: the roots, or where a resumed execution left off."""
        out = Settled()
        for node, (status, _) in restored.items():
            self.status[node] = status
        for node in self.plan.order:
            if node in restored:
                status, chosen = restored[node]
                more = self.settle(node, status, chosen)
                out.ready.extend(more.ready)
                out.skipped.extend(more.skipped)
            elif self.plan.nodes[node].incoming == 0:
                out.ready.append(node)
        return out

    def settle(self, node: str, status: NodeStatus, chosen: str | None = None) -> Settled:
        """Record that ``node`` ended with ``status``; decide its successors (recursively for
        skips). ``chosen`` is the branch a choosing node picked."""
        out = Settled()
        self.status[node] = status
        stack = [(node, status, chosen)]
        waiting, active, statuses, nodes = (
            self.waiting_edges,
            self.active_edges,
            self.status,
            self.plan.nodes,
        )
        while stack:
            source, source_status, source_chosen = stack.pop()
            on_error = nodes[source].definition.on_error
            for target, branch in nodes[source].outgoing:
                if edge_active(branch, source_status, on_error, source_chosen):
                    active[target] += 1
                waiting[target] -= 1
                if waiting[target] == 0 and statuses[target] is NodeStatus.PENDING:
                    if active[target]:
                        out.ready.append(target)
                    else:
                        statuses[target] = NodeStatus.SKIPPED
                        out.skipped.append(target)
                        stack.append((target, NodeStatus.SKIPPED, None))
        return out
