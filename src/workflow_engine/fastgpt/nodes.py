"""FastGPT's node types (``fastgpt.<flowNodeType>``), each with FastGPT's inputs and outputs
(keys as FastGPT names them, so references resolve) and its dispatch rules
(``packages/service/core/workflow/dispatch/``; ``docs/fastgpt-research.md``). A node gets its
inputs unresolved and resolves them as FastGPT does (``runtime.run_params``).

Errors: a FastGPT node error never fails the workflow. With ``catchError`` (newer graphs) the
node fails and its catch edge runs (the translation gives every node ``on_error: branch``);
without, its branch stops; an old graph's ``code`` and ``httpRequest468`` nodes (``catchError``
absent) put the error in their ``error`` output and the branch goes on."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from pydantic import BaseModel, Field

from workflow_engine.errors import NodeError
from workflow_engine.fastgpt.conditions import ELSE, ConditionError, choose_branch, if_else_label
from workflow_engine.fastgpt.http_body import InvalidJsonBody, pick_outputs, replace_json_body
from workflow_engine.fastgpt.runtime import (
    ADD_INPUT_PARAM,
    FastGptInputs,
    ScopeGraph,
    chat_history,
    defined,
    request_history,
    request_question,
    run_params,
    variables_of,
)
from workflow_engine.fastgpt.translate import TYPE_PREFIX, VARIABLE_NODE_ID, WRITES_VARIABLE
from workflow_engine.fastgpt.values import (
    UNDEFINED,
    TextTooLong,
    js_json,
    js_string,
    parse_json5,
    replace_editor_variables,
    replace_variables,
    resolve_reference,
    value_type_format,
)
from workflow_engine.nodes.base import NodeContext, NodeType
from workflow_engine.nodes.wait_input import WAITING_FOR_INPUT
from workflow_engine.vocabulary import NodeStatus

ERROR_TEXT: Final = "system_error_text"
MAX_TEMPERATURE: Final = 1.2
"""FastGPT's temperature input is 0-10, scaled to the model's ``maxTemperature`` (1.2 for the
OpenAI models in FastGPT's default configuration)."""


class FastGptNode(NodeType[FastGptInputs]):
    """Base of FastGPT's node types: its inputs are passed as written (FastGPT's references are
    not our templates); ``dispatch`` returns the node's data, whose keys set its outputs."""

    flow_node_type: ClassVar[str]
    Inputs: ClassVar[type[BaseModel]] = FastGptInputs
    verbatim_fields = frozenset(FastGptInputs.model_fields)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "flow_node_type" in cls.__dict__:
            cls.type_name = TYPE_PREFIX + cls.flow_node_type
            cls.description = cls.description or f"FastGPT's {cls.flow_node_type} node."

    async def run(self, ctx: NodeContext, inputs: FastGptInputs) -> Any:
        try:
            data = await self.dispatch(ctx, inputs, run_params(ctx, inputs))
        except (TextTooLong, ConditionError, InvalidJsonBody) as exc:
            raise fail(
                ctx, inputs, str(exc), "limit" if isinstance(exc, TextTooLong) else "invalid_input"
            ) from exc
        except (TypeError, AttributeError, KeyError, RecursionError) as exc:
            # an input of a shape FastGPT's editor does not make: the node's error, with its
            # error outputs, not a crash
            raise fail(ctx, inputs, f"malformed inputs ({exc!r})", "invalid_input") from exc
        return defined(with_required_outputs(inputs, data))

    async def dispatch(
        self, ctx: NodeContext, inputs: FastGptInputs, params: dict[str, Any]
    ) -> dict[str, Any]:
        return {}


def _params_of(inputs: Mapping[str, Any]) -> Mapping[str, Any]:
    """A definition's ``params`` before its inputs are checked (validation asks a node for
    its branches first): {} when they are not an object."""
    params = inputs.get("params")
    return params if isinstance(params, Mapping) else {}


def with_required_outputs(inputs: FastGptInputs, data: dict[str, Any]) -> dict[str, Any]:
    """FastGPT fills a ``required`` output the node did not give with its typed default."""
    for output in inputs.outputs:
        key = output.get("key")
        if (
            output.get("required")
            and isinstance(key, str)
            and data.get(key, UNDEFINED) is UNDEFINED
        ):
            default = output.get("defaultValue", UNDEFINED)
            if default is not UNDEFINED:
                data[key] = value_type_format(default, output.get("valueType"))
    return data


def fail(ctx: NodeContext, inputs: FastGptInputs, message: str, error_type: str) -> NodeError:
    """A FastGPT node error: its error outputs are set, so the nodes on the catch edge (or,
    in an old graph, the ones reading ``error``) see the text."""
    return NodeError(
        f"node '{ctx.node_id}': {message}",
        retryable=False,
        error_type=error_type,
        output={"error": {"message": message}, ERROR_TEXT: message},
    )


class NoOp(FastGptNode):
    """Runs as nothing (FastGPT's ``() => Promise.resolve()``): all its edges go on."""

    pure = True


class EmptyNode(NoOp):
    flow_node_type = "emptyNode"


class GlobalVariableNode(NoOp):
    flow_node_type = "globalVariable"


class WorkflowStart(FastGptNode):
    flow_node_type = "workflowStart"
    pure = True

    async def dispatch(
        self, ctx: NodeContext, inputs: FastGptInputs, params: dict[str, Any]
    ) -> dict[str, Any]:
        given = ctx.scope.get("inputs")
        question = request_question(given) if isinstance(given, Mapping) else ""
        if not question:
            question = js_string(params.get("userChatInput") or "")
        if isinstance(given, Mapping) and (given.get("files") or _has_file_parts(given)):
            await ctx.log("warning: files sent with the question are ignored (not supported)")
        return {"userChatInput": question, "userFiles": []}


def _has_file_parts(inputs: Mapping[str, Any]) -> bool:
    """Whether the request's ``messages`` carry files (``image_url``/``file_url`` parts)."""
    messages = inputs.get("messages")
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, Mapping) else None
        for part in content if isinstance(content, list) else []:
            if isinstance(part, Mapping) and part.get("type") in ("image_url", "file_url"):
                return True
    return False


