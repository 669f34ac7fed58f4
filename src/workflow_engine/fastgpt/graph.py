"""FastGPT's workflow export, as its editor writes it (SPEC section 13): ``{nodes, edges,
chatConfig}``, or an app/template object holding it under ``workflow`` (older exports:
``modules`` for ``nodes``). Parsing is lenient about the editor's UI fields (positions, avatars,
labels) and strict about what running needs: every node has a ``nodeId`` and a
``flowNodeType``, every edge names existing nodes, and every node type is one we run.

Field names and type strings are FastGPT's (``packages/global/core/workflow/type/node.ts``,
``edge.d.ts``, ``node/constant.ts``); ``docs/fastgpt-research.md`` has the details."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from workflow_engine.errors import DefinitionError, Problem
from workflow_engine.fastgpt.simple import form_graph, is_simple_form

SUPPORTED_TYPES: Final = frozenset(
    {
        "workflowStart",
        "userGuide",
        "globalVariable",
        "pluginConfig",
        "answerNode",
        "chatNode",
        "httpRequest468",
        "ifElseNode",
        "code",
        "textEditor",
        "variableUpdate",
        "loop",
        "loopStart",
        "loopEnd",
        "classifyQuestion",
        "contentExtract",
        "userSelect",
        "formInput",
        "pluginInput",
        "pluginOutput",
        "emptyNode",
        "comment",
        "tools",
        "toolParams",
        "stopTool",
        "readFiles",
    }
)
"""The node types we run; any other (knowledge-base search, system plugins, apps we do not
host) refuses the whole graph before anything runs."""

WHY_NOT: Final[Mapping[str, str]] = {
    "datasetSearchNode": "needs a FastGPT knowledge base",
    "datasetConcatNode": "needs a FastGPT knowledge base",
    "app": "runs another FastGPT app, which this service does not host",
    "appModule": "runs another FastGPT app, which this service does not host",
    "pluginModule": "runs a FastGPT plugin, which this service does not host",
    "cfr": "query extension needs FastGPT's dataset search",
    "lafModule": "calls a Laf cloud function account",
    "customFeedback": "writes feedback into FastGPT's chat records",
    "tool": "runs a FastGPT system or MCP tool, which this service does not host",
    "toolSet": "holds FastGPT system or MCP tools, which this service does not host",
}

ENTRY_TYPES: Final = frozenset({"workflowStart", "userGuide", "pluginInput"})
MAX_NODES: Final = 2000
MAX_EDGES: Final = 10_000
"""A FastGPT app has tens of nodes; a larger document is refused before it is walked."""
"""FastGPT's entry nodes (``getWorkflowEntryNodeIds``)."""


@dataclass(frozen=True, slots=True)
class FastGptNode:
    node_id: str
    flow_node_type: str
    name: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    parent_node_id: str | None = None
    """The loop a ``loopStart``/``loopEnd``/body node sits in."""
    catch_error: bool | None = None
    """Newer graphs: route an error down the ``source_catch`` edge (None: an old graph)."""
    raw: Mapping[str, Any] = field(default_factory=dict)

    def input(self, key: str) -> dict[str, Any] | None:
        return next((i for i in self.inputs if i.get("key") == key), None)


TOOL_HANDLE: Final = "selectedTools"
"""The handle of a ``tools`` node's edges to its tools (``filterWorkflowEdges``)."""


@dataclass(frozen=True, slots=True)
class FastGptEdge:
    source: str
    source_handle: str
    target: str
    target_handle: str

    @property
    def to_tool(self) -> bool:
        """An edge from a ``tools`` node to one of its tools: not a run edge."""
        return TOOL_HANDLE in (self.source_handle, self.target_handle)


@dataclass(frozen=True, slots=True)
class FastGptGraph:
    nodes: list[FastGptNode]
    edges: list[FastGptEdge]
    chat_config: Mapping[str, Any]
    name: str | None = None
    types: Mapping[str, str] = field(default_factory=dict)
    """Node id -> flowNodeType, of every node (a supported type or not)."""


def workflow_of(document: Any) -> tuple[Mapping[str, Any], str] | None:
    """The ``{nodes, edges, chatConfig}`` object inside a FastGPT document and its JSON path
    ("" for the document itself); None when the document is not FastGPT's. A simple app's
    form (``{aiSettings, ...}``) gives the graph FastGPT builds for it (``fastgpt/simple.py``)."""
    if not isinstance(document, Mapping):
        return None
    for key, path in (("workflow", "workflow."), ("", "")):
        inner = document.get(key) if key else document
        if isinstance(inner, Mapping) and is_simple_form(inner):  # a "simple" app's form:
            return form_graph(inner), path  # the graph FastGPT builds for it
        if isinstance(inner, Mapping):
            nodes = inner.get("nodes", inner.get("modules"))
            if isinstance(nodes, list) and any(
                isinstance(n, Mapping) and "flowNodeType" in n for n in nodes
            ):
                return inner, path
    return None


def is_fastgpt(document: Any) -> bool:
    """Whether a request body's definition is a FastGPT export (format detection)."""
    return workflow_of(document) is not None


