"""The executions list and one execution's page in headless Chromium, against a real API
socket and a `wfe worker` process: rows and graphs follow the WebSocket without a reload;
cancel, rerun from a node and the answer to a `wait_input` are done from the page."""

from __future__ import annotations

from tests.ui.flows import APPROVAL, pause
from tests.ui.harness import Browser, Deployment, wait

MARK = "window.__notReloaded = true"
NOT_RELOADED = "return window.__notReloaded === true"


def test_a_new_execution_appears_and_completes_in_the_list(
    browser: Browser, open_server: Deployment
) -> None:
    browser.open(f"{open_server.url}/ui")
    browser.find("p.live-dot.on")  # the WebSocket is up
    browser.js(MARK)
    execution_id = open_server.submit(pause(4), clientId="shop-1")
    row = f'tr[data-execution="{execution_id}"]'
    browser.find(row)
    assert browser.find(row).get_attribute("data-status") in {"pending", "running"}
    browser.attribute(row, "data-status", "completed")
    assert browser.js(NOT_RELOADED)
    assert open_server.status(execution_id)["context"]["status"] == "completed"
    # filters: by status and by client, in the address (a link can be shared)
    browser.find('select[name="status"]').send_keys("failed")
    browser.find("p.muted")
    wait(lambda: "status=failed" in browser.js("return location.hash"), what="the filter")
    assert not browser.all(row)
    browser.open(f"{open_server.url}/ui#/executions?clientId=shop-1")
    browser.attribute(row, "data-status", "completed")
    assert browser.console_errors() == []


def test_the_graph_follows_a_running_execution_and_reruns_from_a_node(
    browser: Browser, open_server: Deployment
) -> None:
    execution_id = open_server.submit(pause(2))
    browser.open(f"{open_server.url}/ui#/executions/{execution_id}")
    browser.js(MARK)
    browser.attribute('g.node[data-node="wait"]', "data-status", "running")
    browser.attribute("section.execution", "data-status", "completed")
    for node in ("start", "wait", "done"):
        browser.attribute(f'g.node[data-node="{node}"]', "data-status", "completed")
    assert browser.js(NOT_RELOADED)
    # the graph is laid out left to right
    xs = [browser.find(f'g.node[data-node="{n}"]').rect["x"] for n in ("start", "wait", "done")]
    assert xs == sorted(xs)
    assert xs[0] < xs[2]
    # a node's details, reached with the keyboard
    node = browser.find('g.node[data-node="start"]')
    browser.press_enter(node)
    details = browser.find('.node-details[data-node="start"]')
    assert '"n": 1' in details.text
    assert "transform" in details.text
    assert browser.find(".waterfall-row").text.startswith("start")
    assert "execution.completed" in browser.find(".event-log").text
    # rerun from `wait`: a new execution that reuses `start`
    browser.find('g.node[data-node="wait"]').click()
    rerun = browser.find("#rerun")
    assert rerun.is_enabled()
    rerun.click()
    wait(
        lambda: browser.js("return location.hash") != f"#/executions/{execution_id}",
        what="the rerun's page",
    )
    rerun_id = browser.js("return location.hash").rsplit("/", 1)[1]
    browser.attribute(f'section.execution[data-execution="{rerun_id}"]', "data-status", "completed")
    context = open_server.status(rerun_id)["context"]
    assert context["metadata"]["rerunOf"] == execution_id
    assert browser.console_errors() == []


def test_a_running_execution_is_cancelled_from_its_page(
    browser: Browser, open_server: Deployment
) -> None:
    execution_id = open_server.submit(pause(30), type="realtime")
    browser.open(f"{open_server.url}/ui#/executions/{execution_id}")
    browser.attribute('g.node[data-node="wait"]', "data-status", "running")
    browser.attribute("section.execution", "data-status", "running")
    browser.find("#cancel").click()
    browser.attribute("section.execution", "data-status", "cancelled")
    assert open_server.status(execution_id)["context"]["status"] == "cancelled"
    assert not browser.all("#cancel")
    # the graph shows what was recorded: the node in flight cancelled
    recorded = open_server.http.get(f"/api/workflow/status/{execution_id}?nodes=true").json()
    statuses = {n["nodeId"]: n["status"] for n in recorded["nodes"]}
    assert statuses["wait"] == "cancelled"
    for node in ("start", "wait", "done"):
        want = statuses.get(node, "pending")
        browser.attribute(f'g.node[data-node="{node}"]', "data-status", want)
    assert browser.console_errors() == []


