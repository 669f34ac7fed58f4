"""FastGPT's tool-call node (``tools``; ``dispatch/ai/agent/toolCall.ts`` in v4.10-4.12,
``agent/runTool/toolChoice.ts`` before): a model answers with the nodes on the node's
``selectedTools`` edges as its functions, each call runs that node (its inputs set from the
call's arguments, by key) and what follows it, and what the run returned goes back to the
model, until it answers without a call, a ``stopTool`` node runs, or ``MAX_TOOL_ROUNDS``.

On our machinery: the tools and what follows them are the node's ``body`` (translated with
a ``toolChoice`` node that starts each run on the called tool's branch); each call is one run
of it, ``<toolsId>[<n>].<node>`` in the results, as a loop's iteration. The stream carries
FastGPT's ``toolCall``, ``toolParams`` and ``toolResponse`` (``node.stream`` chunks the
dialect names so) between the model's ``answer`` text.

A run is not resumed across a worker's death: the node runs again from its first model call
(a model need not call the same tools twice)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from pydantic import Field

from workflow_engine.errors import NodeError
from workflow_engine.fastgpt.nodes import (
    ERROR_TEXT,
    HTTP_SYSTEM_OUTPUTS,
    FastGptNode,
    NoOp,
    _params_of,
    chat_messages,
    fail,
    model_max_tokens,
    model_temperature,
)
from workflow_engine.fastgpt.runtime import ADD_INPUT_PARAM, FastGptInputs, tool_call
from workflow_engine.fastgpt.translate import TYPE_PREFIX
from workflow_engine.fastgpt.values import js_string, parse_json5
from workflow_engine.nodes.base import NodeContext
from workflow_engine.vocabulary import NodeResult, NodeStatus

MAX_TOOL_ROUNDS: Final = 100
"""Model calls one tools node makes at most (FastGPT's ``maxRunToolTimes`` in v4.10+)."""
RESPONSE_SHOWN: Final = 5000
"""A ``toolResponse`` event shows this many characters from each end of a long response."""
STOP_TOOL: Final = TYPE_PREFIX + "stopTool"
ANSWERING: Final = frozenset({TYPE_PREFIX + "chatNode", TYPE_PREFIX + "answerNode"})
"""The nodes in a tool's run whose answers are the tools node's answer too."""


class ToolsInputs(FastGptInputs):
    body: dict[str, Any] = Field(description="The tools' runs, as a sub-graph.")
    tools: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Each tool: {id, nodeId, name, avatar, description, parameters}.",
    )


class ToolsNode(FastGptNode):
    flow_node_type = "tools"
    Inputs = ToolsInputs
    verbatim_fields = frozenset(ToolsInputs.model_fields)
    subgraph_field = "body"

    async def dispatch(
        self, ctx: NodeContext, inputs: FastGptInputs, params: dict[str, Any]
    ) -> dict[str, Any]:
        from workflow_engine.nodes.openai_chat import ChatRequest, complete_streaming

        assert isinstance(inputs, ToolsInputs)
        connection = await ctx.connection("default")
        model = params.get("model") or connection.model
        if not isinstance(model, str) or not model:
            raise fail(ctx, inputs, "no model", "config")
        tools = {str(t.get("nodeId")): t for t in inputs.tools}
        functions = [
            {
                "type": "function",
                "function": {
                    "name": name,
                    "description": tool.get("description") or "",
                    "parameters": tool.get("parameters") or {"type": "object"},
                },
            }
            for name, tool in tools.items()
        ]
        messages = chat_messages(ctx, params)
        publish = None if params.get("isResponseAnswerText") is False else ctx.stream
        answers: list[str] = []
        usage: dict[str, int] = {}
        runs = 0
        for _ in range(MAX_TOOL_ROUNDS):
            request = ChatRequest(
                model,
                messages,
                model_temperature(params.get("temperature")),
                model_max_tokens(params),
                tools=functions or None,
            )
            answer = await complete_streaming(ctx.http, connection, request, publish)
            for key, count in answer.usage.to_dict().items():
                usage[key] = usage.get(key, 0) + count
            if answer.text:
                answers.append(answer.text)
            if not answer.tool_calls:
                if not answer.text.strip() and not answer.reasoning:
                    raise fail(ctx, inputs, "the model's answer is empty", "llm_output")
                break
            messages.append(
                {
                    "role": "assistant",
                    "content": answer.text or None,
                    "tool_calls": [call.to_message() for call in answer.tool_calls],
                }
            )
            stop = False
            for call in answer.tool_calls:
                tool = tools.get(call.name)
                if tool is None:  # (FastGPT announces no call to a tool it does not have)
                    content = f"there is no tool named {call.name!r}"
                    messages.append({"role": "tool", "tool_call_id": call.id, "content": content})
                    continue
                await _event(ctx, "toolCall", call.id, params="", functionName=call.name, tool=tool)
                if call.arguments:
                    await _event(ctx, "toolParams", call.id, params=call.arguments)
                content, results = await _run_tool(ctx, runs, tool, call)
                runs += 1
                stop = stop or any(
                    r.node_type == STOP_TOOL and r.status is NodeStatus.COMPLETED for r in results
                )
                answers += _answers(results)
                shown = slice_start_end(content, RESPONSE_SHOWN, RESPONSE_SHOWN)
                await _event(ctx, "toolResponse", call.id, response=shown)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": content})
            if stop:
                break
        return {"answerText": "".join(answers), "usage": usage}


