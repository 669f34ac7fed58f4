"""FastGPT graphs translated and run by our executor, against the rules FastGPT's dispatcher
documents (``packages/service/core/workflow/dispatch/index.ts`` and the node files): references
by output id, branch handles skip the losing branches, variables update for the nodes after."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fastgpt.graphs import (
    START,
    answer,
    edge,
    given,
    guide,
    if_else,
    node,
    out,
    start,
    text_editor,
    variable_update,
    workflow,
)
from tests.support.http_server import LocalHttpServer
from workflow_engine.engine.executor import Executor
from workflow_engine.engine.hooks import ExecutionHooks, NodeStreamed
from workflow_engine.engine.results import ExecutionOutcome
from workflow_engine.errors import DefinitionError
from workflow_engine.fastgpt.translate import translate
from workflow_engine.vocabulary import ExecutionStatus, NodeStatus


class Streams(ExecutionHooks):
    def __init__(self) -> None:
        self.chunks: list[tuple[str, Any]] = []

    async def on_node_stream(self, event: NodeStreamed) -> None:
        self.chunks.append((event.node_id, event.chunk))


async def run(
    executor: Executor, document: dict[str, Any], **inputs: Any
) -> tuple[ExecutionOutcome, Streams]:
    hooks = Streams()
    plan = executor.compile(translate(document).definition)
    return await executor.run(plan, inputs, hooks=hooks), hooks


def greeting() -> dict[str, Any]:
    """Start -> a text editor reading the question and a variable -> an if/else on the
    question's length -> one answer per branch."""
    branches = [
        {
            "condition": "AND",
            "list": [
                {
                    "variable": [START, "userChatInput"],
                    "condition": "lengthGreaterThan",
                    "value": "5",
                }
            ],
        },
        {
            "condition": "OR",
            "list": [
                {"variable": ["VARIABLE_NODE_ID", "lang"], "condition": "equalTo", "value": "fr"}
            ],
        },
    ]
    return workflow(
        start(),
        guide([{"key": "lang", "label": "Language", "valueType": "string", "defaultValue": "en"}]),
        text_editor(
            "fmt", "Q: {{$448745.userChatInput$}} ({{lang}}) [{{q}}]", q=[START, "userChatInput"]
        ),
        if_else("check", branches),
        answer("long", "long: {{$fmt.system_text$}}"),
        answer("french", "fr"),
        answer("short", ["fmt", "system_text"]),
        edges=[
            edge(START, "fmt"),
            edge("fmt", "check"),
            edge("check", "long", "IF"),
            edge("check", "french", "ELSE IF 1"),
            edge("check", "short", "ELSE"),
        ],
    )


async def test_references_text_templates_and_branches_run_as_in_fastgpt(executor: Executor) -> None:
    outcome, hooks = await run(executor, greeting(), userChatInput="hello world")
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    nodes = outcome.nodes
    assert nodes["fmt"].output == {"system_text": "Q: hello world (en) [hello world]"}
    assert nodes["check"].output["ifElseResult"] == "IF"
    assert nodes["long"].output == {"answerText": "\nlong: Q: hello world (en) [hello world]"}
    assert (nodes["french"].status, nodes["short"].status) == (
        NodeStatus.SKIPPED,
        NodeStatus.SKIPPED,
    )
    assert hooks.chunks == [("long", {"text": "\nlong: Q: hello world (en) [hello world]"})]


async def test_a_variable_given_by_label_wins_and_else_if_labels_hold_a_space(
    executor: Executor,
) -> None:
    outcome, _ = await run(executor, greeting(), userChatInput="hi", variables={"Language": "fr"})
    assert outcome.nodes["check"].output["ifElseResult"] == "ELSE IF 1"
    assert outcome.nodes["french"].status is NodeStatus.COMPLETED
    outcome, _ = await run(executor, greeting(), userChatInput="hi", variables={"lang": "de"})
    assert outcome.nodes["check"].output["ifElseResult"] == "ELSE"
    assert outcome.nodes["short"].output == {"answerText": "\nQ: hi (de) [hi]"}