def test_a_wait_input_is_answered_through_the_form_its_schema_makes(
    browser: Browser, open_server: Deployment
) -> None:
    execution_id = open_server.submit(APPROVAL)
    browser.open(f"{open_server.url}/ui#/executions/{execution_id}")
    browser.attribute("section.execution", "data-status", "waiting")
    form = browser.find('.wait-input[data-node="ask"]')
    assert "Ship order 42?" in form.text
    browser.screenshot("wait_input")
    # an answer the schema refuses: the server's problems are shown, with their paths
    browser.find("#answer-ask-copies").send_keys("0")
    browser.find("#answer-ask-approved").click()
    browser.find("#answer-ask-note").send_keys("fragile")
    browser.find('.wait-input button[type="submit"]').click()
    problem = browser.find(".wait-input .problem").text
    assert "copies" in problem, problem
    copies = browser.find("#answer-ask-copies")
    copies.clear()
    copies.send_keys("3")
    browser.find('.wait-input button[type="submit"]').click()
    browser.attribute("section.execution", "data-status", "completed")
    assert open_server.status(execution_id)["result"] == {
        "approved": True,
        "note": "fragile",
        "copies": 3,
    }
    browser.attribute('g.node[data-node="ask"]', "data-status", "completed")
    assert not browser.all(".wait-input")
    refused = (
        f"/resume/{execution_id} - Failed to load resource: "
        "the server responded with a status of 422"
    )
    assert browser.console_errors(refused) == []


def test_a_child_execution_is_linked_from_its_workflow_node(
    browser: Browser, open_server: Deployment
) -> None:
    parent = {
        "id": "parent",
        "nodes": [{"id": "sub", "type": "workflow", "inputs": {"definition": pause(0)}}],
    }
    execution_id = open_server.submit(parent)
    browser.open(f"{open_server.url}/ui#/executions/{execution_id}")
    browser.attribute("section.execution", "data-status", "completed")
    # the child's nodes (start, wait, done) are not drawn in the parent's graph
    assert len(browser.all("svg.graph g.node")) == 1
    browser.find('g.node[data-node="sub"]').click()
    link = browser.find('.node-details[data-node="sub"] .children a')
    child_id = link.text
    assert open_server.status(child_id)["context"]["parentExecutionId"] == execution_id
    link.click()
    browser.attribute(f'section.execution[data-execution="{child_id}"]', "data-status", "completed")
    assert browser.console_errors() == []


def test_a_node_of_a_big_graph_is_found_by_its_id(
    browser: Browser, open_server: Deployment
) -> None:
    chain = {
        "id": "chain",
        "nodes": [{"id": f"n{i}", "type": "echo", "inputs": {"i": i}} for i in range(40)],
        "edges": [{"source": f"n{i}", "target": f"n{i + 1}"} for i in range(39)],
    }
    execution_id = open_server.submit(chain)
    browser.open(f"{open_server.url}/ui#/executions/{execution_id}")
    browser.attribute("section.execution", "data-status", "completed")
    find = browser.find("#find-node")
    find.send_keys("n37")
    browser.press_enter(find)
    assert '"i": 37' in browser.find('.node-details[data-node="n37"]').text
    assert browser.js("return document.activeElement.dataset.node") == "n37"
    find.clear()
    find.send_keys("n99")
    browser.press_enter(find)
    assert "no such node" in browser.find(".find-node [role=status]").text
    assert browser.console_errors() == []


def test_older_executions_are_paged_in(browser: Browser, open_server: Deployment) -> None:
    echo = {"id": "echo", "nodes": [{"id": "a", "type": "echo", "inputs": {}}]}
    ids = [open_server.submit(echo) for _ in range(55)]
    browser.open(f"{open_server.url}/ui")
    browser.find(f'tr[data-execution="{ids[-1]}"]')  # newest first
    assert len(browser.all("table.executions tbody tr")) == 50
    assert not browser.all(f'tr[data-execution="{ids[0]}"]')
    browser.find("#older").click()
    browser.find(f'tr[data-execution="{ids[0]}"]')
    assert len(browser.all("table.executions tbody tr")) == 55
    assert browser.console_errors() == []
