"""What a FastGPT node sees while it runs: the graph (other nodes' outputs, through our run's
scope), the FastGPT variables, and its own parameters resolved as FastGPT's
``getNodeRunParams`` resolves them (``dispatch/index.ts``)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final

from pydantic import Field

from workflow_engine.fastgpt.translate import GLOBALS_VARIABLE, WRITES_VARIABLE
from workflow_engine.fastgpt.values import (
    UNDEFINED,
    replace_editor_variables,
    resolve_reference,
    value_type_format,
)
from workflow_engine.nodes.base import BODY_CALL, NodeContext, NodeInputs

RAW_PARAMS: Final = frozenset({"childrenNodeIdList", "system_httpJsonBody"})
"""Inputs FastGPT hands to the node as written (the node resolves them itself)."""
ADD_INPUT_PARAM: Final = "system_addInputParam"


class FastGptInputs(NodeInputs):
    """A translated FastGPT node's inputs (``fastgpt/translate.py``): its own, unresolved."""

    params: dict[str, Any] = Field(default_factory=dict, description="FastGPT's inputs by key.")
    valueTypes: dict[str, str] = Field(default_factory=dict)
    dynamic: list[str] = Field(default_factory=list, description="User-added inputs' keys.")
    outputs: list[dict[str, Any]] = Field(default_factory=list)
    refs: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="`<nodeId>.<outputId>` -> {key, valueType}: the outputs it refers to.",
    )
    catchError: bool | None = None


class ScopeGraph:
    """``GraphView`` over our run's scope: a node's output is the dict it returned, keyed by
    FastGPT's output keys; the node's ``refs`` map the output ids it refers to to keys."""

    def __init__(self, ctx: NodeContext, inputs: FastGptInputs) -> None:
        nodes = ctx.scope.get("nodes")
        self._nodes: Mapping[str, Any] = nodes if isinstance(nodes, Mapping) else {}
        self._self_id = ctx.node_id.rpartition(".")[2]
        self._params = inputs.params
        self._refs = inputs.refs

    def has_node(self, node_id: str) -> bool:
        return node_id in self._nodes

    def output(self, node_id: str, output_id: str) -> Any:
        output = self._nodes[node_id]["output"] if node_id in self._nodes else None
        key = self._refs.get(f"{node_id}.{output_id}", {}).get("key", output_id)
        if isinstance(output, Mapping) and key in output:
            return output[key]
        return UNDEFINED

    def output_type(self, node_id: str, output_id: str) -> str | None:
        value_type = self._refs.get(f"{node_id}.{output_id}", {}).get("valueType")
        return value_type if isinstance(value_type, str) else None

    def input(self, node_id: str, key: str) -> Any:
        if node_id == self._self_id:
            return self._params.get(key, UNDEFINED)
        return UNDEFINED


def variables_of(ctx: NodeContext) -> dict[str, Any]:
    """FastGPT's ``variables`` as a node sees them: each global's value from the request (by
    label first, then key, as ``getSystemVariables`` reads it) or its default, typed; the
    request's other variables; the system ones; then what ``variableUpdate`` nodes upstream
    wrote."""
    scope_vars = ctx.scope.get("vars")
    ours: Mapping[str, Any] = scope_vars if isinstance(scope_vars, Mapping) else {}
    spec = ours.get(GLOBALS_VARIABLE) or {}
    inputs = ctx.scope.get("inputs")
    given = inputs.get("variables") if isinstance(inputs, Mapping) else None
    request: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    view: dict[str, Any] = dict(request)
    labels = set()
    for key, item in spec.items():
        label = item.get("label")
        value = request.get(label) if isinstance(label, str) else None
        if value is None:
            value = request.get(key)
        if value is None:
            value = item.get("default")
        view[key] = value_type_format(value, item.get("valueType"))
        if isinstance(label, str) and label != key:
            labels.add(label)
    for label in labels:
        view.pop(label, None)
    view.update(system_variables(ctx))
    view.update(ours.get(WRITES_VARIABLE) or {})
    return view


def system_variables(ctx: NodeContext) -> dict[str, Any]:
    """FastGPT's system variables (``getSystemVariables``), from this execution."""
    inputs = ctx.scope.get("inputs")
    metadata = ctx.metadata if isinstance(ctx.metadata, Mapping) else {}
    chat_id = metadata.get("chatId")
    given = inputs if isinstance(inputs, Mapping) else {}
    if isinstance(given.get("chatId"), str):
        chat_id = given["chatId"]
    return {
        "userId": ctx.tenant_id,
        "appId": ctx.workflow_id,
        "chatId": chat_id if isinstance(chat_id, str) else ctx.execution_id,
        "responseChatItemId": ctx.execution_id,
        "histories": request_history(given),
        "cTime": time.strftime("%Y-%m-%d %H:%M:%S %A", time.gmtime(ctx.clock.now())),
    }