async def test_a_variable_update_is_seen_by_the_nodes_after_it(executor: Executor) -> None:
    document = workflow(
        start(),
        variable_update(
            "set",
            [
                {
                    "variable": ["VARIABLE_NODE_ID", "count"],
                    "value": ["", "41"],
                    "valueType": "number",
                    "renderType": "input",
                },
                {
                    "variable": ["VARIABLE_NODE_ID", "echo"],
                    "value": [START, "userChatInput"],
                    "valueType": "string",
                    "renderType": "reference",
                },
            ],
        ),
        answer("show", "{{count}} / {{$VARIABLE_NODE_ID.echo$}}"),
        edges=[edge(START, "set"), edge("set", "show")],
        variables=[{"key": "count", "label": "count", "valueType": "number", "defaultValue": 0}],
    )
    outcome, _ = await run(executor, document, userChatInput="ping")
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert outcome.nodes["show"].output == {"answerText": "\n41 / ping"}
    assert outcome.variables is not None
    assert outcome.variables["fastgpt"] == {"count": 41, "echo": "ping"}


async def test_a_node_error_without_catch_stops_its_branch_not_the_workflow(
    executor: Executor,
) -> None:
    """``variableUpdate`` of another node's output is refused: with ``catchError`` the catch
    edge runs and reads the error text; without, the branch stops and the workflow ends well."""
    bad = [{"variable": ["fmt", "system_text"], "value": ["", "x"], "valueType": "string"}]
    caught = workflow(
        start(),
        text_editor("fmt", "t"),
        {**variable_update("set", bad), "catchError": True},
        answer("after", "ran"),
        answer("oops", "caught: {{$set.system_error_text$}}"),
        edges=[
            edge(START, "fmt"),
            edge("fmt", "set"),
            edge("set", "after"),
            edge("set", "oops", kind="source_catch"),
        ],
    )
    outcome, _ = await run(executor, caught)
    assert outcome.status is ExecutionStatus.COMPLETED
    assert outcome.nodes["after"].status is NodeStatus.SKIPPED
    assert outcome.nodes["oops"].output == {
        "answerText": "\ncaught: only global variables can be updated"
    }
    uncaught = {**caught, "edges": caught["edges"][:3]}
    uncaught["nodes"][2] = {**uncaught["nodes"][2], "catchError": False}
    outcome, _ = await run(executor, uncaught)
    assert outcome.status is ExecutionStatus.COMPLETED
    assert outcome.nodes["set"].status is NodeStatus.FAILED
    assert outcome.nodes["after"].status is NodeStatus.SKIPPED


async def test_a_node_without_active_edges_is_skipped_and_a_join_runs_on_any_active_one(
    executor: Executor,
) -> None:
    """FastGPT's rule: a node runs when all its incoming edges are decided and one is active."""
    branches = [
        {
            "condition": "AND",
            "list": [{"variable": [START, "userChatInput"], "condition": "isEmpty"}],
        }
    ]
    document = workflow(
        start(),
        if_else("check", branches),
        node("a", "emptyNode"),
        node("b", "emptyNode"),
        answer("join", "joined"),
        edges=[
            edge(START, "check"),
            edge("check", "a", "IF"),
            edge("check", "b", "ELSE"),
            edge("a", "join"),
            edge("b", "join"),
        ],
    )
    outcome, _ = await run(executor, document, userChatInput="x")
    assert outcome.nodes["a"].status is NodeStatus.SKIPPED
    assert outcome.nodes["b"].status is NodeStatus.COMPLETED
    assert outcome.nodes["join"].output == {"answerText": "\njoined"}


