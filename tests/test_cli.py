"""The command line, run as a separate process as a user runs it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def wfe(*args: str, cwd: Path = ROOT, program: str = "wfe") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / program), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


FAILING = {
    "id": "failing",
    "nodes": [
        {"id": "ok", "type": "transform", "inputs": {"value": 1}},
        {"id": "boom", "type": "fail", "inputs": {"message": "card declined"}},
    ],
    "edges": [{"source": "ok", "target": "boom"}],
}


def test_validate_a_valid_definition() -> None:
    proc = wfe("validate", "examples/if_else.json")
    assert proc.returncode == 0
    assert "workflow 'if_else' is valid (5 nodes, 5 edges)" in proc.stderr


def test_long_name_is_the_same_command() -> None:
    proc = wfe("validate", "examples/if_else.json", program="workflow-engine")
    assert proc.returncode == 0


def test_run_prints_progress_on_stderr_and_the_result_on_stdout() -> None:
    proc = wfe("run", "examples/if_else.json", "--input", "total=20")
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == {"tier": "std", "total": 20}
    assert "✓ check (condition) completed" in proc.stderr
    assert "- vip (transform) skipped" in proc.stderr


def test_failed_execution_exits_1_naming_the_node(tmp_path: Path) -> None:
    proc = wfe("run", str(write(tmp_path / "f.json", FAILING)))
    assert proc.returncode == 1
    assert proc.stdout == ""  # no result: not even `null`
    assert "execution failed at node 'boom': card declined" in proc.stderr


def test_json_flag_prints_the_whole_record(tmp_path: Path) -> None:
    proc = wfe("run", str(write(tmp_path / "f.json", FAILING)), "--json", "-q")
    assert proc.returncode == 1
    record = json.loads(proc.stdout)
    assert record["status"] == "failed"
    assert record["error"] == {"message": "card declined", "nodeId": "boom", "type": "fail"}
    assert [(n["nodeId"], n["status"]) for n in record["nodes"]] == [
        ("ok", "completed"),
        ("boom", "failed"),
    ]
    assert proc.stderr.count("\n") == 1  # -q: only the failure line


def test_inputs_file_then_input_flags_override(tmp_path: Path) -> None:
    inputs = tmp_path / "in.yaml"
    inputs.write_text("total: 500\n")
    proc = wfe("run", "examples/if_else.json", "--inputs-file", str(inputs), "-q")
    assert json.loads(proc.stdout) == {"tier": "vip", "total": 500}
    proc = wfe("run", "examples/if_else.json", "--inputs-file", str(inputs), "-i", "total=5", "-q")
    assert json.loads(proc.stdout) == {"tier": "std", "total": 5}


def test_inputs_breaking_the_schema_are_listed() -> None:
    proc = wfe("run", "examples/if_else.json", "--input", "total=lots")
    assert proc.returncode == 1
    assert "invalid inputs (1 problem):" in proc.stderr
    assert "inputs.total: 'lots' is not of type 'number'" in proc.stderr


def test_invalid_definition_on_run_lists_problems(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.json", {"id": "x", "nodes": [{"id": "a", "type": "nope"}]})
    proc = wfe("run", str(path))
    assert proc.returncode == 1
    assert "nodes[0].type: unknown node type 'nope'" in proc.stderr


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    proc = wfe("run", str(tmp_path / "missing.json"))
    assert proc.returncode == 1
    assert "cannot read" in proc.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    proc = wfe("validate", str(bad))
    assert proc.returncode == 1
    assert "is not valid JSON" in proc.stderr
    proc = wfe("run", "examples/if_else.json", "--input", "novalue")
    assert proc.returncode == 1
    assert "expected key=value" in proc.stderr


def test_execution_timeout_flag(tmp_path: Path) -> None:
    slow = {"id": "slow", "nodes": [{"id": "wait", "type": "delay", "inputs": {"seconds": 30}}]}
    proc = wfe("run", str(write(tmp_path / "s.json", slow)), "--timeout", "0.2", "-q")
    assert proc.returncode == 1
    assert "execution failed at node 'wait': execution timed out after 0.2s" in proc.stderr


async def test_cleanup_removes_old_finished_executions(tmp_path: Path) -> None:
    import os

    from workflow_engine.store import ExecutionRecord, open_store
    from workflow_engine.vocabulary import ExecutionStatus, now_ms

    url = f"sqlite:///{tmp_path}/wfe.db"
    store = open_store(url)
    await store.migrate()
    for name in ("old", "new"):
        await store.create(ExecutionRecord(name, "w", "t", "workflow", definition={}, inputs={}))
        await store.mark_running(name, 1)
    await store.transition(
        "old", ExecutionStatus.COMPLETED, completed_at=now_ms() - 31 * 86_400_000
    )
    await store.finish("new", ExecutionStatus.COMPLETED)
    await store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WFE_")} | {"WFE_STORE_URL": url}
    proc = await asyncio.to_thread(
        subprocess.run,
        [str(BIN / "wfe"), "cleanup", "--days", "30"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "removed 1 execution(s) finished more than 30 day(s) ago" in proc.stderr
    store = open_store(url)
    assert await store.get("old") is None
    assert await store.get("new") is not None
    await store.close()
