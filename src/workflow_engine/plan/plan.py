"""A validated definition compiled for execution: node types looked up, templates compiled,
adjacency and topological order precomputed. Built once per definition and reused."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from workflow_engine.definition.expressions import ExpressionEngine, Resolver, Scope
from workflow_engine.definition.inputs import DeclaredInputs, input_problems
from workflow_engine.definition.model import EdgeDef, NodeDef, WorkflowDefinition
from workflow_engine.definition.validate import Limits, validate_definition
from workflow_engine.errors import InputValidationError
from workflow_engine.jsonschemas import compile_schema
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
    upstream_setters: tuple[str, ...] = ()
    """The ``set_variables`` nodes upstream of this one, in ``WorkflowPlan.order``: whose
    writes its ``vars`` shows (SPEC section 9). Empty: ``vars`` is the defaults."""
    body: WorkflowPlan | None = None
    """A ``loop``'s body, compiled once with the plan (its ``collect`` names the body node
    whose output each iteration gives)."""
    loops_back: tuple[Edge, ...] = ()
    """Its outgoing recursive edges: (target, branch) of each (``EdgeDef.recursive``)."""

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
    declared_inputs: DeclaredInputs | None = None
    """The inputs ``input_schema`` declares, when it closes the set (``definition/inputs.py``)."""
    variables: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """The declared execution variables and their defaults."""
    variable_writes: Mapping[str, frozenset[str]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    """``set_variables`` node -> the variables it sets, for every such node."""
    setters: tuple[str, ...] = ()
    """Every ``set_variables`` node, in ``order``: the order their writes apply in."""
    collect: str | None = None
    """A loop body's plan: the node whose output is the iteration's."""

    @property
    def workflow_id(self) -> str:
        return self.definition.id

    def is_pure(self, node_id: str) -> bool:
        """Whether ``node_id`` is a pure node; an iteration's node
        (``<loopId>[<index>].<bodyNodeId>``, nested loops alike) is looked up in its body."""
        if node_id in self.nodes:
            return node_id in self.pure_nodes
        loop_id, bracket, rest = node_id.partition("[")
        loop = self.nodes.get(loop_id) if bracket else None
        _, dot, inner = rest.partition("].")
        if loop is None or loop.body is None or not dot:
            return False
        return loop.body.is_pure(inner)

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
        """Raise ``InputValidationError`` listing every way ``inputs`` break ``input_schema``
        (an input it does not declare is one, ``definition/inputs.py``)."""
        if self.input_validator is None:
            return
        problems = input_problems(self.input_validator, self.declared_inputs, inputs)
        if problems:
            raise InputValidationError(problems)


@dataclass(frozen=True, slots=True)
class PureNodes:
    """The pure nodes of a plan as a container of node ids, loop iterations' ids included
    (``WorkflowPlan.is_pure``): what a checkpoint may skip."""

    plan: WorkflowPlan

    def __contains__(self, node_id: object) -> bool:
        return isinstance(node_id, str) and self.plan.is_pure(node_id)


def compile_workflow(
    raw: Mapping[str, Any] | WorkflowDefinition,
    registry: NodeRegistry,
    expressions: ExpressionEngine,
    limits: Limits | None = None,
) -> WorkflowPlan:
    """Validate and compile. Raises ``DefinitionError`` with every problem."""
    data = raw.model_dump(mode="json") if isinstance(raw, WorkflowDefinition) else raw
    definition, findings = validate_definition(data, registry, expressions, limits)
    return _build(definition, registry, expressions, findings.input_reads)


def _build(
    definition: WorkflowDefinition,
    registry: NodeRegistry,
    expressions: ExpressionEngine,
    input_reads: frozenset[str],
    collect: str | None = None,
) -> WorkflowPlan:
    """The plan of a validated definition (or of a loop body, which names its ``collect``)."""
    outgoing: dict[str, list[Edge]] = {n.id: [] for n in definition.nodes}
    incoming: dict[str, int] = {n.id: 0 for n in definition.nodes}
    back: dict[str, list[Edge]] = {n.id: [] for n in definition.nodes}
    for edge in definition.edges:
        if edge.recursive:
            back[edge.source].append((edge.target, edge.branch))
            continue
        outgoing[edge.source].append((edge.target, edge.branch))
        incoming[edge.target] += 1
    nodes: dict[str, NodePlan] = {}
    for node in definition.nodes:
        node_type = registry.get(node.type)
        assert node_type is not None  # validated
        subgraph = node_type.subgraph_field
        nodes[node.id] = NodePlan(
            id=node.id,
            definition=node,
            node_type=node_type,
            resolve=_inputs_resolver(node, node_type, expressions),
            outgoing=tuple(outgoing[node.id]),
            incoming=incoming[node.id],
            loops_back=tuple(back[node.id]),
            body=None
            if subgraph is None
            else _body_plan(definition, node, node.inputs[subgraph], registry, expressions),
        )
    validator = None
    if definition.input_schema is not None:
        validator = compile_schema(definition.input_schema)
    order = _topological(nodes)
    writes = {
        n: p.node_type.variables_written(p.definition.inputs)
        for n, p in nodes.items()
        if p.node_type.sets_variables
    }
    setters = tuple(n for n in order if n in writes)
    if setters and any(p.loops_back for p in nodes.values()):
        # a cycle runs setters again: every node sees the latest writes of all (FastGPT's
        # variables are the run's, not a path's)
        nodes = {n: replace(p, upstream_setters=setters) for n, p in nodes.items()}
    elif setters:
        nodes = _with_upstream_setters(nodes, order, setters)
    return WorkflowPlan(
        definition=definition,
        nodes=nodes,
        order=order,
        sinks=tuple(n for n, p in nodes.items() if not p.outgoing and not p.loops_back),
        output_nodes=tuple(n for n, p in nodes.items() if p.type_name == "output"),
        input_validator=validator,
        pure_nodes=frozenset(n for n, p in nodes.items() if p.node_type.pure),
        declared_inputs=_accepted_inputs(definition.input_schema, input_reads),
        variables=MappingProxyType(dict(definition.variables)),
        variable_writes=MappingProxyType(writes),
        setters=setters,
        collect=collect,
    )


def _inputs_resolver(
    node: NodeDef, node_type: NodeType[Any], expressions: ExpressionEngine
) -> Resolver | None:
    """Renders a node's templated inputs. A sub-graph input is passed on as it is: its
    templates are its own nodes', rendered in each iteration."""
    bare, subgraph = node_type.bare_expression_fields, node_type.subgraph_field
    kept = set(node_type.verbatim_fields)
    if subgraph is not None:
        kept.add(subgraph)
    if not kept:
        return expressions.compile_value(node.inputs, "", bare)
    own = {key: value for key, value in node.inputs.items() if key not in kept}
    resolve = expressions.compile_value(own, "", bare)
    if resolve is None:
        return None
    verbatim = {key: value for key, value in node.inputs.items() if key in kept}

    def resolve_with_graph(scope: Scope) -> Any:
        return {**resolve(scope), **verbatim}

    return resolve_with_graph