def http_node(node_id: str, url: str, body: str, **extra: Any) -> dict[str, Any]:
    """An httpRequest468 node as FastGPT's template makes it, with one dynamic input ``q``
    and two custom outputs read by JSONPath."""
    inputs = [
        {
            "key": "system_addInputParam",
            "renderTypeList": ["addInputParam"],
            "valueType": "dynamic",
            "value": None,
        },
        {**given("q", [START, "userChatInput"], "string", "reference"), "canEdit": True},
        given("system_httpMethod", "POST", "string", "custom"),
        given("system_httpReqUrl", url, "string", "hidden"),
        given(
            "system_httpHeader",
            [{"key": "X-Who", "type": "string", "value": "{{q}}-{{$VARIABLE_NODE_ID.appId$}}"}],
            "any",
            "custom",
        ),
        given(
            "system_httpParams",
            [{"key": "page", "type": "string", "value": "{{$448745.userChatInput$}}"}],
            "any",
            "hidden",
        ),
        given("system_httpJsonBody", body, "any", "hidden"),
        given("system_httpContentType", "json", "string", "hidden"),
    ]
    outputs = [
        out("system_addOutputParam", "dynamic"),
        out("httpRawResponse", "any"),
        out("error", "object"),
        {**out("query.page", "string", output_id="qLUQfhG0ILRX"), "type": "dynamic"},
        {**out("$.method", "string", output_id="Xm9"), "type": "dynamic"},
    ]
    return node(node_id, "httpRequest468", inputs, outputs, **extra)


async def test_the_http_node_templates_its_request_and_reads_outputs_by_jsonpath(
    executor: Executor,
) -> None:

    server = await LocalHttpServer().start()
    try:
        body = (
            '{"question": "{{q}}", "quoted": "say \\"{{$448745.userChatInput$}}\\"", '
            '"n": {{$448745.userChatInput$}}}'
        )
        document = workflow(
            start(),
            http_node("call", f"{server.base_url}/echo/x", body),
            answer("show", "{{$call.qLUQfhG0ILRX$}} via {{$call.Xm9$}}"),
            edges=[edge(START, "call"), edge("call", "show")],
        )
        outcome, _ = await run(executor, document, userChatInput="42")
        assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
        [request] = server.requests
        assert request.method == "POST"
        assert request.query == {"page": ["42"]}
        assert request.headers["x-who"] == "42-fastgpt"

        assert json.loads(request.body) == {"question": "42", "quoted": 'say "42"', "n": 42}
        output = outcome.nodes["call"].output
        assert output["query.page"] == "42"
        assert output["$.method"] == "POST"
        assert output["httpRawResponse"]["method"] == "POST"
        assert outcome.nodes["show"].output == {"answerText": "\n42 via POST"}
        # an error status: caught (catchError), the catch edge reads the error text
        failing = workflow(
            start(),
            http_node("call", f"{server.base_url}/status/500", "{}", catchError=True),
            answer("ok", "fine"),
            answer("oops", "failed: {{$call.system_error_text$}}"),
            edges=[
                edge(START, "call"),
                edge("call", "ok"),
                edge("call", "oops", kind="source_catch"),
            ],
        )
        outcome, _ = await run(executor, failing, userChatInput="1")
        assert outcome.nodes["ok"].status is NodeStatus.SKIPPED
        assert outcome.nodes["oops"].output["answerText"].startswith("\nfailed: POST ")
        assert "answered HTTP 500" in outcome.nodes["oops"].output["answerText"]
    finally:
        await server.stop()


def looping() -> dict[str, Any]:
    """A loop over a global array variable: each item's text from the loop's start node (the
    item and its 1-based index) to its end node; then an answer quoting the collected array."""
    loop = node(
        "loop1",
        "loop",
        [
            given("loopInputArray", ["VARIABLE_NODE_ID", "words"], "arrayAny", "reference"),
            given("childrenNodeIdList", ["ls", "te", "le"], "arrayString", "hidden"),
        ],
        [out("loopArray", "arrayAny")],
    )
    body = [
        node(
            "ls",
            "loopStart",
            [],
            [out("loopStartInput", "any"), out("loopStartIndex", "number")],
            parentNodeId="loop1",
        ),
        {
            **text_editor("te", "{{$ls.loopStartInput$}}-{{$ls.loopStartIndex$}}"),
            "parentNodeId": "loop1",
        },
        node(
            "le",
            "loopEnd",
            [given("loopEndInput", ["te", "system_text"], "any", "reference")],
            [],
            parentNodeId="loop1",
        ),
    ]
    return workflow(
        start(),
        loop,
        *body,
        answer("show", "{{$loop1.loopArray$}}"),
        edges=[edge(START, "loop1"), edge("ls", "te"), edge("te", "le"), edge("loop1", "show")],
        variables=[
            {
                "key": "words",
                "label": "words",
                "valueType": "arrayString",
                "defaultValue": ["a", "b", "c"],
            }
        ],
    )


