"""Hand-built FastGPT graphs, shaped as FastGPT's editor exports them (``nodes``: ``{nodeId,
flowNodeType, name, inputs: [{key, renderTypeList, valueType, value}], outputs: [{id, key,
valueType, type}]}``; ``edges``: handles ``<nodeId>-source-<key>`` / ``-source_catch-right``)."""

from __future__ import annotations

from typing import Any

START = "448745"
"""FastGPT's editor gives the start node a numeric id (not one of ours: ``n_448745``)."""


def node(
    node_id: str,
    flow_node_type: str,
    inputs: list[dict[str, Any]] | None = None,
    outputs: list[dict[str, Any]] | None = None,
    name: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "nodeId": node_id,
        "name": name or flow_node_type,
        "flowNodeType": flow_node_type,
        "showStatus": True,
        "position": {"x": 0, "y": 0},
        "inputs": inputs or [],
        "outputs": outputs or [],
        **extra,
    }


def given(
    key: str, value: Any, value_type: str = "string", render: str = "input"
) -> dict[str, Any]:
    return {
        "key": key,
        "renderTypeList": [render, "reference"],
        "valueType": value_type,
        "label": key,
        "value": value,
    }


def out(key: str, value_type: str = "string", output_id: str | None = None) -> dict[str, Any]:
    return {
        "id": output_id or key,
        "key": key,
        "valueType": value_type,
        "type": "static",
        "label": key,
    }


def edge(source: str, target: str, handle: str = "right", kind: str = "source") -> dict[str, Any]:
    return {
        "source": source,
        "sourceHandle": f"{source}-{kind}-{handle}",
        "target": target,
        "targetHandle": f"{target}-target-left",
    }


def start() -> dict[str, Any]:
    return node(
        START,
        "workflowStart",
        [given("userChatInput", "", render="reference")],
        [out("userChatInput")],
        name="Start",
    )


def guide(variables: list[dict[str, Any]]) -> dict[str, Any]:
    """An old graph's config node, holding the global variables."""
    return node("userGuide", "userGuide", [given("variables", variables, "any", "hidden")])


def answer(node_id: str, text: Any) -> dict[str, Any]:
    return node(
        node_id, "answerNode", [given("text", text, "any", "textarea")], [], name=f"Reply {node_id}"
    )


def text_editor(node_id: str, text: str, **dynamic: Any) -> dict[str, Any]:
    inputs = [
        {
            "key": "system_addInputParam",
            "renderTypeList": ["addInputParam"],
            "valueType": "dynamic",
            "value": None,
        },
        given("system_textareaInput", text, "string", "textarea"),
    ]
    for key, value in dynamic.items():
        inputs.append({**given(key, value, "string", "reference"), "canEdit": True})
    return node(node_id, "textEditor", inputs, [out("system_text")])


def if_else(node_id: str, branches: list[dict[str, Any]]) -> dict[str, Any]:
    return node(
        node_id,
        "ifElseNode",
        [given("ifElseList", branches, "any", "hidden")],
        [out("ifElseResult")],
    )


def variable_update(node_id: str, updates: list[dict[str, Any]]) -> dict[str, Any]:
    return node(node_id, "variableUpdate", [given("updateList", updates, "any", "hidden")])


def workflow(*nodes: dict[str, Any], edges: list[dict[str, Any]], **config: Any) -> dict[str, Any]:
    return {"nodes": list(nodes), "edges": edges, "chatConfig": config}


def tools(node_id: str, model: str, system: str = "", **extra: Any) -> dict[str, Any]:
    """A tool-call node (``tools``) as FastGPT's template (v4.8-4.12) writes it: model,
    temperature, maxToken, systemPrompt, history, userChatInput; one output, ``answerText``."""
    return node(
        node_id,
        "tools",
        [
            given("model", model, "string", "settingLLMModel"),
            given("temperature", 0, "number", "hidden"),
            given("maxToken", 2000, "number", "hidden"),
            given("systemPrompt", system, "string", "textarea"),
            given("history", 6, "chatHistory", "numberInput"),
            given("userChatInput", [START, "userChatInput"], "string", "reference"),
        ],
        [out("answerText")],
        name="Tool call",
        **extra,
    )


def tool_param(
    key: str, description: str, value_type: str = "string", **extra: Any
) -> dict[str, Any]:
    """An input the model sets when it calls the node (it has a ``toolDescription``)."""
    return {
        "key": key,
        "renderTypeList": ["reference"],
        "valueType": value_type,
        "label": key,
        "toolDescription": description,
        "canEdit": True,
        **extra,
    }


def tool_edge(source: str, target: str) -> dict[str, Any]:
    """A tools node's edge to one of its tools."""
    return {
        "source": source,
        "sourceHandle": "selectedTools",
        "target": target,
        "targetHandle": "selectedTools",
    }
