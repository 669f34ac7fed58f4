"""A FastGPT export through the real service (issue 17): posted unchanged to ``execute``, run by
a ``wfe worker`` process with the OpenAI-compatible stand-in as the model server, streamed
back in FastGPT's SSE dialect over a real socket, replayable with ``Last-Event-ID``."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.api.test_ai_service import MODEL, Service, service
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
from tests.support.model_server import Answer

__all__ = ["service"]  # the fixture


def chat_app() -> dict[str, Any]:
    """Start -> AI chat (streams its answer) -> a reply node quoting it."""
    chat = node(
        "chat1",
        "chatNode",
        [
            given("model", MODEL, "string", "settingLLMModel"),
            given("temperature", 0, "number", "hidden"),
            given("systemPrompt", "Answer in {{lang}}.", "string", "textarea"),
            given("history", 1, "chatHistory", "numberInput"),
            given("quoteQA", None, "datasetQuote", "settingDatasetQuotePrompt"),
            given("userChatInput", [START, "userChatInput"], "string", "reference"),
        ],
        [out("answerText"), out("history", "chatHistory")],
        name="AI chat",
    )
    return {
        "name": "demo app",
        "workflow": workflow(
            start(),
            chat,
            {**answer("done", "({{$chat1.answerText$}})"), "showStatus": False},
            edges=[edge(START, "chat1"), edge("chat1", "done")],
            variables=[
                {
                    "key": "lang",
                    "label": "Language",
                    "valueType": "string",
                    "defaultValue": "English",
                }
            ],
        ),
    }


async def frames(http: httpx.AsyncClient, url: str, **headers: str) -> list[dict[str, Any]]:
    """The SSE frames of ``url``: ``{event, data, id}`` (``event`` None when absent)."""
    found: list[dict[str, Any]] = []
    current: dict[str, Any] = {"event": None, "data": [], "id": None}
    async with http.stream("GET", url, headers=headers, timeout=30) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if not line:
                if current["data"]:
                    found.append({**current, "data": "\n".join(current["data"])})
                current = {"event": None, "data": [], "id": None}
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                current["data"].append(value)
            elif name in ("event", "id"):
                current[name] = value
    return found


async def test_a_fastgpt_export_runs_unchanged_and_streams_fastgpts_dialect(
    service: Service,
) -> None:
    service.models.script(Answer(["Bon", "jour", "!"]))
    history = [{"obj": "Human", "value": "hi"}, {"obj": "AI", "value": "hello"}] * 2
    submitted = await service.http.post(
        "/api/workflow/execute",
        json={
            "workflowDefinition": chat_app(),
            "inputs": {
                "userChatInput": "Say hello",
                "variables": {"Language": "French"},
                "history": history,
            },
        },
    )
    assert submitted.status_code == 202, submitted.text
    execution_id = submitted.json()["executionId"]
    final = await service.final(execution_id)
    assert final["context"]["status"] == "completed", final
    [exchange] = service.models.exchanges
    assert exchange.body["model"] == MODEL
    assert exchange.body["messages"] == [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "hi"},  # history 1: the last round (2 messages)
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "Say hello"},
    ]
    url = f"/api/workflow/events/{execution_id}?format=fastgpt"
    sent = await frames(service.http, url)
    names = [f["event"] for f in sent]
    assert names == [
        "flowNodeStatus",
        "flowNodeResponse",
        "flowNodeStatus",
        *["answer"] * (len(names) - 10),
        "flowNodeResponse",
        "fastAnswer",  # (no flowNodeStatus: the reply node's showStatus is off)
        "flowNodeResponse",
        "workflowDuration",
        "answer",
        "answer",
        "flowResponses",
    ], names
    streamed = "".join(
        json.loads(f["data"])["choices"][0]["delta"]["content"] for f in sent[3 : len(names) - 7]
    )
    assert streamed == "Bonjour!"
    assert json.loads(sent[2]["data"]) == {"status": "running", "name": "AI chat"}
    fast = json.loads(sent[-6]["data"])
    assert fast["choices"][0]["delta"] == {"role": "assistant", "content": "\n(Bonjour!)"}
    stop = json.loads(sent[-3]["data"])
    assert stop["choices"][0] == {
        "delta": {"role": "assistant", "content": None},
        "index": 0,
        "finish_reason": "stop",
    }
    assert sent[-2]["data"] == "[DONE]"
    responses = json.loads(sent[-1]["data"])
    assert [(r["nodeId"], r["moduleType"]) for r in responses] == [
        (START, "workflowStart"),
        ("chat1", "chatNode"),
        ("done", "answerNode"),
    ]
    # a client that lost the stream resumes after the last frame it saw, and gets the rest
    resumed = await frames(service.http, url, **{"Last-Event-ID": sent[-7]["id"]})
    assert [f["event"] for f in resumed] == names[-6:]
    assert [f["data"] for f in resumed[:-1]] == [f["data"] for f in sent[-6:-1]]

    # flowResponses still lists every node, the ones that ended before the reconnect too
    # (those read from the stored results: their running time may differ by the rounding)
    def listed(frame: dict[str, Any]) -> list[tuple[str, str, str]]:
        responses = json.loads(frame["data"])
        return [(r["nodeId"], r["moduleName"], r["moduleType"]) for r in responses]

    assert listed(resumed[-1]) == listed(sent[-1])
    # detail=false: FastGPT's plain stream, answer chunks and [DONE] without event lines
    plain = await frames(service.http, url + "&detail=false")
    assert {f["event"] for f in plain} == {None}
    assert plain[-1]["data"] == "[DONE]"
    assert (
        "".join(
            json.loads(f["data"])["choices"][0]["delta"].get("content") or "" for f in plain[:-1]
        )
        == "Bonjour!\n(Bonjour!)"
    )


async def test_a_graph_with_nodes_we_cannot_run_is_refused_naming_each(service: Service) -> None:
    app = chat_app()
    app["workflow"]["nodes"].append(node("kb", "datasetSearchNode", name="Knowledge base"))
    app["workflow"]["nodes"].append(node("plug", "pluginModule", name="Some plugin"))
    refused = await service.http.post("/api/workflow/execute", json={"workflowDefinition": app})
    assert refused.status_code == 422
    details = refused.json()["error"]["details"]
    assert [(d["path"], d["code"]) for d in details] == [
        ("workflowDefinition.workflow.nodes[3].flowNodeType", "unsupported_node"),
        ("workflowDefinition.workflow.nodes[4].flowNodeType", "unsupported_node"),
    ]
    assert "'kb' (Knowledge base)" in details[0]["message"]
    assert "knowledge base" in details[0]["message"]


def choosing_app() -> dict[str, Any]:
    """Start -> ask the user to pick (userSelect) -> one answer per option."""
    options = [{"key": "opt-yes", "value": "Yes please"}, {"key": "opt-no", "value": "No thanks"}]
    select = node(
        "pick",
        "userSelect",
        [
            given("description", "Shall I go on?", "string", "textarea"),
            given("userSelectOptions", options, "any", "custom"),
        ],
        [out("selectResult")],
        name="Ask",
    )
    return workflow(
        start(),
        select,
        answer("yes", "going on ({{$pick.selectResult$}})"),
        answer("no", "stopping"),
        edges=[edge(START, "pick"), edge("pick", "yes", "opt-yes"), edge("pick", "no", "opt-no")],
    )


async def test_a_user_select_pauses_the_run_and_the_chosen_option_resumes_it(
    service: Service,
) -> None:
    submitted = await service.http.post(
        "/api/workflow/execute", json={"workflowDefinition": choosing_app(), "format": "fastgpt"}
    )
    assert submitted.status_code == 202, submitted.text
    execution_id = submitted.json()["executionId"]

    async def waiting() -> dict[str, Any] | None:
        body = await service.status(execution_id)
        return body if body["context"]["status"] == "waiting" else None

    from tests.support.processes import wait_until

    await wait_until(waiting, 30, "the run to wait for the user")
    url = f"/api/workflow/events/{execution_id}?format=fastgpt"
    # FastGPT's response ends with the question: interactive, the stop chunk, [DONE]
    so_far = await frames(service.http, url)
    assert [f["event"] for f in so_far[-3:]] == ["interactive", "answer", "answer"]
    assert so_far[-1]["data"] == "[DONE]"
    interactive = json.loads(so_far[-3]["data"])["interactive"]
    assert interactive["type"] == "userSelect"
    assert interactive["params"]["userSelectOptions"][1] == {"key": "opt-no", "value": "No thanks"}
    assert interactive["entryNodeIds"] == ["pick"]
    wrong = await service.http.post(f"/api/workflow/resume/{execution_id}", json={"input": "Maybe"})
    assert wrong.status_code == 422
    answered = await service.http.post(
        f"/api/workflow/resume/{execution_id}", json={"input": "Yes please"}
    )
    assert answered.status_code == 202, answered.text
    final = await service.final(execution_id)
    assert final["context"]["status"] == "completed", final
    nodes = {n["nodeId"]: n for n in final["nodes"]}
    assert nodes["yes"]["output"] == {"answerText": "\ngoing on (Yes please)"}
    # the client follows on from the last frame it saw: the rest of the run
    rest = await frames(service.http, url, **{"Last-Event-ID": so_far[-1]["id"]})
    assert "fastAnswer" in [f["event"] for f in rest]
    assert rest[-2]["data"] == "[DONE]"
    assert nodes["no"]["status"] == "skipped"


async def frames_until(http: httpx.AsyncClient, url: str, event: str) -> list[dict[str, Any]]:
    """The frames of a stream that has not ended, up to the first ``event`` one."""
    found: list[dict[str, Any]] = []
    current: dict[str, Any] = {"event": None, "data": []}
    async with http.stream("GET", url, timeout=30) as response:
        async for line in response.aiter_lines():
            if line:
                name, _, value = line.partition(":")
                if name == "data":
                    current["data"].append(value.removeprefix(" "))
                elif name == "event":
                    current["event"] = value.removeprefix(" ")
                continue
            if current["data"]:
                found.append({**current, "data": "\n".join(current["data"])})
                if current["event"] == event:
                    return found
            current = {"event": None, "data": []}
    raise AssertionError(f"no {event} frame in {found}")


async def test_classify_and_extract_ask_the_model_and_read_its_answer_as_fastgpt_does(
    service: Service,
) -> None:
    classify = node(
        "cq",
        "classifyQuestion",
        [
            given("model", MODEL, "string", "selectLLMModel"),
            given("userChatInput", [START, "userChatInput"], "string", "reference"),
            given(
                "agents",
                [{"key": "k1", "value": "a greeting"}, {"key": "k2", "value": "an address"}],
                "any",
                "custom",
            ),
        ],
        [out("cqResult")],
    )
    extract = node(
        "ex",
        "contentExtract",
        [
            given("model", MODEL, "string", "selectLLMModel"),
            given("content", [START, "userChatInput"], "string", "reference"),
            given(
                "extractKeys",
                [
                    {"key": "city", "desc": "the city", "valueType": "string", "required": True},
                    {
                        "key": "zip",
                        "desc": "postcode",
                        "valueType": "string",
                        "required": True,
                        "defaultValue": "00000",
                    },
                ],
                "any",
                "custom",
            ),
        ],
        [out("success", "boolean"), out("fields"), out("city")],
    )
    document = workflow(
        start(),
        classify,
        extract,
        answer("greet", "hello"),
        answer("done", "{{$ex.city$}} {{$ex.zip$}} {{$ex.success$}} {{$cq.cqResult$}}"),
        edges=[
            edge(START, "cq"),
            edge("cq", "greet", "k1"),
            edge("cq", "ex", "k2"),
            edge("ex", "done"),
        ],
    )
    service.models.script(Answer(["It is k2."]), Answer(['Sure: {"city": "Paris", "note": 1}']))
    submitted = await service.http.post(
        "/api/workflow/execute",
        json={"workflowDefinition": document, "inputs": {"userChatInput": "I live in Paris"}},
    )
    assert submitted.status_code == 202, submitted.text
    final = await service.final(submitted.json()["executionId"])
    assert final["context"]["status"] == "completed", final
    nodes = {n["nodeId"]: n for n in final["nodes"]}
    assert nodes["greet"]["status"] == "skipped"
    assert nodes["cq"]["output"]["cqResult"] == "an address"
    assert nodes["ex"]["output"]["fields"] == '{"city":"Paris","zip":"00000"}'
    assert nodes["done"]["output"] == {"answerText": "\nParis 00000 false an address"}
    assert final["context"]["usage"]["totalTokens"] > 0
    first = service.models.exchanges[0].body["messages"]
    assert first[-1] == {"role": "user", "content": "I live in Paris"}
    assert 'id "k1": a greeting' in first[0]["content"]


async def test_a_form_input_pauses_the_run_and_its_values_become_outputs(service: Service) -> None:
    forms = [
        {"type": "input", "key": "name", "label": "Name", "valueType": "string", "required": True},
        {
            "type": "numberInput",
            "key": "age",
            "label": "Age",
            "valueType": "number",
            "required": False,
        },
    ]
    form = node(
        "form",
        "formInput",
        [
            given("description", "Who are you?", "string", "textarea"),
            given("userInputForms", forms, "any", "custom"),
        ],
        [out("formInputResult", "object"), out("name"), out("age", "number")],
    )
    document = workflow(
        start(),
        form,
        answer("hi", "Hi {{$form.name$}} ({{$form.age$}})"),
        edges=[edge(START, "form"), edge("form", "hi")],
    )
    submitted = await service.http.post(
        "/api/workflow/execute", json={"workflowDefinition": document}
    )
    execution_id = submitted.json()["executionId"]
    url = f"/api/workflow/events/{execution_id}?format=fastgpt"
    so_far = await frames_until(service.http, url, "interactive")
    interactive = json.loads(so_far[-1]["data"])["interactive"]
    assert interactive["type"] == "userInput"
    assert [f["key"] for f in interactive["params"]["inputForm"]] == ["name", "age"]
    missing = await service.http.post(
        f"/api/workflow/resume/{execution_id}", json={"input": {"age": 3}}
    )
    assert missing.status_code == 422
    # FastGPT's chat sends the form as JSON text
    answered = await service.http.post(
        f"/api/workflow/resume/{execution_id}", json={"input": '{"name": "Ada", "age": 36}'}
    )
    assert answered.status_code == 202, answered.text
    final = await service.final(execution_id)
    nodes = {n["nodeId"]: n for n in final["nodes"]}
    assert nodes["form"]["output"]["formInputResult"] == {"name": "Ada", "age": 36}
    assert nodes["hi"]["output"] == {"answerText": "\nHi Ada (36)"}


def tools_app() -> dict[str, Any]:
    """Start -> a tools node whose one tool (``topic``, a toolParams node) is followed by an AI
    chat writing about the topic the model called it with -> a reply quoting the answer."""
    topic = node(
        "topic",
        "toolParams",
        [tool_param("subject", "What to write about", required=True)],
        [out("subject")],
        name="Write",
        intro="Writes a line about a subject",
    )
    writer = node(
        "writer",
        "chatNode",
        [
            given("model", MODEL, "string", "settingLLMModel"),
            given("userChatInput", "One line on {{$topic.subject$}}", "string", "textarea"),
        ],
        [out("answerText")],
        name="Writer",
    )
    return workflow(
        start(),
        tools("agent", MODEL),
        topic,
        writer,
        answer("reply", "[{{$agent.answerText$}}]"),
        edges=[
            edge(START, "agent"),
            tool_edge("agent", "topic"),
            edge("topic", "writer"),
            edge("agent", "reply"),
        ],
    )


async def test_a_tool_call_streams_fastgpts_tool_events_and_hides_the_tools_own_nodes(
    service: Service,
) -> None:
    service.models.script(
        Answer.calls(("topic", {"subject": "cats"})),
        Answer.text("Cats purr."),
        Answer.text("Here you go."),
    )
    submitted = await service.http.post(
        "/api/workflow/execute",
        json={"workflowDefinition": tools_app(), "inputs": {"userChatInput": "A cat line"}},
    )
    assert submitted.status_code == 202, submitted.text
    execution_id = submitted.json()["executionId"]
    final = await service.final(execution_id)
    assert final["context"]["status"] == "completed", final
    assert service.models.exchanges[1].body["messages"][-1] == {
        "role": "user",
        "content": "One line on cats",
    }
    sent = await frames(service.http, f"/api/workflow/events/{execution_id}?format=fastgpt")
    names = [f["event"] for f in sent]
    squeezed = [n for i, n in enumerate(names) if not (n == "answer" == names[i - 1] and i)]
    assert squeezed[:14] == [
        "flowNodeStatus",  # Start
        "flowNodeResponse",
        "flowNodeStatus",  # the tools node (its tool's nodes announce nothing)
        "toolCall",
        "toolParams",
        "answer",  # the writer's answer, streamed from inside the tool's run
        "toolResponse",
        "answer",  # the model's last answer
        "flowNodeResponse",  # the tools node
        "flowNodeStatus",
        "fastAnswer",
        "flowNodeResponse",
        "workflowDuration",
        "answer",
    ], names
    data = {f["event"]: json.loads(f["data"]) for f in sent if f["event"] != "answer"}
    call_id = data["toolCall"]["tool"]["id"]
    assert data["toolCall"] == {
        "tool": {
            "id": call_id,
            "toolName": "Write",
            "toolAvatar": "",
            "functionName": "topic",
            "params": "",
            "response": "",
        }
    }
    assert data["toolParams"]["tool"]["params"] == '{"subject": "cats"}'
    assert data["toolResponse"]["tool"] == {
        "id": call_id,
        "toolName": "",
        "toolAvatar": "",
        "params": "",
        "response": "Cats purr.",
    }
    # FastGPT merges the tool run's answers into the tools node's answer
    assert data["fastAnswer"]["choices"][0]["delta"]["content"] == "\n[Cats purr.Here you go.]"
    assert [(r["nodeId"], r["moduleType"]) for r in data["flowResponses"]] == [
        (START, "workflowStart"),
        ("agent", "tools"),
        ("reply", "answerNode"),
    ]