async def test_a_loop_runs_its_children_per_item_and_collects_the_loop_end_values(
    executor: Executor,
) -> None:
    outcome, _ = await run(executor, looping())
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert outcome.nodes["loop1"].output == {"loopArray": ["a-1", "b-2", "c-3"]}
    assert outcome.nodes["show"].output == {"answerText": '\n["a-1","b-2","c-3"]'}
    too_many = await run(executor, looping(), variables={"words": list(range(51))})
    loop_result = too_many[0].nodes["loop1"]
    assert loop_result.status is NodeStatus.FAILED
    assert loop_result.error is not None
    assert "Input array length cannot be greater than 50" in loop_result.error["message"]


async def test_a_variable_update_in_a_loop_is_seen_by_the_next_iterations_and_after_the_loop(
    executor: Executor,
) -> None:
    """FastGPT's "official document" template's pattern: each iteration appends to a global
    variable (``variableUpdate`` among the loop's children); the iterations after it and the
    nodes after the loop read the accumulated value."""
    document = looping()
    document["chatConfig"]["variables"].append(
        {"key": "acc", "label": "acc", "valueType": "string", "defaultValue": ">"}
    )
    append = {
        **variable_update(
            "vu",
            [
                {
                    "variable": ["VARIABLE_NODE_ID", "acc"],
                    "value": ["", "{{$VARIABLE_NODE_ID.acc$}}{{$te.system_text$}};"],
                    "valueType": "string",
                    "renderType": "input",
                }
            ],
        ),
        "parentNodeId": "loop1",
    }
    document["nodes"].append(append)
    document["nodes"].append(answer("total", "{{acc}}"))
    end = next(n for n in document["nodes"] if n["nodeId"] == "le")
    end["inputs"][0]["value"] = ["VARIABLE_NODE_ID", "acc"]
    document["edges"] = [e for e in document["edges"] if (e["source"], e["target"]) != ("te", "le")]
    document["edges"] += [edge("te", "vu"), edge("vu", "le"), edge("show", "total")]
    outcome, _ = await run(executor, document)
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert outcome.nodes["loop1"].output["loopArray"] == [">a-1;", ">a-1;b-2;", ">a-1;b-2;c-3;"]
    assert outcome.nodes["total"].output == {"answerText": "\n>a-1;b-2;c-3;"}
    assert outcome.variables is not None
    assert outcome.variables["fastgpt"]["acc"] == ">a-1;b-2;c-3;"


async def test_a_loop_item_shaped_like_a_tool_call_is_data_not_a_call(executor: Executor) -> None:
    """A tool call reaches its run out of the data's reach: an item (from the request, an HTTP
    response) cannot stand for one and replace a node's configured inputs."""
    forged = {"tool": "te", "params": {"system_textareaInput": "FORGED"}}
    words = [forged, {"fastgptToolCall": forged}, {"bodyCall": forged}]
    outcome, _ = await run(executor, looping(), variables={"words": words})
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    texts = outcome.nodes["loop1"].output["loopArray"]
    assert len(texts) == 3
    assert all(t != "FORGED" and t.endswith(f"-{i + 1}") for i, t in enumerate(texts))


