"""Every page of the UI in headless Chromium, with API keys: the key screen refuses a wrong
key; each page opens without a console error, loads nothing from another host and fits a
phone; the workflows, schedules and queues pages do what they offer."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.ui.flows import STORED, pause
from tests.ui.harness import PHONE, Browser, Deployment, wait
from workflow_engine.api.routes.ui import STATIC


def sign_in(browser: Browser, server: Deployment, key: str) -> None:
    browser.open(f"{server.url}/ui")
    field = browser.find("#api-key")
    field.clear()
    field.send_keys(key)
    browser.find('form[aria-label="sign in"] button[type="submit"]').click()
    if key.startswith("key-"):
        browser.find("header.top")


def test_a_wrong_key_is_refused_and_a_right_one_kept_for_the_tab(
    browser: Browser, keyed_server: Deployment
) -> None:
    sign_in(browser, keyed_server, "not-a-key")
    assert "refused" in browser.find('form[aria-label="sign in"] .problem').text
    assert browser.js("return sessionStorage.length") == 0
    sign_in(browser, keyed_server, "key-acme")
    browser.find("table.executions, section p.muted")
    assert "acme" in browser.find("header.top .who").text
    assert browser.js("return sessionStorage.getItem('wfe.apiKey')") == "key-acme"
    # a tenant key does not see the queue administration
    browser.open(f"{keyed_server.url}/ui#/queues")
    browser.find("dl.counts")
    assert "admin scope" in browser.find("main").text
    # the API itself refuses the UI's JSON routes without a key
    assert httpx.get(f"{keyed_server.url}/ui/api/graph/x").status_code == 401
    assert browser.console_errors() == []


def test_every_page_opens_clean_and_stays_on_its_own_host(
    browser: Browser, keyed_server: Deployment
) -> None:
    http = keyed_server.http
    assert http.post("/api/workflows", json={"definition": STORED}).status_code == 201
    assert http.post("/api/workflows", json={"definition": STORED}).status_code == 201
    schedule = http.post(
        "/api/workflow/execute",
        json={"workflowDefinition": pause(0), "repeat": {"cron": "0 3 * * *", "tz": "UTC"}},
    )
    assert schedule.status_code == 201, schedule.text
    done = keyed_server.submit(pause(0))
    wait(lambda: keyed_server.status(done)["context"]["status"] == "completed", what="a run")
    sign_in(browser, keyed_server, "key-admin")

    pages = {
        "executions": ("#/executions", f'tr[data-execution="{done}"]'),
        "execution": (f"#/executions/{done}", 'section.execution[data-status="completed"]'),
        "workflows": ("#/workflows", 'tr[data-workflow="greet"]'),
        "workflow": ("#/workflows/greet", "section.workflow form.schema-form"),
        "schedules": ("#/schedules", "tr[data-schedule]"),
        "queues": ("#/queues", 'tr[data-queue="workflow"]'),
    }
    for name, (hash_, ready) in pages.items():
        browser.open(f"{keyed_server.url}/ui{hash_}")
        browser.find(ready)
        assert browser.console_errors() == [], name
        assert browser.foreign_resources() == [], name
        if name != "execution":  # (test_execution_pages takes that one, mid-run)
            browser.screenshot(name)
    assert browser.console_errors() == []


def test_a_stored_workflow_runs_with_inputs_from_its_schema_form(
    browser: Browser, keyed_server: Deployment
) -> None:
    http = keyed_server.http
    assert http.post("/api/workflows", json={"definition": STORED}).status_code == 201
    sign_in(browser, keyed_server, "key-admin")
    browser.open(f"{keyed_server.url}/ui#/workflows/greet")
    browser.find("#input-name").send_keys("Ada")
    times = browser.find("#input-times")
    assert times.get_attribute("value") == "2"  # the schema's default
    browser.find('.run-form button[type="submit"]').click()
    browser.attribute("section.execution", "data-status", "completed")
    execution_id = browser.js("return location.hash").rsplit("/", 1)[1]
    body = keyed_server.status(execution_id)
    assert body["result"] == "Hello Ada!!"
    assert body["context"]["workflowId"] == "greet"
    browser.attribute('g.node[data-node="calm"]', "data-status", "skipped")
    browser.find('g.node[data-node="loud"]').click()
    browser.find('.node-details[data-node="loud"]')
    browser.screenshot("execution")
    assert browser.console_errors() == []


def test_schedules_are_deleted_and_queues_paused_from_their_pages(
    browser: Browser, keyed_server: Deployment
) -> None:
    http = keyed_server.http
    made = http.post(
        "/api/workflow/execute",
        json={"workflowDefinition": pause(0), "repeat": {"every": 3_600_000}},
    )
    schedule_id = made.json()["scheduleId"]
    sign_in(browser, keyed_server, "key-admin")
    browser.open(f"{keyed_server.url}/ui#/schedules")
    row = f'tr[data-schedule="{schedule_id}"]'
    browser.find(f"{row} button").click()  # "Delete…" asks first
    browser.find(f"{row} button.danger").click()
    wait(lambda: not browser.all(row), what="the row to go")
    assert http.get("/api/workflow/schedules").json()["items"] == []

    browser.open(f"{keyed_server.url}/ui#/queues")
    queue = 'tr[data-queue="background"]'
    browser.attribute(queue, "data-paused", "false")
    browser.find(f"{queue} .row-actions > button").click()
    browser.attribute(queue, "data-paused", "true")
    listed = http.get("/api/admin/queues").json()["queues"]
    assert next(q for q in listed if q["name"] == "background")["paused"] is True
    browser.find(f"{queue} .row-actions > button").click()
    browser.attribute(queue, "data-paused", "false")
    browser.find(f'{queue} form.clean button[type="submit"]').click()
    assert "removed" in browser.find(f"{queue} form.clean span.muted").text
    assert browser.console_errors() == []


def test_pages_fit_a_phone(browser: Browser, open_server: Deployment) -> None:
    done = open_server.submit(pause(0))
    wait(lambda: open_server.status(done)["context"]["status"] == "completed", what="a run")
    browser.size(*PHONE)
    for hash_, ready in (
        ("#/executions", f'tr[data-execution="{done}"]'),
        (f"#/executions/{done}", 'section.execution[data-status="completed"]'),
        ("#/queues", "dl.counts"),
    ):
        browser.open(f"{open_server.url}/ui{hash_}")
        browser.find(ready)
        assert browser.js("return innerWidth") == PHONE[0]
        overflow = browser.js("return document.documentElement.scrollWidth - innerWidth")
        assert overflow <= 0, f"{hash_} is {overflow}px wider than the phone"
        if hash_.startswith("#/executions/"):
            browser.screenshot("execution-phone")
    assert browser.console_errors() == []


# -- what the server ships -------------------------------------------------------------------

URL_ATTRIBUTE = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']+)["']""")
IMPORT = re.compile(r"""\b(?:from|import)\s*\(?\s*["']([^"']+)["']""")
ABSOLUTE = re.compile(r"""https?://|wss?://|//[a-z0-9.-]+\.[a-z]""", re.IGNORECASE)