def _body_plan(
    definition: WorkflowDefinition,
    node: NodeDef,
    body: Mapping[str, Any],
    registry: NodeRegistry,
    expressions: ExpressionEngine,
) -> WorkflowPlan:
    """A loop body as a workflow of its own (validated with the workflow): the workflow's
    variables, its ``max_parallel`` within each iteration."""
    body_definition = WorkflowDefinition(
        id=definition.id,  # (its nodes' ids say which loop they belong to)
        nodes=[NodeDef.model_validate(n) for n in body["nodes"]],
        edges=[EdgeDef.model_validate(e) for e in body.get("edges") or ()],
        variables=definition.variables,
        max_parallel=definition.max_parallel,
    )
    return _build(body_definition, registry, expressions, frozenset(), collect=body["output"])


def _with_upstream_setters(
    nodes: dict[str, NodePlan], order: tuple[str, ...], setters: tuple[str, ...]
) -> dict[str, NodePlan]:
    """``nodes`` with their ``upstream_setters``: one pass in topological order, the setters
    upstream of a node as a bitset (bit i: ``setters[i]``)."""
    bit = {setter: 1 << i for i, setter in enumerate(setters)}
    upstream = dict.fromkeys(order, 0)
    for node in order:
        reaching = upstream[node] | bit.get(node, 0)
        for target, _ in nodes[node].outgoing:
            upstream[target] |= reaching
    return {
        n: replace(p, upstream_setters=tuple(s for s in setters if upstream[n] & bit[s]))
        if upstream[n]
        else p
        for n, p in nodes.items()
    }


def _topological(nodes: Mapping[str, NodePlan]) -> tuple[str, ...]:
    indegree = {n: p.incoming for n, p in nodes.items()}
    order = [n for n, d in indegree.items() if d == 0]
    for node in order:  # the list grows while we walk it
        for target, _ in nodes[node].outgoing:
            indegree[target] -= 1
            if indegree[target] == 0:
                order.append(target)
    return tuple(order)


def _accepted_inputs(schema: Any, reads: frozenset[str]) -> DeclaredInputs | None:
    """The inputs a submit may give: those ``input_schema`` declares and those the templates
    read (an input a template reads is no typo, declared or not: SPEC section 2's own example
    reads one its schema omits); None when the schema lets any in."""
    declared = DeclaredInputs.of(schema)
    return None if declared is None else declared.with_names(reads)