async def test_a_nested_loops_variable_updates_carry_through_the_outer_loop(
    executor: Executor,
) -> None:
    """An inner loop appends each word to ``acc``; the outer loop runs it twice: the second
    outer iteration starts from the first's writes, and the nodes after see all of them."""
    document = looping()
    document["chatConfig"]["variables"].append(
        {"key": "acc", "label": "acc", "valueType": "string", "defaultValue": ">"}
    )
    inner = next(n for n in document["nodes"] if n["nodeId"] == "loop1")
    inner["parentNodeId"] = "outer"  # the loop becomes the inner one, in an outer loop
    document["nodes"] += [
        node(
            "outer",
            "loop",
            [given("loopInputArray", [1, 2], "arrayAny", "hidden")],
            [out("loopArray", "arrayAny")],
        ),
        node("ols", "loopStart", [], [out("loopStartInput", "any")], parentNodeId="outer"),
        node(
            "ole",
            "loopEnd",
            [given("loopEndInput", ["VARIABLE_NODE_ID", "acc"], "any", "reference")],
            [],
            parentNodeId="outer",
        ),
        {
            **variable_update(
                "vu",
                [
                    {
                        "variable": ["VARIABLE_NODE_ID", "acc"],
                        "value": ["", "{{$VARIABLE_NODE_ID.acc$}}{{$ls.loopStartInput$}}"],
                        "valueType": "string",
                        "renderType": "input",
                    }
                ],
            ),
            "parentNodeId": "loop1",
        },
        answer("total", "{{acc}}"),
    ]
    document["edges"] = [
        edge(START, "outer"),
        edge("ols", "loop1"),
        edge("loop1", "ole"),
        edge("ls", "te"),
        edge("te", "vu"),
        edge("vu", "le"),
        edge("outer", "total"),
    ]
    outcome, _ = await run(executor, document)
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert outcome.nodes["outer"].output["loopArray"] == [">abc", ">abcabc"]
    assert outcome.nodes["total"].output == {"answerText": "\n>abcabc"}


def test_the_translation_keeps_reachable_nodes_and_renames_ids_that_are_not_ours() -> None:
    translation = translate(looping())
    definition = translation.definition
    assert [n["id"] for n in definition["nodes"]] == ["n_448745", "loop1", "show"]
    assert translation.node_ids[START] == "n_448745"
    loop = definition["nodes"][1]
    assert loop["inputs"]["body"]["output"] == "le"
    assert [n["type"] for n in loop["inputs"]["body"]["nodes"]] == [
        "fastgpt.loopStart",
        "fastgpt.textEditor",
        "fastgpt.loopEnd",
    ]
    assert definition["edges"] == [
        {"source": "n_448745", "target": "loop1"},
        {"source": "loop1", "target": "show"},
    ]
    assert translation.left_out == []
    caught = translate(
        workflow(
            start(),
            if_else("check", []),
            answer("a", "x"),
            node("note", "comment"),
            edges=[
                edge(START, "check"),
                edge("check", "a", "ELSE IF 2"),
                edge("check", "a", "right", kind="source_catch"),
            ],
        )
    )
    assert [e.get("branch") for e in caught.definition["edges"]] == [None, "ELSE IF 2", "error"]
    assert caught.left_out == ["note"]


def counting(limit: str) -> dict[str, Any]:
    """A recursive edge: add one to the variable n, store it, and go back while n < limit;
    then answer with n."""
    inc = code_node("inc", "js", "function main({a}) { return {b64: a + 1} }")
    inc["inputs"][1]["value"] = ["VARIABLE_NODE_ID", "n"]
    inc["inputs"][1]["valueType"] = "number"
    store = variable_update(
        "set",
        [
            {
                "variable": ["VARIABLE_NODE_ID", "n"],
                "value": ["inc", "r4nd0m"],
                "valueType": "number",
            }
        ],
    )
    branches = [
        {
            "condition": "AND",
            "list": [
                {"variable": ["VARIABLE_NODE_ID", "n"], "condition": "lessThan", "value": limit}
            ],
        }
    ]
    return workflow(
        start(),
        inc,
        store,
        if_else("check", branches),
        answer("done", "n = {{n}}"),
        edges=[
            edge(START, "inc"),
            edge("inc", "set"),
            edge("set", "check"),
            edge("check", "inc", "IF"),
            edge("check", "done", "ELSE"),
        ],
        variables=[{"key": "n", "label": "n", "valueType": "number", "defaultValue": 0}],
    )


