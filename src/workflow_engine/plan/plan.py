"""A validated definition compiled for execution: node types looked up, templates compiled,
adjacency and topological order precomputed. Built once per definition and reused."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workflow_engine.definition.expressions import ExpressionEngine, Resolver
from workflow_engine.definition.model import NodeDef, WorkflowDefinition
from workflow_engine.definition.validate import Limits, validate_definition
from workflow_engine.errors import InputValidationError
from workflow_engine.jsonschemas import compile_schema, schema_problems
from workflow_engine.nodes.base import NodeType
from workflow_engine.nodes.registry import NodeRegistry

Edge = tuple[str, str | None]
"""(target, branch) of an outgoing edge."""


@dataclass(frozen=True, slots=True)
class NodePlan:
    id: str
    definition: NodeDef
    node_type: NodeType[Any]
    resolve: Resolver | None
    """Resolves templated inputs; ``None`` when the inputs hold no template."""
    outgoing: tuple[Edge, ...]
    incoming: int

    @property
    def type_name(self) -> str:
        return self.definition.type


@dataclass(frozen=True, slots=True)
class WorkflowPlan:
    definition: WorkflowDefinition
    nodes: Mapping[str, NodePlan]
    order: tuple[str, ...]
    sinks: tuple[str, ...]
    output_nodes: tuple[str, ...]
    input_validator: Any
    pure_nodes: frozenset[str] = frozenset()
    """Nodes whose type is ``pure``: running them again after a crash cannot be noticed."""

    @property
    def workflow_id(self) -> str:
        return self.definition.id

    def upstream_of(self, node_id: str) -> list[str]:
        """Every node with a path to ``node_id``, in execution order."""
        upstream: set[str] = set()
        frontier = {node_id}
        while frontier:
            frontier = {
                source
                for source, plan in self.nodes.items()
                if source not in upstream and any(t in frontier for t, _ in plan.outgoing)
            }
            upstream |= frontier
        return [n for n in self.order if n in upstream]

    def check_inputs(self, inputs: Mapping[str, Any]) -> None:
        """Raise ``InputValidationError`` listing every way ``inputs`` break ``input_schema``."""
        if self.input_validator is None:
            return
        problems = schema_problems(self.input_validator, dict(inputs), "inputs", "invalid_input")
        if problems:
            raise InputValidationError(problems)


def compile_workflow(
    raw: Mapping[str, Any] | WorkflowDefinition,
    registry: NodeRegistry,
    expressions: ExpressionEngine,
    limits: Limits | None = None,
) -> WorkflowPlan:
    """Validate and compile. Raises ``DefinitionError`` with every problem."""
    data = raw.model_dump(mode="json") if isinstance(raw, WorkflowDefinition) else raw
    definition = validate_definition(data, registry, expressions, limits)
    outgoing: dict[str, list[Edge]] = {n.id: [] for n in definition.nodes}
    incoming: dict[str, int] = {n.id: 0 for n in definition.nodes}
    for edge in definition.edges:
        outgoing[edge.source].append((edge.target, edge.branch))
        incoming[edge.target] += 1
    nodes: dict[str, NodePlan] = {}
    for node in definition.nodes:
        node_type = registry.get(node.type)
        assert node_type is not None  # validated
        nodes[node.id] = NodePlan(
            id=node.id,
            definition=node,
            node_type=node_type,
            resolve=expressions.compile_value(node.inputs, "", node_type.bare_expression_fields),
            outgoing=tuple(outgoing[node.id]),
            incoming=incoming[node.id],
        )
    validator = None
    if definition.input_schema is not None:
        validator = compile_schema(definition.input_schema)
    return WorkflowPlan(
        definition=definition,
        nodes=nodes,
        order=_topological(nodes),
        sinks=tuple(n for n, p in nodes.items() if not p.outgoing),
        output_nodes=tuple(n for n, p in nodes.items() if p.type_name == "output"),
        input_validator=validator,
        pure_nodes=frozenset(n for n, p in nodes.items() if p.node_type.pure),
    )


def _topological(nodes: Mapping[str, NodePlan]) -> tuple[str, ...]:
    indegree = {n: p.incoming for n, p in nodes.items()}
    order = [n for n, d in indegree.items() if d == 0]
    for node in order:  # the list grows while we walk it
        for target, _ in nodes[node].outgoing:
            indegree[target] -= 1
            if indegree[target] == 0:
                order.append(target)
    return tuple(order)