def tool_call(ctx: NodeContext) -> Mapping[str, Any] | None:
    """The model's call this run of a ``tools`` node's body is for: ``{tool: <our id of the
    tool node>, params}`` (given by the tools node, out of the data's reach); None outside."""
    call = ctx.scope.get(BODY_CALL)
    return call if isinstance(call, Mapping) else None


def tool_arguments(ctx: NodeContext) -> Mapping[str, Any] | None:
    """The arguments a model called this node with, when it is the tool of this run of a
    ``tools`` node's body (they replace its inputs' values by key); None otherwise."""
    call = tool_call(ctx)
    if call is None or call.get("tool") != ctx.node_id.rpartition(".")[2]:
        return None
    params = call.get("params")
    return params if isinstance(params, Mapping) else {}


def run_params(ctx: NodeContext, inputs: FastGptInputs) -> dict[str, Any]:
    """The node's parameters as FastGPT computes them: each input through
    ``replaceEditorVariable`` and ``getReferenceVariableValue``, then typed by its
    ``valueType``; the user-added inputs also gathered under ``system_addInputParam``."""
    graph = ScopeGraph(ctx, inputs)
    variables = variables_of(ctx)
    params: dict[str, Any] = {}
    given = inputs.params
    if (arguments := tool_arguments(ctx)) is not None:  # FastGPT's updateToolInputValue
        given = {k: v if arguments.get(k) is None else arguments[k] for k, v in given.items()}
    for key, raw in given.items():
        if key in RAW_PARAMS:
            params[key] = raw
            continue
        value = replace_editor_variables(raw, graph, variables, current_node_id=ctx.node_id)
        value = resolve_reference(value, graph, variables)
        params[key] = value_type_format(value, inputs.valueTypes.get(key))
    if inputs.dynamic:
        params[ADD_INPUT_PARAM] = {key: params.get(key, UNDEFINED) for key in inputs.dynamic}
    return params


def request_question(inputs: Mapping[str, Any]) -> str:
    """The user's question: ``userChatInput``, else the last ``messages`` item when it is the
    user's (a FastGPT ``/v1/chat/completions`` body's ``messages`` posted as they are)."""
    question = inputs.get("userChatInput")
    if isinstance(question, str) and question:
        return question
    messages = chat_history(inputs.get("messages"))
    if messages and messages[-1]["role"] == "user":
        return _item_text(messages[-1]["content"]) or ""
    return ""


def request_history(inputs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The chat before the question: ``history``, else ``messages`` but its last user one."""
    if inputs.get("history") is not None:
        return chat_history(inputs.get("history"))
    messages = chat_history(inputs.get("messages"))
    if messages and messages[-1]["role"] == "user" and not inputs.get("userChatInput"):
        return messages[:-1]
    return messages


def chat_history(raw: Any) -> list[dict[str, Any]]:
    """Earlier chat messages as OpenAI messages ``[{role, content}]``, from OpenAI-style
    messages or FastGPT chat items (``{obj: Human|AI|System, value: [{type: text, text:
    {content}}]}``); anything else is dropped."""
    roles = {"Human": "user", "AI": "assistant", "System": "system"}
    messages: list[dict[str, Any]] = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, Mapping):
            continue
        if isinstance(item.get("role"), str) and "content" in item:
            messages.append({"role": item["role"], "content": item["content"]})
        elif item.get("obj") in roles:
            messages.append({"role": roles[item["obj"]], "content": _item_text(item.get("value"))})
    return messages


def _item_text(value: Any) -> str:
    """The text of a FastGPT chat item's value (``[{type: text, text: {content}}]``) or of
    OpenAI content parts (``[{type: text, text}]``)."""
    if isinstance(value, str):
        return value
    parts = []
    for part in value if isinstance(value, list) else []:
        text = part.get("text") if isinstance(part, Mapping) else None
        content = text.get("content") if isinstance(text, Mapping) else text
        if isinstance(content, str):
            parts.append(content)
    return "\n".join(parts)


def defined(value: Any) -> Any:
    """``value`` for our JSON output: JavaScript's undefined becomes None."""
    if value is UNDEFINED:
        return None
    if isinstance(value, dict):
        return {k: defined(v) for k, v in value.items() if v is not UNDEFINED}
    if isinstance(value, list):
        return [defined(v) for v in value]
    return value