async def test_a_recursive_edge_runs_its_cycle_again_until_the_branch_leaves_it(
    executor: Executor,
) -> None:
    translation = translate(counting("3"))
    back = [e for e in translation.definition["edges"] if e.get("recursive")]
    assert back == [{"source": "check", "target": "inc", "branch": "IF", "recursive": True}]
    starts: list[str] = []

    class Starts(Streams):
        async def on_node_start(self, event: Any) -> None:
            starts.append(event.node_id)

    plan = executor.compile(translation.definition)
    outcome = await executor.run(plan, {}, hooks=Starts())
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert starts.count("inc") == 3
    assert starts.count("done") == 1
    assert outcome.nodes["done"].output == {"answerText": "\nn = 3"}
    assert outcome.variables is not None
    assert outcome.variables["fastgpt"] == {"n": 3}


async def test_max_run_times_ends_a_cycle_that_never_leaves(executor: Executor) -> None:
    """FastGPT's maxRunTimes: each run takes one (a skip a tenth); at none left nothing more
    runs and the workflow ends."""
    definition = translate(counting("1000")).definition
    definition["max_run_times"] = 10
    outcome = await executor.run(executor.compile(definition), {})
    assert outcome.status is ExecutionStatus.COMPLETED
    runs = outcome.variables["fastgpt"]["n"] if outcome.variables else None
    assert runs == 3  # start + 3 x (inc, set, check) = 10 runs
    assert outcome.nodes["done"].status is not NodeStatus.COMPLETED


def test_a_hostile_graph_is_refused_without_walking_it_deep_or_long() -> None:
    """A cycle through 1,500 nodes is found without recursion (Python's limit is 1,000); a
    document of more than 2,000 nodes is refused before it is walked."""
    chain = [answer(f"a{i}", "x") for i in range(1500)]
    edges = [edge(START, "a0")] + [edge(f"a{i}", f"a{i + 1}") for i in range(1499)]
    translated = translate(workflow(start(), *chain, edges=[*edges, edge("a1499", "a0")]))
    back = [e for e in translated.definition["edges"] if e.get("recursive")]
    assert back == [{"source": "a1499", "target": "a0", "recursive": True}]
    huge = workflow(start(), *[answer(f"b{i}", "x") for i in range(2001)], edges=[])
    with pytest.raises(DefinitionError) as refused:
        translate(huge)
    assert [(p.path, p.code) for p in refused.value.problems] == [("nodes", "limit")]


def code_node(node_id: str, code_type: str, code: str, **extra: Any) -> dict[str, Any]:
    inputs = [
        {
            "key": "system_addInputParam",
            "renderTypeList": ["addInputParam"],
            "valueType": "dynamic",
            "value": None,
        },
        {**given("a", [START, "userChatInput"], "string", "reference"), "canEdit": True},
        given("codeType", code_type, "string", "hidden"),
        given("code", code, "string", "custom"),
    ]
    outputs = [
        out("system_rawResponse", "object"),
        {**out("b64", "string", output_id="r4nd0m"), "type": "dynamic"},
    ]
    return node(node_id, "code", inputs, outputs, **extra)