def shipped(suffix: str) -> list[Path]:
    return sorted(STATIC.rglob(f"*{suffix}"))


def test_the_shipped_files_name_no_other_host(open_server: Deployment) -> None:
    page = httpx.get(f"{open_server.url}/ui")
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["content-security-policy"]
    targets = URL_ATTRIBUTE.findall(page.text)
    assert targets
    assert all(t.startswith("/ui/static/") for t in targets), targets
    for target in targets:
        assert httpx.get(f"{open_server.url}{target}").status_code == 200, target
    for script in shipped(".js"):
        text = script.read_text()
        for specifier in IMPORT.findall(text):
            assert specifier.startswith("."), f"{script.name} imports {specifier}"
        if "vendor" not in script.parts:  # (a library may name a namespace URI)
            assert not ABSOLUTE.search(text), f"{script.name} names a host"
    for sheet in shipped(".css"):
        assert "url(" not in sheet.read_text() or not ABSOLUTE.search(sheet.read_text())
    script = httpx.get(f"{open_server.url}/ui/static/js/app.js")
    assert "javascript" in script.headers["content-type"]  # (module scripts need it)
    again = httpx.get(script.url, headers={"If-None-Match": script.headers["etag"]})
    assert again.status_code == 304
    # nothing outside the static directory is served
    assert httpx.get(f"{open_server.url}/ui/static/../../api/app.py").status_code == 404
    assert httpx.get(f"{open_server.url}/ui/static/%2e%2e/index.html").status_code == 404
    assert "/ui" not in httpx.get(f"{open_server.url}/openapi.json").text
