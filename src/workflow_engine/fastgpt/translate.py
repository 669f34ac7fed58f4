"""A FastGPT graph as our workflow definition (SPEC section 13), what ``wfe import fastgpt``
prints and what ``execute`` runs.

- Each FastGPT node the run can reach (from ``workflowStart`` / ``pluginInput``, following
  edges) becomes a node of type ``fastgpt.<flowNodeType>`` whose inputs keep FastGPT's own
  (``params``: key -> value, with ``valueTypes``) and the spec of its ``outputs``; the node
  resolves FastGPT's references itself at run time, as FastGPT does. Nodes no run reaches
  (comments, the ``userGuide`` config node, dangling ones) are left out: FastGPT never runs
  them either. A FastGPT node id that is not one of ours (``448745``) becomes ``n_448745``.
- References are rewritten to our node ids (``[nodeId, outputId]`` -> ``[ourId, outputId]``,
  ``{{$nodeId.outputId$}}`` -> ``{{$ourId.outputId$}}``; ``VARIABLE_NODE_ID`` stays), and each
  node's ``refs`` says which output *key* (and value type) an output id it refers to is: FastGPT
  reads an output by its id and writes it by its key.
- An edge that closes a cycle (FastGPT's recursive edge) is marked ``recursive``: when it is
  active its target runs again, and what follows it, within ``max_run_times`` (FastGPT's
  ``maxRunTimes``, 500).
- Edges keep their handle's meaning: a branch handle (``-source-IF``, ``-source-ELSE IF 1``, a
  question class's or an option's key) becomes the edge's ``branch``; ``-source_catch-right``
  the ``error`` branch. A FastGPT node error never fails the workflow (its branch stops, or its
  catch edge runs), so every node has ``on_error: branch``.
- The global variables (``chatConfig.variables``, or an old graph's ``userGuide`` node) are
  the definition's variable ``fastgpt_globals`` (their spec and defaults); what
  ``variableUpdate`` nodes write is the variable ``fastgpt``.
- The inputs are FastGPT's: ``userChatInput``, ``variables``, ``history``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import re2

from workflow_engine.definition.model import ERROR_BRANCH, NODE_ID_PATTERN
from workflow_engine.errors import DefinitionError, Problem
from workflow_engine.fastgpt.graph import (
    ENTRY_TYPES,
    FastGptEdge,
    FastGptGraph,
    FastGptNode,
    parse,
)

TYPE_PREFIX: Final = "fastgpt."
VARIABLE_NODE_ID: Final = "VARIABLE_NODE_ID"
WRITES_VARIABLE: Final = "fastgpt"
"""Our variable holding what ``variableUpdate`` nodes wrote (the whole FastGPT variables)."""
MAX_LOOP_NESTING: Final = 8
"""Loops in loops, at most (FastGPT's editor nests one or two)."""
GLOBALS_VARIABLE: Final = "fastgpt_globals"
"""Our variable holding the global variables' spec: ``{key: {label, valueType, default}}``."""
NO_OP_TYPES: Final = frozenset({"userGuide", "pluginConfig", "comment"})
"""Config and decoration: FastGPT runs them as nothing."""
BRANCHING_TYPES: Final = frozenset({"ifElseNode", "classifyQuestion", "userSelect"})
BODY_TYPES: Final = frozenset({"loop", "tools"})
"""The nodes holding a sub-graph: a loop's children, a tools node's tools and what follows
them."""
MAX_TOOL_DESCRIPTION: Final = 8192
TOOL_VALUE_TYPES: Final[Mapping[str, dict[str, Any]]] = {
    "string": {"type": "string"},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "arrayString": {"type": "array", "items": {"type": "string"}},
    "arrayNumber": {"type": "array", "items": {"type": "number"}},
    "arrayBoolean": {"type": "array", "items": {"type": "boolean"}},
}
"""A tool parameter's JSON schema by its ``valueType`` (FastGPT's ``toolValueTypeList``);
any other type is a string."""
EDITOR_REFERENCE: Final = re2.compile(r"\{\{\$([^.]+)\.([^$]+)\$\}\}")
_ID = re.compile(NODE_ID_PATTERN)

INPUT_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "userChatInput": {"type": "string", "description": "The user's question."},
        "variables": {"type": "object", "description": "Global variables, by key or label."},
        "history": {
            "type": "array",
            "description": "Earlier chat messages: [{role, content}] (OpenAI style) or "
            "FastGPT chat items [{obj: Human|AI|System, value}].",
        },
        "messages": {
            "type": "array",
            "description": "As FastGPT's /v1/chat/completions takes them: the last user "
            "message is the question (unless userChatInput), the others the history.",
        },
        "chatId": {"type": "string", "description": "The conversation (system variable)."},
        "files": {
            "type": "array",
            "description": "Files sent with the question: ignored (a node.log warning says so).",
        },
    },
}