def parse(document: Any) -> FastGptGraph:
    """The graph of a FastGPT document; ``DefinitionError`` with every problem (its JSON
    path, and each node we do not run named by id and type)."""
    found = workflow_of(document)
    if found is None:
        raise DefinitionError(
            [Problem("", "not a FastGPT workflow: expected {nodes: [{nodeId, flowNodeType}]}")]
        )
    workflow, prefix = found
    nodes_key = "nodes" if "nodes" in workflow else "modules"
    for key, limit in ((nodes_key, MAX_NODES), ("edges", MAX_EDGES)):
        items = workflow.get(key)
        if isinstance(items, list) and len(items) > limit:
            raise DefinitionError(
                [
                    Problem(
                        f"{prefix}{key}", f"{len(items)} {key} exceed the limit of {limit}", "limit"
                    )
                ]
            )
    problems: list[Problem] = []
    nodes = _nodes(workflow.get(nodes_key) or [], f"{prefix}{nodes_key}", problems)
    raw_nodes = workflow.get(nodes_key)
    known = {
        n["nodeId"]
        for n in (raw_nodes if isinstance(raw_nodes, list) else [])
        if isinstance(n, Mapping) and isinstance(n.get("nodeId"), str)
    }
    edges = _edges(workflow.get("edges") or [], f"{prefix}edges", known, problems)
    if problems:
        raise DefinitionError(problems)
    chat_config = workflow.get("chatConfig") or workflow.get("chatConfigs") or {}
    name = document.get("name") if isinstance(document, Mapping) else None
    return FastGptGraph(
        nodes=nodes,
        edges=edges,
        chat_config=chat_config if isinstance(chat_config, Mapping) else {},
        name=name if isinstance(name, str) else None,
        types={n.node_id: n.flow_node_type for n in nodes},
    )


def _nodes(raw: Any, path: str, problems: list[Problem]) -> list[FastGptNode]:
    if not isinstance(raw, list):
        problems.append(Problem(path, "must be a list of nodes"))
        return []
    nodes: list[FastGptNode] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        where = f"{path}[{index}]"
        if not isinstance(item, Mapping):
            problems.append(Problem(where, "must be an object"))
            continue
        node_id, node_type = item.get("nodeId"), item.get("flowNodeType")
        if not isinstance(node_id, str) or not node_id:
            problems.append(Problem(f"{where}.nodeId", "a node needs a nodeId (a string)"))
            continue
        if node_id in seen:
            problems.append(Problem(f"{where}.nodeId", f"duplicate nodeId {node_id!r}"))
            continue
        seen.add(node_id)
        if not isinstance(node_type, str):
            problems.append(Problem(f"{where}.flowNodeType", "a node needs a flowNodeType"))
            continue
        if node_type not in SUPPORTED_TYPES:
            reason = WHY_NOT.get(node_type, "is not a FastGPT node type this service runs")
            problems.append(
                Problem(
                    f"{where}.flowNodeType",
                    f"node {node_id!r} ({item.get('name') or node_type}): type "
                    f"{node_type!r}: {reason}",
                    "unsupported_node",
                )
            )
            continue
        nodes.append(
            FastGptNode(
                node_id=node_id,
                flow_node_type=node_type,
                name=str(item.get("name") or node_type),
                inputs=_items(item.get("inputs"), f"{where}.inputs", problems),
                outputs=_items(item.get("outputs"), f"{where}.outputs", problems),
                parent_node_id=_str_or_none(item.get("parentNodeId")),
                catch_error=item.get("catchError")
                if isinstance(item.get("catchError"), bool)
                else None,
                raw=item,
            )
        )
    return nodes


def _items(raw: Any, path: str, problems: list[Problem]) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(
        isinstance(i, Mapping) and isinstance(i.get("key"), str) for i in raw
    ):
        problems.append(Problem(path, "must be a list of objects, each with a string `key`"))
        return []
    return [dict(i) for i in raw]


def _edges(raw: Any, path: str, known: set[str], problems: list[Problem]) -> list[FastGptEdge]:
    """The edges; ``known``: every node id of the document (a supported type or not)."""
    if not isinstance(raw, list):
        problems.append(Problem(path, "must be a list of edges"))
        return []
    edges: list[FastGptEdge] = []
    for index, item in enumerate(raw):
        where = f"{path}[{index}]"
        if not isinstance(item, Mapping):
            problems.append(Problem(where, "must be an object"))
            continue
        fields = {k: item.get(k) for k in ("source", "sourceHandle", "target", "targetHandle")}
        if not isinstance(fields["source"], str) or not isinstance(fields["target"], str):
            problems.append(Problem(where, "an edge needs a `source` and a `target` (strings)"))
            continue
        for end in ("source", "target"):
            if fields[end] not in known:
                problems.append(
                    Problem(f"{where}.{end}", f"edge {end} {fields[end]!r} is not a node")
                )
        edges.append(
            FastGptEdge(
                source=fields["source"],
                source_handle=str(fields["sourceHandle"] or f"{fields['source']}-source-right"),
                target=fields["target"],
                target_handle=str(fields["targetHandle"] or f"{fields['target']}-target-left"),
            )
        )
    return edges


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
