"""FastGPT's tool-call node (``tools``) against the OpenAI-compatible stand-in, by the rules of
FastGPT's ``dispatch/ai/agent/toolCall.ts`` (v4.10-4.12; ``agent/runTool/toolChoice.ts``
before): the nodes on its ``selectedTools`` edges are the model's functions (named by node
id, their parameters the inputs with a ``toolDescription``), a call runs the tool and what
follows it with the call's arguments as its inputs, the last node response of that run goes
back to the model as the tool message, and a ``stopTool`` ends the calls."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.fastgpt.graphs import (
    START,
    answer,
    edge,
    given,
    node,
    out,
    start,
    tool_edge,
    tool_param,
    tools,
    workflow,
)
from tests.nodes.test_llm import connections
from tests.support.http_server import LocalHttpServer
from tests.support.model_server import Answer, ModelServer, model_server
from workflow_engine.connections import ServerConnections
from workflow_engine.engine.executor import Executor
from workflow_engine.engine.hooks import ExecutionHooks, NodeFinished, NodeStreamed
from workflow_engine.engine.results import ExecutionOutcome
from workflow_engine.errors import DefinitionError
from workflow_engine.fastgpt.translate import translate
from workflow_engine.nodes.registry import NodeRegistry
from workflow_engine.vocabulary import ExecutionStatus, NodeStatus

MODEL = "gpt-4o-mini"


@pytest.fixture
async def models() -> AsyncIterator[ModelServer]:
    async with model_server() as server:
        yield server


@pytest.fixture
async def executor(models: ModelServer) -> AsyncIterator[Executor]:
    resolver = ServerConnections(connections(models))
    async with Executor(NodeRegistry.default(), connections=resolver) as ex:
        yield ex


class Seen(ExecutionHooks):
    def __init__(self) -> None:
        self.chunks: list[tuple[str, Any]] = []
        self.finished: dict[str, Any] = {}

    async def on_node_stream(self, event: NodeStreamed) -> None:
        self.chunks.append((event.node_id, event.chunk))

    async def on_node_complete(self, event: NodeFinished) -> None:
        self.finished[event.result.node_id] = event.result


async def run(
    executor: Executor, document: dict[str, Any], **inputs: Any
) -> tuple[ExecutionOutcome, Seen]:
    seen = Seen()
    plan = executor.compile(translate(document).definition)
    return await executor.run(plan, inputs, hooks=seen), seen


def weather_app() -> dict[str, Any]:
    """Start -> a tools node (``agent``) -> a reply quoting its answer. Its tools: ``lookup``
    (a toolParams node whose ``city`` and ``days`` the model sets) followed by a Python code
    node (its return value is the tool's response), and ``finish`` followed by a stopTool."""
    lookup = node(
        "lookup",
        "toolParams",
        [
            tool_param("city", "The city", required=True),
            tool_param("days", "How many days", "number"),
        ],
        [out("city"), out("days", "number")],
        name="Weather lookup",
        intro="Looks up the weather",
    )
    forecast = node(
        "forecast",
        "code",
        [
            {"key": "system_addInputParam", "renderTypeList": ["addInputParam"], "value": None},
            {**given("city", ["lookup", "city"], "string", "reference"), "canEdit": True},
            given("codeType", "py", "string", "hidden"),
            given("code", "def main(city):\n    return {'weather': f'sunny in {city}'}", "string"),
        ],
        [out("system_rawResponse", "object")],
    )
    finish = node("finish", "toolParams", [], [], name="Finish", intro="Ends the conversation")
    return workflow(
        start(),
        tools("agent", MODEL, "Use the tools."),
        lookup,
        forecast,
        finish,
        node("halt", "stopTool"),
        answer("reply", "{{$agent.answerText$}}"),
        edges=[
            edge(START, "agent"),
            tool_edge("agent", "lookup"),
            tool_edge("agent", "finish"),
            edge("lookup", "forecast"),
            edge("finish", "halt"),
            edge("agent", "reply"),
        ],
    )


async def test_a_tool_call_runs_the_tool_and_what_follows_and_the_model_answers_with_it(
    executor: Executor, models: ModelServer
) -> None:
    models.script(
        Answer.calls(("lookup", {"city": "Paris"}), text="Checking. "),
        Answer.text("Sunny in Paris.", pieces=2),
    )
    outcome, seen = await run(executor, weather_app(), userChatInput="Weather in Paris?")
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    first, second = models.exchanges
    # the model sees each tool as a function named by its node id
    assert first.body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Looks up the weather",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string", "description": "The city"},
                        "days": {"type": "number", "description": "How many days"},
                    },
                    "required": ["city"],
                },
            },
        },
        {
            "type": "function",
            "function": {
                "name": "finish",
                "description": "Ends the conversation",
                "parameters": {"type": "object", "properties": {}, "required": []},
            },
        },
    ]
    asked = [
        {"role": "system", "content": "Use the tools."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    assert first.body["messages"] == asked
    assert (first.body["temperature"], first.body["max_tokens"]) == (0, 2000)
    # the tool ran with the call's arguments; the code after it gave the tool's response
    assert seen.finished["agent[0].lookup"].output == {"city": "Paris", "days": None}
    assert seen.finished["agent[0].forecast"].output["weather"] == "sunny in Paris"
    assert seen.finished["agent[0].finish"].status is NodeStatus.SKIPPED  # (the other tool)
    [call] = second.body["messages"][2]["tool_calls"]
    assert second.body["messages"][2:] == [
        {"role": "assistant", "content": "Checking. ", "tool_calls": [call]},
        {
            "role": "tool",
            "tool_call_id": call["id"],
            "content": '{\n  "weather": "sunny in Paris"\n}',
        },
    ]
    assert call["function"] == {"name": "lookup", "arguments": '{"city": "Paris"}'}
    assert outcome.nodes["agent"].output["answerText"] == "Checking. Sunny in Paris."
    assert outcome.nodes["reply"].output == {"answerText": "\nChecking. Sunny in Paris."}
    # FastGPT's tool events, between the model's text, as the node's stream
    events = [c for n, c in seen.chunks if n == "agent"]
    assert events[:4] == [
        {"text": "Checking. "},
        {
            "toolCall": {
                "id": call["id"],
                "toolName": "Weather lookup",
                "toolAvatar": "",
                "functionName": "lookup",
                "params": "",
                "response": "",
            }
        },
        {
            "toolParams": {
                "id": call["id"],
                "toolName": "",
                "toolAvatar": "",
                "params": '{"city": "Paris"}',
                "response": "",
            }
        },
        {
            "toolResponse": {
                "id": call["id"],
                "toolName": "",
                "toolAvatar": "",
                "params": "",
                "response": '{\n  "weather": "sunny in Paris"\n}',
            }
        },
    ]
    assert "".join(c["text"] for c in events[4:]) == "Sunny in Paris."
    assert outcome.usage is not None  # both model calls count
    assert outcome.usage["completionTokens"] == sum(
        len(a.reply.pieces) for a in models.exchanges if isinstance(a.reply, Answer)
    )


async def test_a_stop_tool_ends_the_calls_without_another_model_answer(
    executor: Executor, models: ModelServer
) -> None:
    models.script(Answer.calls(("finish", {}), text="Bye."))
    outcome, seen = await run(executor, weather_app(), userChatInput="That is all")
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert len(models.exchanges) == 1
    assert seen.finished["agent[0].halt"].status is NodeStatus.COMPLETED
    assert outcome.nodes["agent"].output["answerText"] == "Bye."
    assert outcome.nodes["reply"].output == {"answerText": "\nBye."}


async def test_a_call_to_no_tool_or_with_unreadable_arguments_is_answered_not_fatal(
    executor: Executor, models: ModelServer
) -> None:
    models.script(
        Answer.calls(("nope", {"x": 1}), ("lookup", "not an object")),
        Answer.text("Sorry."),
    )
    outcome, seen = await run(executor, weather_app(), userChatInput="?")
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    replies = [m for m in models.exchanges[1].body["messages"] if m["role"] == "tool"]
    assert replies[0]["content"] == "there is no tool named 'nope'"
    # unreadable arguments are none: the tool's inputs keep their own values
    assert json.loads(replies[1]["content"]) == {"weather": "sunny in None"}
    assert seen.finished["agent[0].lookup"].output == {"city": None, "days": None}
    named = [c["toolCall"]["functionName"] for n, c in seen.chunks if "toolCall" in c]
    assert named == ["lookup"]  # (FastGPT announces no call to a tool it does not have)
    assert outcome.nodes["agent"].output["answerText"] == "Sorry."


async def test_a_tool_runs_again_for_each_call_each_run_recorded_apart(
    executor: Executor, models: ModelServer
) -> None:
    models.script(
        Answer.calls(("lookup", {"city": "Oslo"}), ("lookup", {"city": "Rome"})),
        Answer.calls(("lookup", {"city": "Lima"})),
        Answer.text("Done."),
    )
    outcome, seen = await run(executor, weather_app(), userChatInput="three cities")
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert [seen.finished[f"agent[{i}].forecast"].output["weather"] for i in range(3)] == [
        "sunny in Oslo",
        "sunny in Rome",
        "sunny in Lima",
    ]
    last = models.exchanges[2].body["messages"]
    assert [m["role"] for m in last] == [
        "system",
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
        "tool",
    ]


def test_the_translation_puts_the_tools_and_what_follows_them_in_the_nodes_body() -> None:
    definition = translate(weather_app()).definition
    assert [n["id"] for n in definition["nodes"]] == ["n_448745", "agent", "reply"]
    assert [(e["source"], e["target"]) for e in definition["edges"]] == [
        ("n_448745", "agent"),
        ("agent", "reply"),
    ]
    [agent] = [n for n in definition["nodes"] if n["id"] == "agent"]
    body = agent["inputs"]["body"]
    assert [n["id"] for n in body["nodes"]] == [
        "toolChoice_0",
        "lookup",
        "forecast",
        "finish",
        "halt",
    ]
    assert {(e["source"], e["target"], e.get("branch")) for e in body["edges"]} == {
        ("toolChoice_0", "lookup", "lookup"),
        ("toolChoice_0", "finish", "finish"),
        ("lookup", "forecast", None),
        ("finish", "halt", None),
    }
    assert [t["nodeId"] for t in agent["inputs"]["tools"]] == ["lookup", "finish"]


def test_what_a_tools_run_cannot_do_is_refused_before_anything_runs() -> None:
    document = weather_app()
    ask = node("ask", "userSelect", [given("userSelectOptions", [], "any", "hidden")])
    document["nodes"].append(ask)
    document["edges"].append(edge("forecast", "ask"))
    document["edges"].append(edge("halt", "agent"))  # (a tool leading back to its tools node)
    with pytest.raises(DefinitionError) as refused:
        translate(document)
    problems = refused.value.problems
    assert {(p.path, p.code) for p in problems} == {
        ("nodes[1]", "invalid_edge"),
        ("nodes[7].flowNodeType", "unsupported_node"),
    }
    assert any("'agent' (Tool call) runs in one of its tool calls" in p.message for p in problems)


def test_a_node_shared_by_two_tools_nodes_or_by_a_tool_and_the_workflow_is_refused() -> None:
    """A node runs in one place: the translation copies no node into two tool runs (a graph
    sharing them could grow the translation exponentially) and nests no deeper than 8."""
    document = weather_app()
    document["nodes"].append(tools("agent2", MODEL))
    document["edges"] += [edge(START, "agent2"), tool_edge("agent2", "lookup")]
    with pytest.raises(DefinitionError) as refused:
        translate(document)
    messages = [p.message for p in refused.value.problems]
    assert "node 'lookup' (Weather lookup) runs in one of its tool calls" in messages[0]
    assert "'forecast' (code)" in messages[1]  # (what follows the tool, too)
    chain = workflow(
        start(),
        *[tools(f"t{i}", MODEL) for i in range(12)],
        edges=[edge(START, "t0"), *[tool_edge(f"t{i}", f"t{i + 1}") for i in range(11)]],
    )
    with pytest.raises(DefinitionError) as deep:
        translate(chain)
    assert [p.code for p in deep.value.problems] == ["limit"]


async def test_a_search_tool_shaped_as_fastgpts_google_template_runs_http_then_code(
    executor: Executor, models: ModelServer
) -> None:
    """FastGPT's "Google search" template's shape: the tool is an HTTP request whose dynamic
    input ``query`` the model sets (``{{query}}`` in its query string), followed by JavaScript
    code reading the raw response; the code's return value is what the model reads."""
    server = await LocalHttpServer().start()
    try:
        search = node(
            "GMELVPxHfpg5",
            "httpRequest468",
            [
                {"key": "system_addInputParam", "renderTypeList": ["addInputParam"]},
                tool_param("query", "Search terms", required=True),
                given("system_httpMethod", "GET", "string", "custom"),
                given("system_httpReqUrl", f"{server.base_url}/echo/search", "string", "hidden"),
                given("system_httpHeader", [], "any", "custom"),
                given(
                    "system_httpParams",
                    [{"key": "q", "type": "string", "value": "{{query}}"}],
                    "any",
                    "hidden",
                ),
                given("system_httpJsonBody", "", "any", "hidden"),
            ],
            [out("httpRawResponse", "any"), {**out("prompt"), "type": "dynamic"}],
            intro="Searches the web",
        )
        code = node(
            "poIbrrA8aiR0",
            "code",
            [
                {"key": "system_addInputParam", "renderTypeList": ["addInputParam"]},
                {**given("data", ["GMELVPxHfpg5", "httpRawResponse"], "object"), "canEdit": True},
                given("codeType", "js", "string", "hidden"),
                given("code", "function main({data}){ return {prompt: 'found ' + data.query.q} }"),
            ],
            [out("system_rawResponse", "object"), {**out("prompt"), "type": "dynamic"}],
        )
        document = workflow(
            start(),
            tools("NOgbnBzUwDgT", MODEL),
            search,
            code,
            edges=[
                edge(START, "NOgbnBzUwDgT"),
                tool_edge("NOgbnBzUwDgT", "GMELVPxHfpg5"),
                edge("GMELVPxHfpg5", "poIbrrA8aiR0"),
            ],
        )
        models.script(Answer.calls(("GMELVPxHfpg5", {"query": "cats"})), Answer.text("Cats."))
        outcome, _ = await run(executor, document, userChatInput="find cats")
        assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
        [request] = server.requests
        assert (request.method, request.query) == ("GET", {"q": ["cats"]})
        tool_message = models.exchanges[1].body["messages"][-1]
        assert tool_message["content"] == '{\n  "prompt": "found cats"\n}'
        assert outcome.nodes["NOgbnBzUwDgT"].output["answerText"] == "Cats."
    finally:
        await server.stop()


async def test_with_answer_text_off_the_model_is_asked_whole_and_nothing_streams(
    executor: Executor, models: ModelServer
) -> None:
    document = weather_app()
    agent = next(n for n in document["nodes"] if n["nodeId"] == "agent")
    agent["inputs"].append(given("isResponseAnswerText", False, "boolean", "hidden"))
    models.script(Answer.calls(("lookup", {"city": "Rome"}), text="Hm. "), Answer.text("Warm."))
    outcome, seen = await run(executor, document, userChatInput="Rome?")
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert [bool(e.streamed) for e in models.exchanges] == [False, False]
    assert seen.finished["agent[0].forecast"].output["weather"] == "sunny in Rome"
    assert outcome.nodes["agent"].output["answerText"] == "Hm. Warm."
    assert not [c for n, c in seen.chunks if n == "agent" and "text" in c]
