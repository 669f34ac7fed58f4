"""Validation of a workflow definition: every problem at once, each with its JSON path.

Works on the raw JSON so that one malformed node does not hide the problems of the others.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import jsonschema
from jinja2 import TemplateSyntaxError
from pydantic import BaseModel, ValidationError

from workflow_engine.definition.expressions import (
    Analysis,
    ExpressionEngine,
    is_template,
    join_path,
    pattern_of,
)
from workflow_engine.definition.inputs import DeclaredInputs
from workflow_engine.definition.model import ERROR_BRANCH, EdgeDef, NodeDef, WorkflowDefinition
from workflow_engine.errors import DefinitionError, Problem
from workflow_engine.jsonschemas import compile_schema, json_path


class NodeSpec(Protocol):
    """What validation needs to know of a node type (``nodes.base.NodeType`` has it all)."""

    @property
    def Inputs(self) -> type[BaseModel]:
        """The pydantic model the node's ``inputs`` must satisfy."""

    @property
    def chooses_branch(self) -> bool: ...

    @property
    def bare_expression_fields(self) -> frozenset[str]: ...

    @property
    def sets_variables(self) -> bool:
        """The keys of the node's ``values`` input are the variables it sets."""

    @property
    def subgraph_field(self) -> str | None:
        """The input holding a sub-graph (``loop``'s ``body``), validated as a workflow."""

    @property
    def body_carries_variables(self) -> bool:
        """Its body's runs go one after another, so setters may run in it."""

    def declared_branches(self, inputs: Mapping[str, Any]) -> set[str] | None: ...

    def variables_written(self, inputs: Mapping[str, Any]) -> frozenset[str]: ...


class NodeTypes(Protocol):
    """The node types a definition may use, by name (``nodes.registry.NodeRegistry``)."""

    def get(self, name: str) -> NodeSpec | None: ...

    def names(self) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class Limits:
    max_nodes: int = 1000
    max_expression_bytes: int = 64 * 1024
    max_loop_results: int = 100_000
    """Loop body node results one execution may record, over all its loops (nested ones
    multiply: 1,000 items of a loop over 1,000 items would be a million stored results)."""


@dataclass(frozen=True, slots=True)
class Findings:
    problems: list[Problem]
    """What makes the definition invalid."""
    warnings: list[Problem]
    """What is likely a mistake but runs: a template reading an input ``input_schema`` does
    not declare (the definition's own example in SPEC section 2 does so)."""
    input_reads: frozenset[str]
    """The workflow inputs its templates read by name."""


def validate_definition(
    raw: Any,
    registry: NodeTypes,
    expressions: ExpressionEngine,
    limits: Limits | None = None,
) -> tuple[WorkflowDefinition, Findings]:
    """The parsed definition and what was found; raises ``DefinitionError`` listing every
    problem."""
    findings = inspect_definition(raw, registry, expressions, limits)
    if findings.problems:
        raise DefinitionError(findings.problems)
    return WorkflowDefinition.model_validate(raw), findings


def find_problems(
    raw: Any,
    registry: NodeTypes,
    expressions: ExpressionEngine,
    limits: Limits | None = None,
) -> list[Problem]:
    return inspect_definition(raw, registry, expressions, limits).problems


def inspect_definition(
    raw: Any,
    registry: NodeTypes,
    expressions: ExpressionEngine,
    limits: Limits | None = None,
) -> Findings:
    if not isinstance(raw, dict):
        problem = Problem("$", "a workflow definition must be a JSON object", "invalid")
        return Findings([problem], [], frozenset())
    checker = _Checker(raw, registry, expressions, limits or Limits())
    checker.run()
    return Findings(checker.problems, checker.warnings, frozenset(checker.input_reads))


