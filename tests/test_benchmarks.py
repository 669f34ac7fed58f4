"""The benchmark suite runs end to end (small counts) and writes what docs/benchmarks.md shows.
It checks that every section produced its figures, not how fast anything was."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(900)  # every section, small: a few minutes on a busy machine
def test_the_benchmark_suite_runs_side_by_side_and_writes_json_and_a_chart(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--stores",
            "sqlite",
            "--scale",
            "cluster,submit,parked,history",  # (ai: its own test below)
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["raw_bullmq"]["jobs_per_s"]["1"] > 0
    sqlite = results["sqlite"]
    assert sqlite["executions_per_s"]["1"] > 0
    assert sqlite["executions_per_s"]["2"] > 0
    assert 0 < sqlite["latency_ms"]["p50"] <= sqlite["latency_ms"]["p99"]
    assert sqlite["forty_steps_end_to_end_ms"]["p50"] > 0
    assert sqlite["redis_per_execution"]["commands"] > 0
    assert results["celery"]["chains_per_s"] > 0
    assert results["executor"]["us_per_node_templated"]["chain"] > 0
    assert results["live"]["fan_out"]["every_client_got_every_event"] is True
    assert results["live"]["cancel"]["p50_ms"] > 0
    assert (tmp_path / "throughput.png").stat().st_size > 10_000
    assert "engine 3-node (sqlite) executions/s" in done.stdout
    projected = results["cluster"]["sqlite"]
    assert projected["per_execution"]["redis_commands"] > 0
    assert projected["projection"]["redis_primaries"] >= 1
    submit = results["submit"]["sqlite"]  # wrk measures it, or says it is not installed
    assert submit.get("requests_per_s", 0) > 0 or "wrk is not installed" in submit["skipped"]
    assert results["parked"]["count"] == 1000
    assert results["parked"]["parked_peak_rss_mb"] > 0
    assert results["parked"]["resume_refused"] == 0
    sizes = results["history"][0]["sizes"]
    assert set(sizes) == {"1000", "10000"} or set(sizes) == {1000, 10000}
    assert "history (python -m benchmarks.history):" in done.stdout


def test_an_unknown_store_name_is_refused_before_anything_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--stores", "sqlite,postgresql"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "unknown store postgresql; choose from sqlite, postgres, mongodb" in done.stderr
    assert "private redis-server" not in done.stdout


@pytest.mark.timeout(600)
def test_the_ai_load_benchmark_streams_every_token_to_every_client_and_runs_code_nodes(
    tmp_path: Path,
) -> None:
    out = tmp_path / "ai_load.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.ai_load", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["machine"]["cores"] >= 1
    llm = results["llm"]
    assert llm["every_client_got_every_token"] is True, llm["incomplete"]
    assert llm["tokens_streamed"] == llm["streams"] * llm["tokens_per_stream"]
    assert 0 < llm["stream_events_per_token"] <= 1
    assert 0 < llm["lag_ms"]["p50"] <= llm["lag_ms"]["p99"]
    assert llm["worker_cpu_s_per_1k_tokens"] > 0
    assert llm["api_cpu_s_per_1k_tokens"] > 0
    code = results["code"]
    assert code["failed"] == 0
    assert code["executions_per_s"] > 0
    assert 0 < code["submit_to_complete_ms"]["p50"] <= code["submit_to_complete_ms"]["p99"]
    assert code["worker_rss_mb"] > 0
    assert "token lag, model -> WS client" in done.stdout