class ReadFiles(FastGptNode):
    """FastGPT's file reading: files are not taken here (they are ignored, with a warning),
    so it reads what FastGPT reads when none were sent: nothing (``system_text`` empty)."""

    flow_node_type = "readFiles"
    pure = True

    async def dispatch(
        self, ctx: NodeContext, inputs: FastGptInputs, params: dict[str, Any]
    ) -> dict[str, Any]:
        await ctx.log("warning: files are not supported: this file reading node read none")
        return {"system_text": ""}


class AnswerNode(FastGptNode):
    """Streams its text as FastGPT's ``fastAnswer`` (a ``node.stream`` chunk ``{text}``),
    with FastGPT's leading line break; objects are shown as indented JSON."""

    flow_node_type = "answerNode"

    async def dispatch(
        self, ctx: NodeContext, inputs: FastGptInputs, params: dict[str, Any]
    ) -> dict[str, Any]:
        text = params.get("text", "")
        shown = (
            text
            if isinstance(text, str)
            else json.dumps(defined(text), indent=2, ensure_ascii=False)
        )
        answer = "\n" + shown
        await ctx.stream({"text": answer})
        return {"answerText": answer}


class TextEditor(FastGptNode):
    flow_node_type = "textEditor"
    pure = True

    async def dispatch(
        self, ctx: NodeContext, inputs: FastGptInputs, params: dict[str, Any]
    ) -> dict[str, Any]:
        custom = params.get(ADD_INPUT_PARAM) or {}
        as_text = {
            key: value if isinstance(value, str) else _text_of(value)
            for key, value in (custom.items() if isinstance(custom, Mapping) else ())
        }
        text = replace_variables(
            params.get("system_textareaInput", ""), {**as_text, **variables_of(ctx)}
        )
        return {"system_text": text if isinstance(text, str) else js_string(text)}