def pydantic_problems(error: ValidationError, prefix: str = "") -> list[Problem]:
    """Translate pydantic errors into problems with JSON paths under ``prefix``."""
    problems = []
    for err in error.errors(include_url=False):
        path = prefix
        loc = err["loc"]
        for part in loc:
            if part == "[key]":  # (the key itself is wrong: the path names the key)
                continue
            path = f"{path}[{part}]" if isinstance(part, int) else join_path(path, str(part))
        message, code = err["msg"], "invalid"
        if loc[-1:] == ("[key]",) and len(loc) >= 2:
            message = f"invalid name {loc[-2]!r}: {message}"
        elif err["type"] == "extra_forbidden":
            message = f"unknown field '{err['loc'][-1]}'"
        elif err["type"] == "string_pattern_mismatch" and err["loc"][-1:] == ("id",):
            message, code = f"malformed id {err['input']!r}: {message}", "invalid_id"
        problems.append(Problem(path or "$", message, code))
    return problems


@dataclass(frozen=True, slots=True)
class _Body:
    """Where a loop body is checked: its path, its loop, and what it sees outside."""

    path: str
    """The body's JSON path (``nodes[2].inputs.body``): every problem's path starts with it."""
    loop_id: str
    visible: frozenset[str]
    """The nodes outside the body upstream of its loop (of the enclosing loops too)."""
    outside: frozenset[str]
    """Every node outside the body (a reference to one not upstream gets a clear message)."""
    setters: bool = False
    """Setters may run in it (its runs go one after another, ``body_carries_variables``)."""


@dataclass(slots=True)
class _Node:
    index: int
    id: str
    raw: dict[str, Any]
    type: NodeSpec | None


