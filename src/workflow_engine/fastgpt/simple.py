"""A FastGPT "simple" app (the form its editor saves for one: ``{aiSettings, dataset,
selectedTools, chatConfig}``, as in the templates of ``type: simple``) as the workflow FastGPT
runs for it (``form2AppWorkflow`` in ``projects/app/src/web/core/app/utils.ts``): the start
node and an AI chat node with the form's model, prompt and history; with knowledge bases a
dataset search before it, with tools a tool-call node over them instead. Knowledge bases and
a simple app's tools (FastGPT plugins and system tools) are refused by the translation like
any node we do not run, so only the chat form runs here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

START_ID: Final = "workflowStartNodeId"
CHAT_ID: Final = "7BdojPlukIQw"
DATASET_ID: Final = "iKBoX2vIzETU"
TOOLS_ID: Final = "simpleTools"


def is_simple_form(value: Any) -> bool:
    return isinstance(value, Mapping) and isinstance(value.get("aiSettings"), Mapping)


def form_graph(form: Mapping[str, Any]) -> dict[str, Any]:
    """The ``{nodes, edges, chatConfig}`` FastGPT builds from a simple app's form."""
    ai: Mapping[str, Any] = form["aiSettings"]
    dataset = form.get("dataset") if isinstance(form.get("dataset"), Mapping) else {}
    datasets = dataset.get("datasets") if isinstance(dataset, Mapping) else None
    tools = form.get("selectedTools")
    tools = [t for t in tools if isinstance(t, Mapping)] if isinstance(tools, list) else []
    question = [START_ID, "userChatInput"]
    nodes: list[dict[str, Any]] = [_start()]
    edges: list[dict[str, Any]] = []
    if tools:
        nodes.append(
            _node(TOOLS_ID, "tools", "Tool call", _model_inputs(ai, question), ["answerText"])
        )
        edges.append(_edge(START_ID, TOOLS_ID))
        for index, tool in enumerate(tools):
            tool_id = f"simpleTool{index}"
            nodes.append(
                _node(
                    tool_id,
                    str(tool.get("flowNodeType") or ""),
                    str(tool.get("name") or tool_id),
                    [],
                    [],
                )
            )
            edges.append(
                {
                    "source": TOOLS_ID,
                    "target": tool_id,
                    "sourceHandle": "selectedTools",
                    "targetHandle": "selectedTools",
                }
            )
    else:
        inputs = [
            *_model_inputs(ai, question),
            _input("isResponseAnswerText", True, "boolean"),
            _input("aiChatReasoning", ai.get("aiChatReasoning"), "boolean"),
        ]
        nodes.append(_node(CHAT_ID, "chatNode", "AI Chat", inputs, ["history", "answerText"]))
        if datasets:
            nodes.append(_node(DATASET_ID, "datasetSearchNode", "Dataset search", [], []))
            edges += [_edge(START_ID, DATASET_ID), _edge(DATASET_ID, CHAT_ID)]
        else:
            edges.append(_edge(START_ID, CHAT_ID))
    chat_config = form.get("chatConfig")
    return {
        "nodes": nodes,
        "edges": edges,
        "chatConfig": chat_config if isinstance(chat_config, Mapping) else {},
    }


def _model_inputs(ai: Mapping[str, Any], question: list[str]) -> list[dict[str, Any]]:
    return [
        _input("model", ai.get("model"), "string"),
        _input("temperature", ai.get("temperature"), "number"),
        _input("maxToken", ai.get("maxToken"), "number"),
        _input("systemPrompt", ai.get("systemPrompt"), "string"),
        _input("history", ai.get("maxHistories", 6), "chatHistory"),
        _input("userChatInput", question, "string"),
    ]


def _start() -> dict[str, Any]:
    return _node(
        START_ID,
        "workflowStart",
        "Start",
        [_input("userChatInput", None, "string")],
        ["userChatInput"],
    )


def _node(
    node_id: str,
    flow_node_type: str,
    name: str,
    inputs: list[dict[str, Any]],
    outputs: list[str],
) -> dict[str, Any]:
    return {
        "nodeId": node_id,
        "flowNodeType": flow_node_type,
        "name": name,
        "showStatus": True,
        "inputs": inputs,
        "outputs": [{"id": key, "key": key, "type": "static"} for key in outputs],
    }


def _input(key: str, value: Any, value_type: str) -> dict[str, Any]:
    item: dict[str, Any] = {"key": key, "valueType": value_type, "renderTypeList": ["hidden"]}
    if value is not None:
        item["value"] = value
    return item


def _edge(source: str, target: str) -> dict[str, Any]:
    return {
        "source": source,
        "target": target,
        "sourceHandle": f"{source}-source-right",
        "targetHandle": f"{target}-target-left",
    }