async def test_code_runs_with_fastgpts_calling_convention_and_helpers(executor: Executor) -> None:
    js = "function main({a}) { return {b64: strToBase64(a, 'p:'), n: countToken('abcdefgh')} }"
    py = "def main(a):\n    return {'b64': a.upper(), 'n': len(a)}"
    document = workflow(
        start(),
        code_node("js", "js", js),
        code_node("py", "py", py),
        answer("show", "{{$js.r4nd0m$}} {{$py.r4nd0m$}}"),
        edges=[edge(START, "js"), edge(START, "py"), edge("js", "show"), edge("py", "show")],
    )
    outcome, _ = await run(executor, document, userChatInput="héllo")
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert outcome.nodes["js"].output == {
        "system_rawResponse": {"b64": "p:aMOpbGxv", "n": 2},
        "b64": "p:aMOpbGxv",
        "n": 2,
    }
    assert outcome.nodes["py"].output["b64"] == "HÉLLO"
    assert outcome.nodes["show"].output == {"answerText": "\np:aMOpbGxv HÉLLO"}
    # an old graph (no catchError): the code's error is an output and the branch goes on
    broken = workflow(
        start(),
        code_node("js", "js", "function main() { throw new Error('boom') }"),
        answer("show", "{{$js.error$}}"),
        edges=[edge(START, "js"), edge("js", "show")],
    )
    outcome, _ = await run(executor, broken, userChatInput="x")
    assert outcome.nodes["js"].status is NodeStatus.COMPLETED
    assert "boom" in outcome.nodes["show"].output["answerText"]


async def test_a_plugins_inputs_come_from_the_request_variables_and_its_output_is_the_result(
    executor: Executor,
) -> None:
    """A FastGPT plugin: ``pluginInput`` gives each declared input from the request's
    ``variables`` (typed by its value type; its own value as default), ``pluginOutput`` the
    values it is given; ``globalVariable`` is run as nothing."""
    plugin_in = node(
        "pin",
        "pluginInput",
        [given("city", "Paris", "string"), given("days", "3", "number")],
        [out("city"), out("days", "number")],
    )
    plugin_out = node(
        "pout",
        "pluginOutput",
        [
            given("summary", "{{$pin.city$}} x{{$pin.days$}}", "string"),
            given("days", ["pin", "days"], "number"),
        ],
    )
    document = workflow(
        plugin_in,
        node("gv", "globalVariable"),
        plugin_out,
        edges=[edge("pin", "gv"), edge("gv", "pout")],
    )
    outcome, _ = await run(executor, document, variables={"days": "5"})
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert outcome.nodes["pin"].output == {"city": "Paris", "days": 5}
    assert outcome.result == {"pout": {"summary": "Paris x5", "days": 5}}


async def test_messages_as_fastgpts_chat_api_takes_them_give_the_question_and_history(
    executor: Executor,
) -> None:
    document = workflow(
        start(),
        answer(
            "echo", "{{$448745.userChatInput$}} | {{$VARIABLE_NODE_ID.chatId$}} | {{histories}}"
        ),
        edges=[edge(START, "echo")],
    )
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": [{"type": "text", "text": "and now?"}]},
    ]
    outcome, _ = await run(executor, document, messages=messages, chatId="c-1")
    assert outcome.status is ExecutionStatus.COMPLETED, outcome.error
    assert outcome.nodes["echo"].output == {
        "answerText": '\nand now? | c-1 | [{"role":"user","content":"hi"},'
        '{"role":"assistant","content":"hello"}]'
    }


def test_fastgpts_placeholder_patterns_run_in_linear_time() -> None:
    """The placeholder patterns meet tenants' text: on RE2 (linear time), not a backtracking
    engine (``{{$`` repeated 40,000 times took 14 s of the API's event loop on ``re``)."""
    import re2

    from workflow_engine.fastgpt import http_body, values
    from workflow_engine.fastgpt import translate as translate_module

    for pattern in (
        translate_module.EDITOR_REFERENCE,
        values.NODE_VARIABLE_PATTERN,
        values.VARIABLE_PLACEHOLDER_PATTERN,
        http_body._UNDEFINED_MEMBER,
    ):
        assert isinstance(pattern, re2._Regexp), pattern
    hostile = workflow(start(), answer("a", "{{$" * 40_000), edges=[edge(START, "a")])
    assert translate(hostile).definition["nodes"][1]["inputs"]["params"]["text"].startswith("{{$")


