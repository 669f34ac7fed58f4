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
    rearmed: list[str] = field(default_factory=list)
    """Nodes that ran (or were skipped) and are pending again: a recursive edge re-runs them."""


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


SKIP_COST = 0.1
"""What a skip takes of ``max_run_times`` (a run takes 1), as FastGPT counts."""


class GraphState:
    def __init__(self, plan: WorkflowPlan) -> None:
        self.plan = plan
        self.waiting_edges = {n: p.incoming for n, p in plan.nodes.items()}
        self.active_edges = dict.fromkeys(plan.nodes, 0)
        self.status = dict.fromkeys(plan.nodes, NodeStatus.PENDING)
        self.recursive = any(p.loops_back for p in plan.nodes.values())
        """With recursive edges: each forward edge's decision is kept (a re-run undoes the
        decisions of the nodes it runs again) and the runs are counted."""
        self.runs_left = float(plan.definition.max_run_times)
        self.decided: dict[tuple[str, int], bool] = {}
        self.loops_due: list[str] = []
        """Targets of active recursive edges, re-run once the run is idle (no node running
        or queued: a node never runs twice at once)."""
        self._regions: dict[str, tuple[frozenset[str], tuple[tuple[str, int, str], ...]]] = {}

    @property
    def exhausted(self) -> bool:
        """``max_run_times`` is spent: nothing more runs (FastGPT's ``maxRunTimes``)."""
        return self.recursive and self.runs_left <= 0

    def start(self, restored: dict[str, tuple[NodeStatus, str | None]]) -> Settled:
        """Settle the ``restored`` nodes (node -> final status and chosen branch) and return
        the nodes ready to run first: the roots, or where a resumed execution left off."""
        out = Settled()
        for node, (status, _) in restored.items():
            self.status[node] = status
        for node in self.plan.order:
            if node in restored:
                status, chosen = restored[node]
                more = self._settle(node, status, chosen)
                out.ready.extend(more.ready)
                out.skipped.extend(more.skipped)
            elif self.plan.nodes[node].incoming == 0:
                out.ready.append(node)
        return out

    def settle(self, node: str, status: NodeStatus, chosen: str | None = None) -> Settled:
        """Record that ``node`` ended with ``status``; decide its successors (recursively for
        skips). An active recursive edge makes its target due (``loops_due``). ``chosen`` is
        the branch a choosing node picked."""
        out = self._settle(node, status, chosen)
        if self.recursive:
            self.runs_left -= 1 if status is not NodeStatus.SKIPPED else SKIP_COST
            self.runs_left -= SKIP_COST * len(out.skipped)
            self.loop_back(node, status, chosen)
            if self.exhausted:
                out.ready.clear()
        return out

    def loop_back(self, node: str, status: NodeStatus, chosen: str | None) -> None:
        """Make the targets of ``node``'s active recursive edges due."""
        plan_node = self.plan.nodes[node]
        on_error = plan_node.definition.on_error
        for target, branch in plan_node.loops_back:
            active = edge_active(branch, status, on_error, chosen)
            if active and not self.exhausted and target not in self.loops_due:
                self.loops_due.append(target)

    def drain(self) -> Settled:
        """Run the due cycles again (the run is idle): each target is ready, it and every
        node after it pending again; ``rearmed``: those that had ended."""
        out = Settled()
        due, self.loops_due = self.loops_due, []
        for target in due if not self.exhausted else ():
            out.rearmed.extend(n for n in self._rearm(target) if n not in out.rearmed)
            if target not in out.ready:
                out.ready.append(target)
        return out

    def _settle(self, node: str, status: NodeStatus, chosen: str | None) -> Settled:
        out = Settled()
        self.status[node] = status
        stack = [(node, status, chosen)]
        waiting, active, statuses, nodes = (
            self.waiting_edges,
            self.active_edges,
            self.status,
            self.plan.nodes,
        )
        decided = self.decided if self.recursive else None
        while stack:
            source, source_status, source_chosen = stack.pop()
            on_error = nodes[source].definition.on_error
            for index, (target, branch) in enumerate(nodes[source].outgoing):
                is_active = edge_active(branch, source_status, on_error, source_chosen)
                if decided is not None:
                    decided[(source, index)] = is_active
                if is_active:
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

    def _rearm(self, start: str) -> list[str]:
        """Make ``start`` and every node after it (forward edges) pending again, their
        edges from one another undecided; the decided edges from outside stay. The nodes
        that had ended (to run again)."""
        region, edges = self._region(start)
        ended = [n for n in region if self.status[n] is not NodeStatus.PENDING]
        for node in region:
            self.status[node] = NodeStatus.PENDING
            self.waiting_edges[node] = 0
            self.active_edges[node] = 0
        for source, index, target in edges:
            if source in region:
                self.decided.pop((source, index), None)
            state = self.decided.get((source, index))
            if state is None:
                self.waiting_edges[target] += 1
            elif state:
                self.active_edges[target] += 1
        return ended

    def _region(self, start: str) -> tuple[frozenset[str], tuple[tuple[str, int, str], ...]]:
        """``start`` and the nodes after it, and the forward edges into them
        ``(source, index, target)``; computed once per target."""
        found = self._regions.get(start)
        if found is not None:
            return found
        nodes = self.plan.nodes
        order: list[str] = [start]
        seen = {start}
        for node in order:  # (grows while walked)
            for target, _ in nodes[node].outgoing:
                if target not in seen:
                    seen.add(target)
                    order.append(target)
        edges = tuple(
            (source, index, target)
            for source, plan_node in nodes.items()
            for index, (target, _) in enumerate(plan_node.outgoing)
            if target in seen
        )
        found = (frozenset(order), edges)
        self._regions[start] = found
        return found