class _Checker:
    def __init__(
        self,
        raw: dict[str, Any],
        registry: NodeTypes,
        expressions: ExpressionEngine,
        limits: Limits,
        body: _Body | None = None,
        parent: _Checker | None = None,
    ) -> None:
        self.raw = raw
        self.registry = registry
        self.expressions = expressions
        self.limits = limits
        self.body = body
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.input_reads: set[str] = set()
        self.nodes: dict[str, _Node] = {}
        self.succ: dict[str, list[tuple[str, int]]] = {}
        self.pred: dict[str, list[str]] = {}
        self._bit: dict[str, int] = {}
        self.variables: frozenset[str] | None
        self.declared_inputs: DeclaredInputs | None
        if parent is not None:  # a loop body: the workflow's variables and inputs
            self.variables = parent.variables
            self.declared_inputs = parent.declared_inputs
        else:
            variables = raw.get("variables", {})
            # (None: malformed, which the model reports; the names are not checked then)
            self.variables = frozenset(variables) if isinstance(variables, dict) else None
            self.declared_inputs = DeclaredInputs.of(raw.get("input_schema"))

    def _at(self, path: str) -> str:
        return f"{self.body.path}.{path}" if self.body is not None else path

    def add(self, path: str, message: str, code: str) -> None:
        self.problems.append(Problem(self._at(path), message, code))

    def run(self) -> None:
        if self.body is None:
            try:
                WorkflowDefinition.model_validate(self.raw)
            except ValidationError as exc:
                self.problems.extend(pydantic_problems(exc))
        else:
            self._check_body_shape()
        raw_nodes = self.raw.get("nodes")
        raw_edges = self.raw.get("edges")
        raw_nodes = raw_nodes if isinstance(raw_nodes, list) else []
        raw_edges = raw_edges if isinstance(raw_edges, list) else []
        if len(raw_nodes) > self.limits.max_nodes:
            self.add(
                "nodes",
                f"{len(raw_nodes)} nodes exceed the limit of {self.limits.max_nodes}",
                "limit",
            )
        self._collect_nodes(raw_nodes)
        self._collect_edges(raw_edges)
        for node in self.nodes.values():
            self._check_inputs(node)
            if node.type is not None and node.type.sets_variables:
                self._check_setter(node)
        order = self._check_cycles(raw_edges)
        ancestors = self._ancestors(order) if order is not None else None
        for node in self.nodes.values():
            self._check_expressions(node, ancestors)
            if node.type is not None and node.type.subgraph_field is not None:
                self._check_body(node, node.type.subgraph_field, ancestors)
        if self.body is None:
            self._check_input_schema()

    # -- nodes and edges ------------------------------------------------------------------

    def _collect_nodes(self, raw_nodes: list[Any]) -> None:
        for i, raw in enumerate(raw_nodes):
            if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
                continue
            node_id = raw["id"]
            if node_id in self.nodes:
                first = self.nodes[node_id].index
                self.add(
                    f"nodes[{i}].id",
                    f"duplicate node id '{node_id}' (first used at nodes[{first}])",
                    "duplicate_id",
                )
                continue
            type_name = raw.get("type")
            node_type = self.registry.get(type_name) if isinstance(type_name, str) else None
            if isinstance(type_name, str) and node_type is None:
                known = _known_types(self.registry.names())
                self.add(
                    f"nodes[{i}].type",
                    f"unknown node type '{type_name}' (known types: {known})",
                    "unknown_type",
                )
            self.nodes[node_id] = _Node(i, node_id, raw, node_type)
            self.succ[node_id] = []
            self.pred[node_id] = []

    def _collect_edges(self, raw_edges: list[Any]) -> None:
        seen: dict[tuple[Any, Any, Any], int] = {}
        for j, edge in enumerate(raw_edges):
            if not isinstance(edge, dict):
                continue
            source, target, branch = edge.get("source"), edge.get("target"), edge.get("branch")
            valid = True
            for key, value in (("source", source), ("target", target)):
                if isinstance(value, str) and value not in self.nodes:
                    self.add(
                        f"edges[{j}].{key}", f"edge {key} '{value}' is not a node", "dangling_edge"
                    )
                    valid = False
                elif not isinstance(value, str):
                    valid = False
            if not valid:
                continue
            assert isinstance(source, str)
            assert isinstance(target, str)
            if source == target:
                self.add(f"edges[{j}]", f"self-edge on node '{source}'", "self_edge")
                continue
            edge_key = (source, target, branch)
            if edge_key in seen:
                self.add(f"edges[{j}]", f"duplicate of edges[{seen[edge_key]}]", "duplicate_edge")
                continue
            seen[edge_key] = j
            if isinstance(branch, str):
                self._check_branch(j, self.nodes[source], branch)
            if edge.get("recursive") is True:  # closes a cycle on purpose: not in the order
                if self.body is not None:  # (each iteration would loop within the loop's budget)
                    self.add(
                        f"edges[{j}].recursive",
                        "a recursive edge cannot be inside a loop body",
                        "unsupported",
                    )
                continue
            self.succ[source].append((target, j))
            self.pred[target].append(source)

    def _check_branch(self, j: int, source: _Node, branch: str) -> None:
        on_error = source.raw.get("on_error", "fail")
        chooses = source.type is not None and source.type.chooses_branch
        if not chooses and on_error != "branch":
            self.add(
                f"edges[{j}].branch",
                f"node '{source.id}' cannot choose a branch: only condition nodes and nodes "
                "with on_error: branch have branched outgoing edges",
                "invalid_branch",
            )
            return
        allowed: set[str] = {ERROR_BRANCH} if on_error == "branch" else set()
        if chooses and source.type is not None:
            inputs = source.raw.get("inputs")
            declared = source.type.declared_branches(inputs if isinstance(inputs, dict) else {})
            if declared is None:
                return
            allowed |= declared
        if branch not in allowed:
            self.add(
                f"edges[{j}].branch",
                f"node '{source.id}' has no branch '{branch}' (it can take: "
                f"{', '.join(sorted(allowed))})",
                "invalid_branch",
            )

    # -- node inputs ----------------------------------------------------------------------

    def _check_inputs(self, node: _Node) -> None:
        inputs = node.raw.get("inputs", {})
        if node.type is None or not isinstance(inputs, dict):
            return
        try:
            node.type.Inputs.model_validate(inputs)
        except ValidationError as exc:
            prefix = f"nodes[{node.index}].inputs"
            for err, problem in zip(
                exc.errors(include_url=False), pydantic_problems(exc, prefix), strict=True
            ):
                if not _under_template(inputs, err["loc"]):
                    self.add(problem.path, problem.message, "invalid_inputs")

    def _check_setter(self, node: _Node) -> None:
        """A ``set_variables`` node: ``values`` an object (its keys are the variables it sets,
        known before the run) naming declared variables only; not inside a loop body (but in
        the body of a node whose runs carry the variables, or when it writes none)."""
        inputs = node.raw.get("inputs")
        values = inputs.get("values") if isinstance(inputs, dict) else None
        where = f"nodes[{node.index}].inputs.values"
        writes = values is not None or (
            node.type is not None
            and node.type.variables_written(inputs if isinstance(inputs, dict) else {})
        )
        if self.body is not None and not self.body.setters and writes:
            self.add(
                f"nodes[{node.index}].type",
                "set_variables cannot run inside a loop body (iterations would race on the "
                "variables): set them before or after the loop",
                "unsupported",
            )
            return
        if isinstance(values, str) and is_template(values):
            self.add(
                where,
                "must be an object whose keys name the variables to set (its values may be "
                "templates; a template cannot choose the names)",
                "invalid_inputs",
            )
        if self.variables is None or node.type is None:
            return
        written = node.type.variables_written(inputs if isinstance(inputs, dict) else {})
        in_order = [n for n in values if n in written] if isinstance(values, dict) else []
        for name in in_order or sorted(written):
            if name not in self.variables:
                self.add(
                    join_path(where, str(name)),
                    f"sets variable '{name}', which is not declared in variables "
                    f"({self._declared_variables()})",
                    "unknown_variable",
                )

    def _declared_variables(self) -> str:
        names = sorted(self.variables or ())
        return f"declared: {', '.join(names)}" if names else "none is declared"

    # -- graph ----------------------------------------------------------------------------

    def _check_cycles(self, raw_edges: list[Any]) -> list[str] | None:
        """Topological order, or None after reporting every cycle."""
        indegree = {n: len(p) for n, p in self.pred.items()}
        queue = deque(n for n, d in indegree.items() if d == 0)
        order: list[str] = []
        while queue:
            node = queue.popleft()
            order.append(node)
            for target, _ in self.succ[node]:
                indegree[target] -= 1
                if indegree[target] == 0:
                    queue.append(target)
        if len(order) == len(self.nodes):
            return order
        remaining = {n for n, d in indegree.items() if d > 0}
        for component in _strongly_connected(remaining, self.succ):
            if len(component) > 1:
                cycle, edge_index = _a_cycle(component, self.succ)
                self.add(f"edges[{edge_index}]", "cycle: " + " -> ".join(cycle), "cycle")
        return None

    def _ancestors(self, order: list[str]) -> dict[str, int]:
        """Bitset of upstream nodes per node (bit i = the i-th node in topological order)."""
        bit = {node: 1 << i for i, node in enumerate(order)}
        ancestors: dict[str, int] = {}
        for node in order:
            acc = 0
            for parent in self.pred[node]:
                acc |= ancestors[parent] | bit[parent]
            ancestors[node] = acc
        self._bit = bit
        return ancestors

    # -- expressions ----------------------------------------------------------------------

    def _check_expressions(self, node: _Node, ancestors: dict[str, int] | None) -> None:
        inputs = node.raw.get("inputs", {})
        if not isinstance(inputs, dict):
            return
        bare = node.type.bare_expression_fields if node.type is not None else frozenset()
        prefix = f"nodes[{node.index}].inputs"
        subgraph = node.type.subgraph_field if node.type is not None else None
        if subgraph is not None:  # the body's templates are its nodes' (``_check_body``)
            inputs = {key: value for key, value in inputs.items() if key != subgraph}
        verbatim: frozenset[str] = getattr(node.type, "verbatim_fields", frozenset())
        if verbatim:  # passed as written (a child workflow's definition)
            inputs = {key: value for key, value in inputs.items() if key not in verbatim}
        for path, text in _strings(inputs, ""):
            is_bare = pattern_of(path) in bare
            if not is_bare and not is_template(text):
                continue
            where = f"{prefix}.{path}" if not path.startswith("[") else prefix + path
            if len(text.encode()) > self.limits.max_expression_bytes:
                self.add(
                    where,
                    f"expression exceeds {self.limits.max_expression_bytes} bytes",
                    "limit",
                )
                continue
            try:
                analysis = self.expressions.analyze(text, bare=is_bare)
            except TemplateSyntaxError as exc:
                self.add(where, f"syntax error in {text!r}: {exc.message}", "syntax")
                continue
            for name in sorted(analysis.unknown_names):
                self.add(
                    where,
                    f"unknown name '{name}' in {text!r} (visible: inputs, nodes, vars, execution)",
                    "unknown_name",
                )
            if self.body is None:
                for name in sorted(analysis.loop_names):
                    self.add(
                        where,
                        f"'{name}' in {text!r} is only visible inside a loop body",
                        "unknown_name",
                    )
            if analysis.dynamic_node_access:
                self.add(
                    where,
                    f"{text!r}: refer to nodes as nodes.<id> or nodes['<id>']",
                    "bad_reference",
                )
            for ref in sorted(analysis.node_refs):
                self._check_reference(where, node, ref, ancestors)
            self._check_names_read(where, text, analysis)

    def _check_names_read(self, where: str, text: str, analysis: Analysis) -> None:
        """The variables and inputs an expression reads by name must be declared."""
        if self.variables is not None:
            for name in sorted(analysis.var_refs - self.variables):
                self.add(
                    where,
                    f"{text!r} reads variable '{name}', which is not declared in variables "
                    f"({self._declared_variables()})",
                    "unknown_variable",
                )
        self.input_reads.update(analysis.input_refs)
        declared = self.declared_inputs
        if declared is not None:
            for name in sorted(analysis.input_refs):
                if not declared.declares(name):
                    problem = declared.unknown_input(where, name)
                    message = f"{text!r} reads {problem.message}"
                    self.warnings.append(Problem(self._at(where), message, problem.code))

    def _check_reference(
        self, where: str, node: _Node, ref: str, ancestors: dict[str, int] | None
    ) -> None:
        if ref not in self.nodes and self.body is not None:  # (a body node shadows one outside)
            if ref not in self.body.visible:
                upstream = ref in self.body.outside
                self.add(
                    where,
                    f"node '{node.id}' refers to node '{ref}', which is not upstream of loop "
                    f"'{self.body.loop_id}'"
                    if upstream
                    else f"reference to unknown node '{ref}'",
                    "bad_reference",
                )
            return
        if ref not in self.nodes:
            self.add(where, f"reference to unknown node '{ref}'", "bad_reference")
        elif not self._is_upstream(ref, node.id, ancestors):
            self.add(
                where,
                f"node '{node.id}' refers to node '{ref}', which is not upstream of it",
                "bad_reference",
            )

    def _is_upstream(self, ref: str, node: str, ancestors: dict[str, int] | None) -> bool:
        if ancestors is not None:
            return bool(ancestors[node] & self._bit[ref])
        seen: set[str] = set()  # the graph has a cycle: walk back from the node instead
        stack = list(self.pred[node])
        while stack:
            parent = stack.pop()
            if parent == ref:
                return True
            if parent not in seen:
                seen.add(parent)
                stack.extend(self.pred[parent])
        return False

    # -- loop bodies ----------------------------------------------------------------------

    def _check_body_shape(self) -> None:
        """A body's nodes and edges as a workflow's (the loop's input model checked the rest:
        ``nodes`` a non-empty list, ``output`` a string, no other field); ``output`` names a
        body node."""
        for key, model in (("nodes", NodeDef), ("edges", EdgeDef)):
            items = self.raw.get(key)
            for i, item in enumerate(items if isinstance(items, list) else ()):
                try:
                    model.model_validate(item)
                except ValidationError as exc:
                    for problem in pydantic_problems(exc, f"{key}[{i}]"):
                        self.add(problem.path, problem.message, problem.code)

    def _check_body(self, node: _Node, field: str, ancestors: dict[str, int] | None) -> None:
        """Validate a loop's body as a workflow whose templates also see ``item``, ``index``
        and the nodes upstream of the loop."""
        inputs = node.raw.get("inputs")
        body = inputs.get(field) if isinstance(inputs, dict) else None
        path = f"nodes[{node.index}].inputs.{field}"
        if isinstance(body, str) and is_template(body):
            self.add(path, "must be an object (a sub-graph), not a template", "invalid_inputs")
            return
        if not isinstance(body, dict):
            return  # the node's input model reported it
        upstream = {
            n for n in self.nodes if n != node.id and self._is_upstream(n, node.id, ancestors)
        }
        outer = self.body
        scope = _Body(
            self._at(path),
            node.id,
            frozenset(upstream) | (outer.visible if outer is not None else frozenset()),
            frozenset(self.nodes) | (outer.outside if outer is not None else frozenset()),
            node.type is not None and node.type.body_carries_variables,
        )
        checker = _Checker(body, self.registry, self.expressions, self.limits, scope, self)
        checker.run()
        output = body.get("output")
        if isinstance(output, str) and output not in checker.nodes:
            checker.add("output", f"output '{output}' is not a node of the body", "dangling_output")
        self.problems.extend(checker.problems)
        self.warnings.extend(checker.warnings)
        self.input_reads |= checker.input_reads

    def _check_input_schema(self) -> None:
        schema = self.raw.get("input_schema")
        if not isinstance(schema, dict):
            return
        try:
            compile_schema(schema)
        except jsonschema.SchemaError as exc:
            self.add(
                json_path("input_schema", exc.path),
                f"invalid JSON Schema: {exc.message}",
                "invalid_schema",
            )