@dataclass(frozen=True, slots=True)
class Translation:
    definition: dict[str, Any]
    node_ids: dict[str, str]
    """FastGPT node id -> ours, for the nodes kept."""
    left_out: list[str] = field(default_factory=list)
    """The FastGPT nodes no run reaches (and config nodes), by id."""


def translate(document: Any, *, workflow_id: str | None = None) -> Translation:
    """Our definition of a FastGPT document; ``DefinitionError`` with every problem."""
    try:
        return _translate(document, workflow_id)
    except (TypeError, AttributeError, KeyError, ValueError, RecursionError) as exc:
        # a shape FastGPT's editor does not make, missed by the checks: still a 422
        problem = Problem("", f"cannot read this FastGPT workflow: {exc!r}", "invalid")
        raise DefinitionError([problem]) from exc


def _translate(document: Any, workflow_id: str | None) -> Translation:
    graph = parse(document)
    problems: list[Problem] = []
    entries = [n.node_id for n in graph.nodes if n.flow_node_type in ENTRY_TYPES]
    parent_of = {n.node_id: n.parent_node_id for n in graph.nodes}
    index = {n.node_id: i for i, n in enumerate(graph.nodes)}
    by_level: dict[str | None, list[tuple[int, FastGptEdge]]] = {}
    tools_of: dict[str, list[str]] = {}
    for i, e in enumerate(graph.edges):  # each level's edges, found once
        if not e.to_tool:
            by_level.setdefault(parent_of.get(e.source), []).append((i, e))
        elif e.target not in tools_of.setdefault(e.source, []):
            tools_of[e.source].append(e.target)
    levels: dict[str | None, list[FastGptNode]] = {None: _kept(graph, None, entries, by_level)}
    owner: dict[str, str | None] = {n.node_id: None for n in levels[None]}
    """Each kept node's level: a node runs in one place (the top, a loop, a tool's run)."""
    edges_in: dict[str | None, str | None] = {}
    """A ``tools`` node's body (its tools' runs) -> the level its edges are in."""
    pending = [(n, 1) for n in levels[None] if n.flow_node_type in BODY_TYPES]
    while pending:  # each loop's children and each tools node's tools, nested ones' too
        holder, depth = pending.pop()
        if depth > MAX_LOOP_NESTING:
            raise DefinitionError(
                [
                    Problem(
                        f"nodes[{index[holder.node_id]}]",
                        f"loops and tool calls nest deeper than {MAX_LOOP_NESTING}",
                        "limit",
                    )
                ]
            )
        if holder.node_id in levels:
            continue
        if holder.flow_node_type == "loop":
            starts = [
                n.node_id
                for n in graph.nodes
                if n.parent_node_id == holder.node_id and n.flow_node_type == "loopStart"
            ]
            levels[holder.node_id] = _kept(graph, holder.node_id, starts, by_level)
        else:
            level_of = holder.parent_node_id
            tools = [t for t in tools_of.get(holder.node_id, ()) if parent_of.get(t) == level_of]
            edges_in[holder.node_id] = level_of
            kept = _kept(graph, level_of, tools, by_level)
            for shared in [n for n in kept if n.node_id in owner]:
                where = owner[shared.node_id]
                problems.append(
                    Problem(
                        f"nodes[{index[holder.node_id]}]",
                        f"tools node {holder.node_id!r} ({holder.name}): node "
                        f"{shared.node_id!r} ({shared.name}) runs in one of its tool calls and "
                        + ("in the workflow" if where is None else f"also under {where!r}")
                        + "; a node may run in one place only",
                        "invalid_edge",
                    )
                )
            kept = [n for n in kept if n.node_id not in owner]
            levels[holder.node_id] = kept
        inner = levels[holder.node_id]
        owner.update((n.node_id, holder.node_id) for n in inner)
        pending += [(n, depth + 1) for n in inner if n.flow_node_type in BODY_TYPES]
    every = list({n.node_id: n for kept in levels.values() for n in kept}.values())
    ids = _our_ids(n.node_id for n in every)
    rewrite = _Rewriter(ids, {n.node_id: _output_keys(n) for n in every})
    in_tool_runs = _under(levels, list(edges_in))
    choice_ids = (f"toolChoice_{i}" for i in itertools.count())
    taken = set(ids.values())

    def level(key: str | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        kept = levels[key]
        nodes = []
        for node in kept:
            translated = _node(node, ids, rewrite)
            if node.flow_node_type == "loop":
                translated["inputs"]["body"] = body(node)
            elif node.flow_node_type == "tools":
                translated["inputs"].update(tool_calls(node))
            nodes.append(translated)
        members = {n.node_id for n in kept}
        own = [(i, e) for i, e in by_level.get(edges_in.get(key, key), ()) if e.target in members]
        own = [(i, e) for i, e in own if e.source in members]
        starts = [n.node_id for n in kept if n.flow_node_type in (*ENTRY_TYPES, "loopStart")]
        if key in edges_in:
            starts += [t for t in tools_of.get(str(key), ()) if t in members]
        recursive = _recursive([e for _, e in own], starts)
        edges: list[dict[str, Any]] = []
        seen: set[tuple[str, str, Any]] = set()
        for i, e in own:
            edge = _edge(e, i, graph, ids, problems)
            if edge is None:
                continue
            key_of = (edge["source"], edge["target"], edge.get("branch"))
            if key_of in seen:  # FastGPT's editor may draw an edge twice
                continue
            seen.add(key_of)
            if id(e) in recursive:
                edge["recursive"] = True
            edges.append(edge)
        return nodes, edges

    def body(loop: FastGptNode) -> dict[str, Any]:
        nodes, edges = level(loop.node_id)
        children = levels[loop.node_id]
        ends = [n for n in children if n.flow_node_type == "loopEnd"]
        if len(ends) != 1 or not any(n.flow_node_type == "loopStart" for n in children):
            problems.append(
                Problem(
                    f"nodes[{index[loop.node_id]}]",
                    f"loop {loop.node_id!r} ({loop.name}) needs one loopStart and one loopEnd "
                    "that it reaches",
                    "invalid_loop",
                )
            )
        return {"nodes": nodes, "edges": edges, "output": ids[ends[0].node_id] if ends else ""}

    def tool_calls(holder: FastGptNode) -> dict[str, Any]:
        """A tools node's tools (the model's functions) and their runs as its ``body``: a
        ``toolChoice`` node starts each run on the branch of the tool the model called."""
        nodes, edges = level(holder.node_id)
        members = {n.node_id: n for n in levels[holder.node_id]}
        tools = [members[t] for t in tools_of.get(holder.node_id, ()) if t in members]
        choice = next(c for c in choice_ids if c not in taken)
        nodes.insert(
            0,
            {
                "id": choice,
                "type": TYPE_PREFIX + "toolChoice",
                "name": "tool choice",
                "inputs": {"params": {"tools": [ids[t.node_id] for t in tools]}},
                "metadata": {"fastgpt": {"nodeId": choice, "flowNodeType": "toolChoice"}},
            },
        )
        edges += [
            {"source": choice, "target": ids[t.node_id], "branch": ids[t.node_id]} for t in tools
        ]
        return {
            "body": {"nodes": nodes, "edges": edges, "output": choice},
            "tools": [_tool_spec(t, ids[t.node_id]) for t in tools],
        }

    nodes, edges = level(None)
    problems += _unsupported_shapes(graph, every, in_tool_runs)
    if not entries:
        problems.append(
            Problem(
                "nodes", "no entry node: a FastGPT workflow starts at workflowStart", "no_entry"
            )
        )
    if problems:
        raise DefinitionError(problems)
    definition: dict[str, Any] = {
        "id": workflow_id or _workflow_id(graph),
        "name": graph.name,
        "input_schema": INPUT_SCHEMA,
        "variables": {WRITES_VARIABLE: {}, GLOBALS_VARIABLE: _globals(graph)},
        "nodes": nodes,
        "edges": edges,
        "metadata": {"format": "fastgpt"},
    }
    if graph.name is None:
        del definition["name"]
    left_out = [n.node_id for n in graph.nodes if n.node_id not in ids]
    return Translation(definition, {n.node_id: ids[n.node_id] for n in every}, left_out)


def _under(levels: Mapping[str | None, list[FastGptNode]], keys: list[str | None]) -> set[str]:
    """The nodes of the levels ``keys`` and of every level nested in them (a loop's children
    in a tool's run)."""
    found: set[str] = set()
    pending = list(keys)
    while pending:
        for node in levels.get(pending.pop(), ()):
            if node.node_id not in found:
                found.add(node.node_id)
                if node.node_id in levels:
                    pending.append(node.node_id)
    return found


def _kept(
    graph: FastGptGraph,
    parent: str | None,
    entries: list[str],
    by_level: Mapping[str | None, list[tuple[int, FastGptEdge]]],
) -> list[FastGptNode]:
    """The nodes of one level (the top, or a loop's children) that a run of it reaches from
    ``entries``, config and decoration left out (FastGPT never runs the others)."""
    following: dict[str, list[str]] = {}
    for _, edge in by_level.get(parent, ()):
        following.setdefault(edge.source, []).append(edge.target)
    level = {n.node_id for n in graph.nodes if n.parent_node_id == parent}
    seen: set[str] = set()
    stack = [e for e in entries if e in level]
    while stack:
        node_id = stack.pop()
        if node_id not in seen and node_id in level:
            seen.add(node_id)
            stack.extend(following.get(node_id, ()))
    return [n for n in graph.nodes if n.node_id in seen and n.flow_node_type not in NO_OP_TYPES]


def _our_ids(fastgpt_ids: Iterable[str]) -> dict[str, str]:
    ids: dict[str, str] = {}
    taken: set[str] = set()
    for fastgpt_id in fastgpt_ids:
        candidate = fastgpt_id
        if not _ID.fullmatch(candidate):
            candidate = "n_" + re.sub(r"[^A-Za-z0-9_]", "_", fastgpt_id)[:56]
        unique, count = candidate, 1
        while unique in taken:
            count += 1
            unique = f"{candidate[:58]}_{count}"
        taken.add(unique)
        ids[fastgpt_id] = unique
    return ids


def _output_keys(node: FastGptNode) -> dict[str, tuple[str, str | None]]:
    """Output id -> (key, valueType): references name the id, the node writes the key."""
    keys: dict[str, tuple[str, str | None]] = {}
    for output in node.outputs:
        key, value_type = output["key"], output.get("valueType")
        keys[str(output.get("id") or key)] = (
            key,
            value_type if isinstance(value_type, str) else None,
        )
    return keys


class _Rewriter:
    """Rewrites FastGPT references to our node ids, anywhere in a value, and notes what each
    referred output is (``refs``: ``"<ourId>.<outputId>"`` -> ``{key, valueType}``): FastGPT
    names an output by its id in a reference (``[nodeId, outputId]``, ``{{$nodeId.outputId$}}``)
    and writes it by its key, which may hold any character (a JSONPath: ``$.data[0]``)."""

    def __init__(
        self, ids: Mapping[str, str], outputs: Mapping[str, Mapping[str, tuple[str, str | None]]]
    ) -> None:
        self.ids = ids
        self.outputs = outputs
        self.refs: dict[str, dict[str, str]] = {}

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            return EDITOR_REFERENCE.sub(self._text, value) if "{{$" in value else value
        if self._is_reference(value):
            return self._reference(value)
        if isinstance(value, list):
            return [self(v) for v in value]
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        return value

    def _is_reference(self, value: Any) -> bool:
        return (
            isinstance(value, list)
            and len(value) == 2
            and isinstance(value[0], str)
            and (value[0] == VARIABLE_NODE_ID or value[0] in self.ids)
        )

    def _note(self, node: str, output: str) -> None:
        key, value_type = self.outputs[node].get(output, (output, None))
        ref: dict[str, str] = {"key": key}
        if value_type is not None:
            ref["valueType"] = value_type
        self.refs[f"{self.ids[node]}.{output}"] = ref

    def _reference(self, value: list[Any]) -> list[Any]:
        node, output = value
        if node == VARIABLE_NODE_ID:
            return [node, output]
        self._note(node, str(output))
        return [self.ids[node], output]

    def _text(self, match: re.Match[str]) -> str:
        node, output = match.group(1), match.group(2)
        if node == VARIABLE_NODE_ID or node not in self.ids:
            return match.group(0)
        self._note(node, output)
        return "{{$" + f"{self.ids[node]}.{output}" + "$}}"


def _node(node: FastGptNode, ids: Mapping[str, str], rewrite: _Rewriter) -> dict[str, Any]:
    rewrite.refs = {}
    params: dict[str, Any] = {}
    value_types: dict[str, str] = {}
    for item in node.inputs:
        key = item["key"]
        params[key] = rewrite(item.get("value"))
        if isinstance(item.get("valueType"), str):
            value_types[key] = item["valueType"]
        if item.get("canEdit") and key not in value_types:
            value_types.setdefault(key, "any")
    dynamic = [
        i["key"]
        for i in node.inputs
        if i.get("canEdit") and "addInputParam" not in _strings(i.get("renderTypeList"))
    ]
    outputs = [
        {
            k: v
            for k, v in (
                ("key", o["key"]),
                ("valueType", o.get("valueType") if isinstance(o.get("valueType"), str) else None),
                ("type", o.get("type")),
                ("required", o.get("required")),
                ("defaultValue", o.get("defaultValue")),
            )
            if v is not None
        }
        for o in node.outputs
    ]
    inputs: dict[str, Any] = {"params": params}
    if value_types:
        inputs["valueTypes"] = value_types
    if dynamic:
        inputs["dynamic"] = dynamic
    if outputs:
        inputs["outputs"] = outputs
    if rewrite.refs:
        inputs["refs"] = rewrite.refs
    if node.catch_error is not None:
        inputs["catchError"] = node.catch_error
    return {
        "id": ids[node.node_id],
        "type": TYPE_PREFIX + node.flow_node_type,
        "name": node.name,
        "inputs": inputs,
        "on_error": "branch",
        "metadata": {
            "fastgpt": {
                "nodeId": node.node_id,
                "flowNodeType": node.flow_node_type,
                "showStatus": node.raw.get("showStatus") is True,
            }
        },
    }


def _tool_spec(node: FastGptNode, our_id: str) -> dict[str, Any]:
    """A tool as the model sees it (``name``: the FastGPT node id): its parameters are the
    node's inputs that have a ``toolDescription`` (or a system tool's own JSON schema), its
    description the node's ``toolDescription``, ``intro`` or name."""
    schema = node.raw.get("jsonSchema")
    for item in node.inputs:
        value = item.get("value")
        if item.get("key") in ("system_toolData", "toolData") and isinstance(value, Mapping):
            schema = value.get("inputSchema", schema)
    if not isinstance(schema, Mapping):
        properties: dict[str, Any] = {}
        required: list[str] = []
        for item in node.inputs:
            described = item.get("toolDescription")
            if not described or not isinstance(item.get("key"), str):
                continue
            value_type = item.get("valueType")
            kind = value_type if isinstance(value_type, str) else ""
            spec = dict(TOOL_VALUE_TYPES.get(kind) or {"type": "string"})
            spec["description"] = str(described)[:MAX_TOOL_DESCRIPTION]
            enum = item.get("enum")
            if isinstance(enum, str) and (choices := [c for c in enum.split("\n") if c]):
                spec["enum"] = choices
            properties[item["key"]] = spec
            if item.get("required"):
                required.append(item["key"])
        schema = {"type": "object", "properties": properties, "required": required}
    described = node.raw.get("toolDescription") or node.raw.get("intro") or node.name
    avatar = node.raw.get("avatar")
    return {
        "id": our_id,
        "nodeId": node.node_id,
        "name": node.name,
        "avatar": avatar if isinstance(avatar, str) else "",
        "description": str(described)[:MAX_TOOL_DESCRIPTION],
        "parameters": dict(schema),
    }


def _edge(
    edge: FastGptEdge,
    index: int,
    graph: FastGptGraph,
    ids: Mapping[str, str],
    problems: list[Problem],
) -> dict[str, Any] | None:
    if edge.to_tool:
        return None
    source_type = graph.types[edge.source]
    out: dict[str, Any] = {"source": ids[edge.source], "target": ids[edge.target]}
    catch = f"{edge.source}-source_catch-"
    plain = f"{edge.source}-source-"
    if edge.source_handle.startswith(catch):
        out["branch"] = ERROR_BRANCH
    elif source_type in BRANCHING_TYPES:
        if not edge.source_handle.startswith(plain):
            problems.append(
                Problem(
                    f"edges[{index}].sourceHandle",
                    f"a {source_type} edge's handle must be '{plain}<branch>'",
                    "invalid_edge",
                )
            )
            return None
        out["branch"] = edge.source_handle[len(plain) :]
    return out


def _unsupported_shapes(
    graph: FastGptGraph, kept: list[FastGptNode], in_tool_runs: set[str]
) -> list[Problem]:
    """What this version does not run yet, each located."""
    index = {n.node_id: i for i, n in enumerate(graph.nodes)}
    problems: list[Problem] = []
    for node in kept:
        in_tool = node.node_id in in_tool_runs
        if in_tool and node.flow_node_type in ("variableUpdate", "userSelect", "formInput"):
            problems.append(
                Problem(
                    f"nodes[{index[node.node_id]}].flowNodeType",
                    f"node {node.node_id!r} ({node.name}): a {node.flow_node_type} in a tool's "
                    "run is not supported yet",
                    "unsupported_node",
                )
            )
    return problems


def _recursive(edges: list[FastGptEdge], starts: list[str]) -> set[int]:
    """FastGPT's recursive edges among ``edges`` (by ``id``): the edges that close a cycle,
    found depth-first from the entry nodes (an edge to a node on the current path). Iterative:
    a FastGPT chain may be longer than Python's recursion."""
    following: dict[str, list[FastGptEdge]] = {}
    for each in edges:
        following.setdefault(each.source, []).append(each)
    back: set[int] = set()
    done: set[str] = set()
    roots = [*starts, *sorted(following)]
    for root in roots:
        if root in done:
            continue
        path, on_path = [root], {root}
        pending = [iter(following.get(root, ()))]
        while pending:
            edge: FastGptEdge | None = next(pending[-1], None)
            if edge is None:
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                pending.pop()
                continue
            if edge.target in on_path:
                back.add(id(edge))
            elif edge.target not in done:
                path.append(edge.target)
                on_path.add(edge.target)
                pending.append(iter(following.get(edge.target, ())))
    return back


def _globals(graph: FastGptGraph) -> dict[str, Any]:
    """The global variables: ``chatConfig.variables``, or an old graph's ``userGuide`` node's
    ``variables`` input; ``{key: {label, valueType, default}}``."""
    items = graph.chat_config.get("variables")
    if not items:
        guide = next((n for n in graph.nodes if n.flow_node_type == "userGuide"), None)
        found = guide.input("variables") if guide is not None else None
        items = found.get("value") if found is not None else None
    spec: dict[str, Any] = {}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping) and isinstance(item.get("key"), str):
            spec[item["key"]] = {
                "label": item.get("label") if isinstance(item.get("label"), str) else None,
                "valueType": item.get("valueType")
                if isinstance(item.get("valueType"), str)
                else None,
                "default": item.get("defaultValue"),
            }
    return spec


def _workflow_id(graph: FastGptGraph) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", graph.name or "").strip("_")
    return (name or "fastgpt")[:200]


FORMATS: Final = ("native", "fastgpt")


def as_definition(
    document: dict[str, Any], fmt: str | None, *, workflow_id: str | None = None
) -> dict[str, Any]:
    """The definition to run or store for a request's ``document``: ours as it is, or the
    translation of a FastGPT export (``fmt`` ``fastgpt``, or none given and the document is
    one)."""
    from workflow_engine.fastgpt.graph import is_fastgpt

    if fmt == "fastgpt" or (fmt is None and is_fastgpt(document)):
        return translate(document, workflow_id=workflow_id).definition
    return document


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