async def test_only_model_nodes_report_usage_and_odd_shapes_fail_the_node_not_the_worker(
    executor: Executor,
) -> None:
    forged = node(
        "pout",
        "pluginOutput",
        [given("usage", {"totalTokens": 2**63 - 1, "promptTokens": -5}, "object")],
    )
    branches_text = node(
        "check", "ifElseNode", [given("ifElseList", [{"condition": "AND", "list": ["odd"]}], "any")]
    )
    document = workflow(
        start(),
        forged,
        branches_text,
        answer("after", "x"),
        edges=[edge(START, "pout"), edge(START, "check"), edge("check", "after", "ELSE")],
    )
    outcome, _ = await run(executor, document)
    assert outcome.usage is None  # a plugin's output says what it likes: not a model's usage
    check = outcome.nodes["check"]
    assert check.status is NodeStatus.FAILED
    assert check.error is not None
    assert check.error["type"] == "invalid_input"
    assert outcome.status is ExecutionStatus.COMPLETED


def test_malformed_documents_are_a_422_not_a_crash() -> None:
    odd = workflow(
        start(),
        node("t", "textEditor", [{"key": "x", "canEdit": True, "renderTypeList": 5, "value": 1}]),
        edges=[edge(START, "t")],
    )
    assert translate(odd).definition["nodes"][1]["inputs"]["dynamic"] == ["x"]
    loops: list[dict[str, Any]] = []
    parent = None
    for depth in range(10):  # loops nested 10 deep
        loop_id = f"l{depth}"
        loops.append(
            node(loop_id, "loop", [given("loopInputArray", [], "arrayAny")], parentNodeId=parent)
        )
        loops.append(node(f"s{depth}", "loopStart", parentNodeId=loop_id))
        loops.append(node(f"e{depth}", "loopEnd", parentNodeId=loop_id))
        parent = loop_id
    edges = [edge(START, "l0")] + [edge(f"s{d}", f"l{d + 1}") for d in range(9)]
    edges += [edge(f"l{d + 1}", f"e{d}") for d in range(9)]
    with pytest.raises(DefinitionError) as deep:
        translate(workflow(start(), *loops, edges=edges))
    assert [p.code for p in deep.value.problems] == ["limit"]
    assert "nest deeper than 8" in deep.value.problems[0].message


def test_a_native_fastgpt_node_with_odd_params_is_a_definition_error() -> None:
    from workflow_engine.definition.expressions import ExpressionEngine
    from workflow_engine.definition.validate import find_problems
    from workflow_engine.nodes.registry import NodeRegistry

    raw = {
        "id": "odd",
        "nodes": [
            {
                "id": "cq",
                "type": "fastgpt.classifyQuestion",
                "inputs": {"params": [1]},
                "on_error": "branch",
            },
            {"id": "x", "type": "fastgpt.emptyNode"},
        ],
        "edges": [{"source": "cq", "target": "x", "branch": "k1"}],
    }
    problems = find_problems(raw, NodeRegistry.default(), ExpressionEngine())
    assert {p.code for p in problems} >= {"invalid_inputs"}


async def test_files_are_ignored_with_a_warning(executor: Executor) -> None:
    class Logs(Streams):
        def __init__(self) -> None:
            super().__init__()
            self.logs: list[str] = []

        async def on_node_log(self, event: Any) -> None:
            self.logs.append(event.text)

    hooks = Logs()
    document = workflow(
        start(), answer("a", "{{$448745.userChatInput$}}"), edges=[edge(START, "a")]
    )
    plan = executor.compile(translate(document).definition)
    outcome = await executor.run(
        plan, {"userChatInput": "look", "files": [{"url": "https://x/y.png"}]}, hooks=hooks
    )
    assert outcome.status is ExecutionStatus.COMPLETED
    assert outcome.nodes["a"].output == {"answerText": "\nlook"}
    assert hooks.logs == ["warning: files sent with the question are ignored (not supported)"]