async def _run_tool(
    ctx: NodeContext, run: int, tool: Mapping[str, Any], call: Any
) -> tuple[str, list[NodeResult]]:
    """Run ``tool`` for ``call`` (run ``run`` of the body): the tool message and the run's
    results. A run that fails is answered with the error (FastGPT's ``getErrText``)."""
    chosen = {"tool": tool.get("id"), "params": _arguments(call)}
    try:
        results = await ctx.run_body_once(run, None, call=chosen)
    except NodeError as exc:
        if exc.error_type == "limit":
            raise
        return slice_start_end(str(exc), RESPONSE_SHOWN, RESPONSE_SHOWN), []
    return format_tool_response(tool_response(results)), results


async def _event(
    ctx: NodeContext,
    name: str,
    call_id: str,
    *,
    tool: Mapping[str, Any] | None = None,
    params: str = "",
    response: str = "",
    **extra: Any,
) -> None:
    """FastGPT's ``{tool: {id, toolName, toolAvatar, params, response}}`` as a chunk
    ``{<name>: {...}}``: the dialect sends it as event ``<name>``."""
    body: dict[str, Any] = {
        "id": call_id,
        "toolName": str((tool or {}).get("name") or ""),
        "toolAvatar": str((tool or {}).get("avatar") or ""),
        **extra,
        "params": params,
        "response": response,
    }
    await ctx.stream({name: body})


def _arguments(call: Any) -> dict[str, Any]:
    """A call's arguments (JSON, or JSON5 as FastGPT reads them); {} when unreadable."""
    try:
        found = parse_json5(call.arguments) if call.arguments.strip() else {}
    except (ValueError, RecursionError):
        return {}
    return found if isinstance(found, dict) else {}


def tool_response(results: list[NodeResult]) -> Any:
    """What a tool's run returns to the model: the last non-empty ``toolResponses`` a node of
    it gave (``pushStore``): an error's text, a chat's answer, the HTTP request's outputs (or
    its raw response), the code's return value, a plugin's outputs; None when none did."""
    found: Any = None
    for result in results:
        given = _tool_response_of(result)
        if given is None or given == [] or given == {}:
            continue
        found = given
    return found


def _tool_response_of(result: NodeResult) -> Any:
    output = result.output if isinstance(result.output, Mapping) else {}
    flow_type = result.node_type.removeprefix(TYPE_PREFIX)
    if result.status is NodeStatus.FAILED:
        error = output.get(ERROR_TEXT) or (result.error or {}).get("message")
        return {"error": error}
    if result.status is not NodeStatus.COMPLETED:
        return None
    if flow_type == "chatNode":
        return output.get("answerText")
    if flow_type == "httpRequest468":
        results = {k: v for k, v in output.items() if k not in HTTP_SYSTEM_OUTPUTS}
        return results or output.get("httpRawResponse")
    if flow_type == "code":
        if "system_rawResponse" in output:
            return output["system_rawResponse"]
        return {"error": (output.get("error") or {}).get("message")} if "error" in output else None
    if flow_type == "pluginOutput":
        return dict(output)
    return None


def format_tool_response(value: Any) -> str:
    """FastGPT's ``formatToolResponse``: an object or list as indented JSON, anything else as
    text, nothing (or a falsy value) ``none``."""
    if isinstance(value, Mapping | list):
        return json.dumps(value, indent=2, ensure_ascii=False)
    if value is None or value is False or value == 0 or value == "":
        return "none"
    return js_string(value)


def slice_start_end(text: str, start: int, end: int) -> str:
    """FastGPT's ``sliceStrStartEnd``: a long text's ends, what is between them counted."""
    if len(text) <= start + end:
        return text
    hidden = len(text) - start - end
    return f"{text[:start]}\n\n...[hide {hidden} chars]...\n\n{text[-end:]}"


def _answers(results: list[NodeResult]) -> list[str]:
    """The answers the chat and answer nodes of a tool's run gave (FastGPT merges them into
    the tools node's answer)."""
    return [
        r.output["answerText"]
        for r in results
        if r.node_type in ANSWERING
        and r.status is NodeStatus.COMPLETED
        and isinstance(r.output, Mapping)
        and isinstance(r.output.get("answerText"), str)
    ]


class ToolChoice(FastGptNode):
    """Starts a run of a ``tools`` node's body on the branch of the tool the model called
    (not a FastGPT node: the translation adds it)."""

    flow_node_type = "toolChoice"
    chooses_branch = True
    pure = True

    async def dispatch(
        self, ctx: NodeContext, inputs: FastGptInputs, params: dict[str, Any]
    ) -> dict[str, Any]:
        call = tool_call(ctx)
        chosen = call.get("tool") if call is not None else None
        return {"branch": chosen if isinstance(chosen, str) else ""}

    def declared_branches(self, inputs: Mapping[str, Any]) -> set[str] | None:
        tools = _params_of(inputs).get("tools")
        return {t for t in tools if isinstance(t, str)} if isinstance(tools, list) else set()


class ToolParams(FastGptNode):
    """A tool whose parameters are its own inputs: it outputs them, as the model set them
    (``dispatchToolParams``)."""

    flow_node_type = "toolParams"
    pure = True

    async def dispatch(
        self, ctx: NodeContext, inputs: FastGptInputs, params: dict[str, Any]
    ) -> dict[str, Any]:
        return {k: v for k, v in params.items() if k != ADD_INPUT_PARAM}


class StopTool(NoOp):
    """Ends the tools node's calls once the run it is in is over (no more model calls)."""

    flow_node_type = "stopTool"


TOOL_TYPES: tuple[type[FastGptNode], ...] = (ToolsNode, ToolChoice, ToolParams, StopTool)