def _under_template(inputs: Mapping[str, Any], loc: tuple[int | str, ...]) -> bool:
    """Whether the value at ``loc`` (or one of its parents) is a template string, whose type is
    only known once it is rendered."""
    value: Any = inputs
    for part in loc:
        if isinstance(value, str):
            return is_template(value)
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return False
    return isinstance(value, str) and is_template(value)


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, join_path(path, str(key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, f"{path}[{i}]")


def _strongly_connected(
    nodes: set[str], succ: Mapping[str, list[tuple[str, int]]]
) -> list[list[str]]:
    """Tarjan's algorithm, iterative, restricted to ``nodes``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(nodes):
        if root in index:
            continue
        work: list[tuple[str, Iterator[tuple[str, int]]]] = [(root, iter(succ[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child, _ in children:
                if child not in nodes:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(succ[child])))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
    return components


def _a_cycle(
    component: list[str], succ: Mapping[str, list[tuple[str, int]]]
) -> tuple[list[str], int]:
    """One cycle through the first node of a strongly connected component, and the index of
    the edge that closes it."""
    members = set(component)
    start = min(component)
    parent: dict[str, tuple[str, int]] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child, edge in succ[node]:
            if child == start:
                path = [start]
                cursor = node
                while cursor != start:
                    path.append(cursor)
                    cursor = parent[cursor][0]
                path.append(start)
                path[1:-1] = reversed(path[1:-1])
                return path, edge
            if child in members and child not in parent:
                parent[child] = (node, edge)
                queue.append(child)
    raise AssertionError("a strongly connected component always holds a cycle")


def _known_types(names: list[str]) -> str:
    """The node types a message lists: a family of types under one prefix (FastGPT's
    ``fastgpt.chatNode``, ...: the translation's, SPEC section 13) as ``fastgpt.*``."""
    families = sorted({name.partition(".")[0] + ".*" for name in names if "." in name})
    return ", ".join([*(name for name in names if "." not in name), *families])