def _text_of(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(defined(value), indent=2, ensure_ascii=False)
    if value is UNDEFINED:
        return ""
    return js_string(value)


class IfElseNode(FastGptNode):
    flow_node_type = "ifElseNode"
    chooses_branch = True
    pure = True

    async def dispatch(
        self, ctx: NodeContext, inputs: FastGptInputs, params: dict[str, Any]
    ) -> dict[str, Any]:
        graph = ScopeGraph(ctx, inputs)
        variables = variables_of(ctx)
        raw = inputs.params.get("ifElseList")
        branches = [b for b in raw if isinstance(b, dict)] if isinstance(raw, list) else []
        label = choose_branch(branches, lambda ref: resolve_reference(ref, graph, variables))
        return {"ifElseResult": label, "branch": label}

    def declared_branches(self, inputs: Mapping[str, Any]) -> set[str] | None:
        raw = _params_of(inputs).get("ifElseList")
        count = len(raw) if isinstance(raw, list) else 0
        return {if_else_label(i) for i in range(count)} | {ELSE}


class VariableUpdate(FastGptNode):
    """Sets FastGPT variables (``[VARIABLE_NODE_ID, key]`` targets): its output is what the
    variableUpdate nodes wrote so far, under our variable ``fastgpt``; the nodes downstream
    see the writes in their FastGPT variables."""

    flow_node_type = "variableUpdate"
    sets_variables = True
    pure = True

    async def dispatch(
        self, ctx: NodeContext, inputs: FastGptInputs, params: dict[str, Any]
    ) -> dict[str, Any]:
        graph = ScopeGraph(ctx, inputs)
        variables = variables_of(ctx)
        scope_vars = ctx.scope.get("vars")
        written = dict((scope_vars or {}).get(WRITES_VARIABLE) or {})
        updates = inputs.params.get("updateList")
        for item in updates if isinstance(updates, list) else []:
            target = item.get("variable") if isinstance(item, Mapping) else None
            if not (isinstance(target, list) and len(target) == 2 and isinstance(target[1], str)):
                continue
            if target[0] != VARIABLE_NODE_ID:
                raise fail(ctx, inputs, "only global variables can be updated", "unsupported")
            value = _update_value(item, graph, variables)
            written[target[1]] = variables[target[1]] = value
        return {WRITES_VARIABLE: defined(written)}

    def variables_written(self, inputs: Mapping[str, Any]) -> frozenset[str]:
        return frozenset({WRITES_VARIABLE})


def _update_value(item: Mapping[str, Any], graph: ScopeGraph, variables: dict[str, Any]) -> Any:
    """``runUpdateVar``: a literal (``value: ["", text]``) is rendered and typed; else the
    value is a reference."""
    value = item.get("value")
    if isinstance(value, list) and len(value) == 2 and not value[0]:
        literal = value[1]
        if isinstance(literal, str):
            literal = replace_editor_variables(literal, graph, variables)
        return value_type_format(literal, item.get("valueType"))
    return resolve_reference(value, graph, variables)


JS_HELPERS: Final = (
    "const delay=(ms)=>Promise.resolve();"
    "const countToken=(text)=>Math.ceil(String(text??'').length/4);"
    "const strToBase64=(str,prefix='')=>{const b=unescape(encodeURIComponent(String(str)));"
    "const t='ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';let o='';"
    "for(let i=0;i<b.length;i+=3){const n=(b.charCodeAt(i)<<16)|((b.charCodeAt(i+1)||0)<<8)"
    "|(b.charCodeAt(i+2)||0);o+=t[(n>>18)&63]+t[(n>>12)&63]+(i+1<b.length?t[(n>>6)&63]:'=')"
    "+(i+2<b.length?t[n&63]:'=');}return prefix+o;};"
)
"""The global functions FastGPT's JavaScript sandbox gives code (``projects/sandbox``
``jsFn``): ``strToBase64`` as FastGPT's; ``countToken`` estimates (a token per 4 characters,
FastGPT counts with tiktoken); ``delay`` resolves at once (no timer in our sandbox). On the
first line, before the user's code, so its line numbers stay."""


class CodeNode(FastGptNode):
    """``main`` in JavaScript (``main({data1, ...})``) or Python (``main(data1=...)``) on our
    sandbox; each key of what it returns sets the output of that key, ``system_rawResponse``
    is all of it."""

    flow_node_type = "code"

    async def dispatch(
        self, ctx: NodeContext, inputs: FastGptInputs, params: dict[str, Any]
    ) -> dict[str, Any]:
        from workflow_engine.sandbox.errors import CodeRunError, SandboxUnavailable

        language = "python" if params.get("codeType") == "py" else "javascript"
        code = params.get("code")
        if not isinstance(code, str) or not code.strip():
            raise fail(ctx, inputs, "no code", "code_error")
        arguments = defined(params.get(ADD_INPUT_PARAM) or {})
        if language == "javascript":
            code = JS_HELPERS + code
        try:
            returned = await ctx.sandboxes().run(language, code, arguments, ctx.log)
        except SandboxUnavailable as exc:
            raise NodeError(f"node '{ctx.node_id}': {exc}", error_type="sandbox") from exc
        except CodeRunError as exc:
            if inputs.catchError is None:  # an old graph: the error is an output
                return {"error": {"message": str(exc)}}
            raise fail(ctx, inputs, str(exc), exc.error_type) from exc
        data = {"system_rawResponse": returned}
        if isinstance(returned, dict):
            data.update(returned)
        return data


class PluginInput(FastGptNode):
    """A plugin's inputs: the request's ``variables`` by key, else the input's own value."""

    flow_node_type = "pluginInput"
    pure = True

    async def run(self, ctx: NodeContext, inputs: FastGptInputs) -> Any:
        given = ctx.scope.get("inputs")
        request = given.get("variables") if isinstance(given, Mapping) else None
        values = request if isinstance(request, Mapping) else {}
        data = {
            key: value_type_format(values.get(key, raw), inputs.valueTypes.get(key))
            for key, raw in inputs.params.items()
        }
        return defined(data)


class PluginOutput(FastGptNode):
    flow_node_type = "pluginOutput"
    pure = True

    async def dispatch(
        self, ctx: NodeContext, inputs: FastGptInputs, params: dict[str, Any]
    ) -> dict[str, Any]:
        return dict(params)


class ChatNode(FastGptNode):
    """FastGPT's AI chat on our ``llm`` machinery (connection ``default``, FastGPT's
    ``model``): system prompt, the last ``history`` rounds, the question; the answer streams
    as FastGPT's ``answer`` chunks unless ``isResponseAnswerText`` is off."""

    flow_node_type = "chatNode"

    async def dispatch(
        self, ctx: NodeContext, inputs: FastGptInputs, params: dict[str, Any]
    ) -> dict[str, Any]:
        from workflow_engine.nodes.openai_chat import ChatRequest, complete_streaming

        if params.get("quoteQA"):
            raise fail(
                ctx, inputs, "knowledge-base quotes (quoteQA) are not supported", "unsupported"
            )
        connection = await ctx.connection("default")
        model = params.get("model") or connection.model
        if not isinstance(model, str) or not model:
            raise fail(ctx, inputs, "no model", "config")
        messages = chat_messages(ctx, params)
        request = ChatRequest(
            model, messages, model_temperature(params.get("temperature")), model_max_tokens(params)
        )
        publish = None if params.get("isResponseAnswerText") is False else ctx.stream
        answer = await complete_streaming(ctx.http, connection, request, publish)
        if not answer.text.strip() and not answer.reasoning:
            raise fail(ctx, inputs, "the model's answer is empty", "llm_output")
        history = [*_as_chat_items(messages), _chat_item("AI", answer.text)]
        data: dict[str, Any] = {"answerText": answer.text.strip(), "history": history}
        if answer.reasoning:
            data["reasoningText"] = answer.reasoning
        return {**data, "usage": answer.usage.to_dict()}


def chat_messages(ctx: NodeContext, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    """System prompt, history (a number of rounds of the request's ``history``, or a chat
    history given by reference), then the user's question."""
    messages: list[dict[str, Any]] = []
    system = params.get("systemPrompt")
    if isinstance(system, str) and system.strip():
        messages.append({"role": "system", "content": system})
    rounds = params.get("history")
    if isinstance(rounds, list):
        messages += chat_history(rounds)
    else:
        given = ctx.scope.get("inputs")
        earlier = request_history(given) if isinstance(given, Mapping) else []
        count = _whole(rounds, 1000)
        messages += earlier[-count * 2 :] if count else []
    question = params.get("userChatInput")
    messages.append({"role": "user", "content": js_string(question) if question else ""})
    return messages


def _chat_item(obj: str, text: str) -> dict[str, Any]:
    return {"obj": obj, "value": [{"type": "text", "text": {"content": text}}]}


def _as_chat_items(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    roles = {"user": "Human", "assistant": "AI", "system": "System"}
    return [
        _chat_item(
            roles.get(m["role"], "Human"),
            m["content"] if isinstance(m["content"], str) else js_json(m["content"]),
        )
        for m in messages
    ]


def model_temperature(value: Any) -> float | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    return round(max(0.0, min(float(value), 10.0)) / 10 * MAX_TEMPERATURE, 2)


def model_max_tokens(params: Mapping[str, Any]) -> int | None:
    return _whole(params.get("maxToken"), 1_000_000) or None


def _whole(value: Any, most: int) -> int:
    """A positive count from a FastGPT number (0 when it is none, NaN or below 1), at most
    ``most``."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not value >= 1:
        return 0
    return most if value > most else int(value)


async def ask_model(
    ctx: NodeContext, inputs: FastGptInputs, params: Mapping[str, Any], system: str, user: str
) -> tuple[str, dict[str, int]]:
    """One answer of FastGPT's ``model`` (connection ``default``), not streamed, at a low
    temperature (FastGPT's classify and extract nodes ask at 0.01); the text and its usage."""
    from workflow_engine.nodes.openai_chat import ChatRequest, complete

    connection = await ctx.connection("default")
    model = params.get("model") or connection.model
    if not isinstance(model, str) or not model:
        raise fail(ctx, inputs, "no model", "config")
    history = chat_messages(ctx, {**params, "systemPrompt": system, "userChatInput": user})
    answer = await complete(ctx.http, connection, ChatRequest(model, history, 0.01))
    return answer.text, answer.usage.to_dict()


def _agents(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    raw = params.get("agents")
    return [a for a in raw if isinstance(a, dict) and a.get("key")] if isinstance(raw, list) else []


class ClassifyQuestion(FastGptNode):
    """Asks the model which class the question is; the first class whose key (then whose
    description) the answer holds wins, else the last one, as FastGPT decides; the other
    classes' edges are skipped."""

    flow_node_type = "classifyQuestion"
    chooses_branch = True

    async def dispatch(
        self, ctx: NodeContext, inputs: FastGptInputs, params: dict[str, Any]
    ) -> dict[str, Any]:
        question = params.get("userChatInput")
        if not question:
            raise fail(ctx, inputs, "Input is empty", "invalid_input")
        agents = _agents(params)
        if not agents:
            raise fail(ctx, inputs, "no question classes", "invalid_input")
        classes = "\n".join(f'- id "{a["key"]}": {js_string(a.get("value"))}' for a in agents)
        background = params.get("systemPrompt")
        system = (
            "Classify the user's question into exactly one of these classes and answer with "
            f"its id only.\n{classes}"
            + (f"\nBackground: {js_string(background)}" if background else "")
        )
        text, usage = await ask_model(ctx, inputs, params, system, js_string(question))
        chosen = next((a for a in agents if str(a["key"]) in text), None)
        chosen = chosen or next((a for a in agents if js_string(a.get("value")) in text), None)
        chosen = chosen or agents[-1]
        return {"cqResult": chosen.get("value"), "branch": str(chosen["key"]), "usage": usage}

    def declared_branches(self, inputs: Mapping[str, Any]) -> set[str] | None:
        return {str(a["key"]) for a in _agents(_params_of(inputs))}


class ContentExtract(FastGptNode):
    """Asks the model for the ``extractKeys`` fields of ``content`` as JSON; unknown and empty
    fields are dropped, a missing required one gets its default (or ``""``), ``success`` says
    whether all were found; each field is also an output of its key."""

    flow_node_type = "contentExtract"

    async def dispatch(
        self, ctx: NodeContext, inputs: FastGptInputs, params: dict[str, Any]
    ) -> dict[str, Any]:
        content = params.get("content")
        if not content:
            raise fail(ctx, inputs, "Input is empty", "invalid_input")
        raw = params.get("extractKeys")
        fields = (
            [f for f in raw if isinstance(f, dict) and f.get("key")]
            if isinstance(raw, list)
            else []
        )
        wanted = "\n".join(
            f'- "{f["key"]}" ({f.get("valueType") or "string"}): {js_string(f.get("desc") or "")}'
            for f in fields
        )
        system = (
            "Extract these fields from the text and answer with one JSON object holding the "
            f"ones you find:\n{wanted}"
            + (f"\n{js_string(params.get('description'))}" if params.get("description") else "")
        )
        text, usage = await ask_model(ctx, inputs, params, system, js_string(content))
        found = _json_object(text)
        keys = {str(f["key"]) for f in fields}
        values = {k: v for k, v in found.items() if k in keys and v != ""}
        for f in fields:
            if f.get("required") and f["key"] not in values:
                values[f["key"]] = f.get("defaultValue") or ""
        success = all(str(f["key"]) in found and found[str(f["key"])] != "" for f in fields)
        return {"success": success, "fields": js_json(values), **values, "usage": usage}


def _json_object(text: str) -> dict[str, Any]:
    """The first ``{...}`` of a model's answer, read as JSON5; {} when there is none."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return {}
    try:
        found = parse_json5(text[start : end + 1])
    except (ValueError, RecursionError):
        return {}
    return found if isinstance(found, dict) else {}


SETTER_TYPES: Final = frozenset({TYPE_PREFIX + "variableUpdate", TYPE_PREFIX + "loop"})
"""The FastGPT nodes whose output ``fastgpt`` is the variables after their writes."""
MAX_LOOP_ITEMS: Final = 50
"""FastGPT's ``WORKFLOW_MAX_LOOP_TIMES`` default: a longer array fails the loop."""


class LoopInputs(FastGptInputs):
    body: dict[str, Any] = Field(description="The loop's children, as a sub-graph.")


class LoopNode(FastGptNode):
    """FastGPT's loop: its children (``parentNodeId``) run once per item of
    ``loopInputArray``, in order, from ``loopStart`` (which outputs the item and its 1-based
    index) to ``loopEnd`` (whose ``loopEndInput`` is collected); the output ``loopArray``
    holds each item's. On our loop machinery: each iteration recorded and resumable. What a
    ``variableUpdate`` in an iteration writes is seen by the iterations after it and, as the
    loop's own write, by the nodes after the loop (FastGPT's ``newVariables``)."""

    flow_node_type = "loop"
    Inputs = LoopInputs
    subgraph_field = "body"
    sets_variables = True
    body_carries_variables = True

    async def dispatch(
        self, ctx: NodeContext, inputs: FastGptInputs, params: dict[str, Any]
    ) -> dict[str, Any]:
        items = params.get("loopInputArray")
        if not isinstance(items, list):
            raise fail(ctx, inputs, "Input value is not an array", "invalid_input")
        if len(items) > MAX_LOOP_ITEMS:
            raise fail(
                ctx,
                inputs,
                f"Input array length cannot be greater than {MAX_LOOP_ITEMS}",
                "limit",
            )
        carries = bool(self.variables_written(inputs.model_dump()))
        scope_vars = ctx.scope.get("vars")
        written = dict((scope_vars or {}).get(WRITES_VARIABLE) or {})
        collected: list[Any] = []
        for index, item in enumerate(items):
            given = {WRITES_VARIABLE: written} if carries else None
            results = await ctx.run_body_once(index, defined(item), restore=True, variables=given)
            ended = None
            writes: list[tuple[float, Mapping[str, Any]]] = []
            for result in results:
                output = result.output if isinstance(result.output, Mapping) else {}
                if result.status is not NodeStatus.COMPLETED:
                    continue
                if result.node_type in SETTER_TYPES and isinstance(
                    output.get(WRITES_VARIABLE), Mapping
                ):
                    writes.append((result.completed_at or 0.0, output[WRITES_VARIABLE]))
                elif result.node_type == TYPE_PREFIX + "loopEnd":
                    ended = output.get("loopOutputValue")
            if writes:  # the last to end (restored results come in no particular order)
                written = dict(max(writes, key=lambda w: w[0])[1])
            collected.append(ended)
        data: dict[str, Any] = {"loopArray": collected}
        if carries:
            data[WRITES_VARIABLE] = written
        return data

    def variables_written(self, inputs: Mapping[str, Any]) -> frozenset[str]:
        """FastGPT's variables (``fastgpt``) when a ``variableUpdate`` is among its children
        (or among a nested loop's)."""
        pending = [inputs.get("body")]
        while pending:
            body = pending.pop()
            nodes = body.get("nodes") if isinstance(body, Mapping) else None
            for node in nodes if isinstance(nodes, list) else ():
                kind = node.get("type") if isinstance(node, Mapping) else None
                if kind == TYPE_PREFIX + "variableUpdate":
                    return frozenset({WRITES_VARIABLE})
                if kind == TYPE_PREFIX + "loop" and isinstance(node.get("inputs"), Mapping):
                    pending.append(node["inputs"].get("body"))
        return frozenset()


class LoopStart(FastGptNode):
    flow_node_type = "loopStart"
    pure = True

    async def dispatch(
        self, ctx: NodeContext, inputs: FastGptInputs, params: dict[str, Any]
    ) -> dict[str, Any]:
        index = ctx.scope.get("index")
        return {
            "loopStartInput": ctx.scope.get("item"),
            "loopStartIndex": index + 1 if isinstance(index, int) else None,
        }


class LoopEnd(FastGptNode):
    flow_node_type = "loopEnd"
    pure = True

    async def dispatch(
        self, ctx: NodeContext, inputs: FastGptInputs, params: dict[str, Any]
    ) -> dict[str, Any]:
        return {"loopOutputValue": params.get("loopEndInput")}


class Interactive(FastGptNode):
    """A node that asks the user (``userSelect``, ``formInput``): the execution parks with
    FastGPT's interactive payload in its waiting event (``interactive`` in FastGPT's
    dialect); ``POST /api/workflow/resume/{id}`` with the answer (an option's value, or the
    form's values) resumes it."""

    interactive_type: ClassVar[str]

    async def dispatch(
        self, ctx: NodeContext, inputs: FastGptInputs, params: dict[str, Any]
    ) -> dict[str, Any]:
        ticket = ctx.ticket or {}
        if "answer" in ticket:
            return self.answered(ticket["answer"], params)
        interactive = {
            "type": self.interactive_type,
            "params": self.interactive_params(params),
            "entryNodeIds": [ctx.node_id.rpartition(".")[2]],
        }
        ctx.park(
            {
                "waitingFor": WAITING_FOR_INPUT,
                "prompt": js_string(params.get("description") or ""),
                "schema": self.answer_schema(params),
                "interactive": defined(interactive),
            }
        )

    def interactive_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    def answer_schema(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    def answered(self, answer: Any, params: Mapping[str, Any]) -> dict[str, Any]:
        return {}


def _options(params: Mapping[str, Any]) -> list[dict[str, Any]]:
    raw = params.get("userSelectOptions")
    return [o for o in raw if isinstance(o, dict)] if isinstance(raw, list) else []


class UserSelect(Interactive):
    """Answered with one option's ``value``; the edges of the other options are skipped."""

    flow_node_type = "userSelect"
    interactive_type = "userSelect"
    chooses_branch = True

    def interactive_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"description": params.get("description"), "userSelectOptions": _options(params)}

    def answer_schema(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {"type": "string", "enum": [o.get("value") for o in _options(params)]}

    def answered(self, answer: Any, params: Mapping[str, Any]) -> dict[str, Any]:
        chosen = next((o for o in _options(params) if o.get("value") == answer), {})
        return {"selectResult": answer, "branch": chosen.get("key")}

    def declared_branches(self, inputs: Mapping[str, Any]) -> set[str] | None:
        raw = _params_of(inputs).get("userSelectOptions")
        options = raw if isinstance(raw, list) else []
        return {str(o.get("key")) for o in options if isinstance(o, dict) and o.get("key")}


class FormInput(Interactive):
    """Answered with the form's values (an object, or its JSON text as FastGPT's chat sends
    it); each field is also an output of its own key."""

    flow_node_type = "formInput"
    interactive_type = "userInput"

    def interactive_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        forms = params.get("userInputForms")
        return {
            "description": params.get("description"),
            "inputForm": forms if isinstance(forms, list) else [],
        }

    def answer_schema(self, params: Mapping[str, Any]) -> dict[str, Any]:
        forms = params.get("userInputForms")
        fields = [f for f in forms if isinstance(f, dict)] if isinstance(forms, list) else []
        required = [f["key"] for f in fields if f.get("required") and isinstance(f.get("key"), str)]
        return {"type": ["object", "string"], "required": required} if required else {}

    def answered(self, answer: Any, params: Mapping[str, Any]) -> dict[str, Any]:
        values = answer
        if isinstance(answer, str):
            try:
                values = parse_json5(answer)
            except ValueError:
                values = {}
        values = values if isinstance(values, dict) else {}
        return {"formInputResult": values, **values}


HTTP_SYSTEM_OUTPUTS: Final = frozenset(
    {"httpRawResponse", "system_addOutputParam", "error", ERROR_TEXT}
)
BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
DEFAULT_HTTP_TIMEOUT_S: Final = 60.0


class HttpRequest(FastGptNode):
    """FastGPT's HTTP request: URL, headers, query and body templated with the node's own
    inputs and the variables; a JSON body replaced quote-aware and read as JSON5; each custom
    output a JSONPath into the response (``httpRawResponse``: all of it). Our egress policy
    and response size limit apply as to the ``http`` node."""

    flow_node_type = "httpRequest468"

    async def dispatch(
        self, ctx: NodeContext, inputs: FastGptInputs, params: dict[str, Any]
    ) -> dict[str, Any]:
        url = params.get("system_httpReqUrl")
        if not isinstance(url, str) or not url.strip():
            raise fail(ctx, inputs, "Http url is empty", "invalid_input")
        graph = ScopeGraph(ctx, inputs)
        variables = variables_of(ctx)
        dynamic = params.get(ADD_INPUT_PARAM)
        concat = {
            **variables,
            **(dynamic if isinstance(dynamic, Mapping) else {}),
            "histories": (variables.get("histories") or [])[-10:],
        }
        all_variables = {ADD_INPUT_PARAM: concat, **concat}

        def text(value: Any) -> str:
            replaced = replace_editor_variables(value, graph, all_variables)
            return replaced if isinstance(replaced, str) else js_string(defined(replaced))

        method = str(params.get("system_httpMethod") or "POST").upper()
        request = {
            "method": method,
            "url": text(url).strip(),
            "headers": _pairs(params.get("system_httpHeader"), text),
            "params": _pairs(params.get("system_httpParams"), text),
        }
        content_type = params.get("system_httpContentType") or "json"
        if method in BODY_METHODS:
            request.update(_body(content_type, params, text, graph, all_variables))
        try:
            response = await _send(ctx, request, _timeout(params.get("system_httpTimeout")))
        except NodeError as exc:
            message = str(exc)
            if inputs.catchError is None:  # an old graph: the error is an output
                return {"error": {"message": message}, "httpRawResponse": message}
            raise NodeError(
                f"node '{ctx.node_id}': {message}",
                retryable=False,
                error_type=exc.error_type,
                output={
                    "error": {"message": message},
                    ERROR_TEXT: message,
                    "httpRawResponse": message,
                },
            ) from exc
        keys = [
            o["key"]
            for o in inputs.outputs
            if isinstance(o.get("key"), str) and o["key"] not in HTTP_SYSTEM_OUTPUTS
        ]
        types = {
            o["key"]: o.get("valueType") for o in inputs.outputs if isinstance(o.get("key"), str)
        }
        picked = pick_outputs(response, keys)
        results = {k: value_type_format(v, types.get(k)) for k, v in picked.items()}
        return {"httpRawResponse": response, **results}


def _pairs(items: Any, text: Any) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping) and item.get("key"):
            pairs[text(item["key"])] = text(
                item.get("value") if item.get("value") is not None else ""
            )
    return pairs


def _body(
    content_type: Any,
    params: Mapping[str, Any],
    text: Any,
    graph: ScopeGraph,
    variables: Mapping[str, Any],
) -> dict[str, Any]:
    """httpx's arguments for the body of FastGPT's content type."""
    if content_type == "json":
        raw = params.get("system_httpJsonBody")
        return {
            "json": defined(
                replace_json_body(raw if isinstance(raw, str) else "", graph, variables)
            )
        }
    if content_type in ("form-data", "x-www-form-urlencoded"):
        return {"data": _pairs(params.get("system_httpFormBody"), text)}
    if content_type in ("raw-text", "xml"):
        raw = params.get("system_httpJsonBody")
        media = "application/xml" if content_type == "xml" else "text/plain"
        return {"content": text(raw or ""), "content_type": media}
    return {}


def _timeout(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return min(float(value), 600.0)
    return DEFAULT_HTTP_TIMEOUT_S


async def _send(ctx: NodeContext, request: dict[str, Any], deadline_s: float) -> Any:
    """The response body (JSON parsed, else text); ``NodeError`` for a failed request or an
    error status, saying which."""
    import asyncio

    import httpx

    from workflow_engine.nodes.http import decode_body, excerpt, read_capped

    headers = dict(request["headers"])
    media = request.pop("content_type", None)
    if media is not None and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = media
    built = ctx.http.build_request(
        request["method"],
        request["url"],
        headers=headers,
        params=request["params"] or None,
        json=request.get("json"),
        data=request.get("data"),
        content=request.get("content"),
    )
    try:
        async with asyncio.timeout(deadline_s):
            response = await ctx.http.send(built, stream=True)
            try:
                content = await read_capped(response)
            finally:
                await response.aclose()
    except TimeoutError:
        raise NodeError(
            f"{request['method']} {request['url']} timed out after {deadline_s} s",
            error_type="timeout",
        ) from None
    except httpx.HTTPError as exc:
        raise NodeError(
            f"{request['method']} {request['url']} failed: {exc!r}", error_type="http_error"
        ) from None
    if response.status_code >= 400:
        raise NodeError(
            f"{request['method']} {request['url']} answered HTTP {response.status_code}: "
            + excerpt(content),
            error_type="http_status",
        )
    body = decode_body(response, content)
    if isinstance(body, str):
        try:
            return parse_json5(body) if body.strip()[:1] in ("{", "[") else body
        except ValueError:
            return body
    return body


FASTGPT_TYPES: tuple[type[FastGptNode], ...] = (
    WorkflowStart,
    ReadFiles,
    EmptyNode,
    GlobalVariableNode,
    AnswerNode,
    TextEditor,
    IfElseNode,
    VariableUpdate,
    CodeNode,
    PluginInput,
    PluginOutput,
    ChatNode,
    HttpRequest,
    LoopNode,
    LoopStart,
    LoopEnd,
    UserSelect,
    FormInput,
    ClassifyQuestion,
    ContentExtract,
)
