"""``wfe workflows push/ls/rm`` and ``wfe submit --workflow-id``, run as a user runs them,
against the API served on a real socket."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support.processes import WFE
from tests.support.served import served
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
async def base(services: Services) -> AsyncIterator[str]:
    async with served(create_app(services.settings, services)) as address:
        yield f"http://{address}"


async def wfe(base: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a thread: the API it talks to is served by this test's event loop."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFE_")}
    env["WFE_API_URL"] = base
    return await asyncio.to_thread(
        subprocess.run, [WFE, *args], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT
    )


async def test_push_list_submit_and_remove_a_stored_workflow(base: str, tmp_path: Path) -> None:
    pushed = await wfe(base, "workflows", "push", "examples/if_else.json")
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout) == {"workflowId": "if_else", "version": 1}
    again = await wfe(base, "workflows", "push", "examples/if_else.json")
    assert json.loads(again.stdout) == {"workflowId": "if_else", "version": 2}
    copy = await wfe(base, "workflows", "push", "examples/diamond.json", "--id", "shapes")
    assert json.loads(copy.stdout) == {"workflowId": "shapes", "version": 1}

    listed = await wfe(base, "workflows", "ls")
    assert listed.returncode == 0, listed.stderr
    lines = [line.split("\t") for line in listed.stdout.splitlines()]
    assert [(cells[0], cells[1]) for cells in lines] == [("if_else", "v2"), ("shapes", "v1")]
    as_json = json.loads((await wfe(base, "workflows", "ls", "--json")).stdout)
    assert [(w["workflowId"], w["version"]) for w in as_json] == [("if_else", 2), ("shapes", 1)]

    submitted = await wfe(
        base, "submit", "--workflow-id", "if_else", "--version", "1", "-i", "total=5"
    )
    assert submitted.returncode == 0, submitted.stderr
    execution_id = submitted.stdout.strip()
    async with httpx.AsyncClient(base_url=base) as api:
        status = (await api.get(f"/api/workflow/status/{execution_id}")).json()
    assert status["context"]["workflowId"] == "if_else"
    assert status["context"]["workflowVersion"] == 1

    removed = await wfe(base, "workflows", "rm", "if_else")
    assert removed.returncode == 0, removed.stderr
    assert "deleted workflow if_else" in removed.stderr
    gone = await wfe(base, "submit", "--workflow-id", "if_else")
    assert gone.returncode == 1
    assert "error 404" in gone.stderr
    assert "workflow 'if_else' not found" in gone.stderr
    assert (await wfe(base, "workflows", "rm", "if_else")).returncode == 1
    left = await wfe(base, "workflows", "ls")
    assert [line.split("\t")[0] for line in left.stdout.splitlines()] == ["shapes"]


async def test_push_lists_every_problem_of_an_invalid_definition(base: str) -> None:
    refused = await wfe(base, "workflows", "push", "examples/invalid/broken.json")
    assert refused.returncode == 1
    assert "error 422" in refused.stderr
    assert "definition.nodes[2].type: unknown node type 'teleport'" in refused.stderr


async def test_submit_takes_a_file_or_a_workflow_id(base: str) -> None:
    neither = await wfe(base, "submit")
    assert neither.returncode == 2
    assert "give either FILE or --workflow-id" in neither.stderr
    both = await wfe(base, "submit", "examples/if_else.json", "--workflow-id", "if_else")
    assert both.returncode == 2
