"""The benchmark suite runs end to end (small counts) and writes what docs/benchmarks.md shows.
It checks that every section produced its figures, not how fast anything was."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from benchmarks.__main__ import scale_table, table
from benchmarks.baseline import PREVIOUS_ROUND, Baseline

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
    # beside this run's figures, the previous round's (benchmarks/previous_round.json)
    heading = next(line for line in done.stdout.splitlines() if line.startswith("what "))
    assert heading.endswith("before (2026-11-28)")
    assert "10,000 parked, peak RSS 115 MB" in done.stdout


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


THIS_RUN = json.loads((ROOT / "docs" / "benchmarks" / "results.json").read_text())


def line_of(rows: list[str], label: str) -> str:
    return next(row for row in rows if row.startswith(label))


def test_the_table_prints_an_earlier_runs_figures_beside_this_runs() -> None:
    earlier = {
        "when": "2026-11-28T15:57:44+00:00",
        "raw_bullmq": {
            "jobs_per_s": {"1": 2000, "2": 4000},
            "redis_per_job": {"commands": 38.5, "cpu_us": 122.6},
        },
        "sqlite": {"executions_per_s": {"1": 1000, "2": 1500}},
        "celery": {"chains_per_s": 250},
    }
    rows = table(THIS_RUN, Baseline(earlier))
    assert rows[0].endswith("before (2026-11-28)")
    assert line_of(rows, "raw bullmq no-op jobs/s").endswith("2000 / 4000")
    assert line_of(rows, "engine 3-node (sqlite)").endswith("1000 / 1500")
    assert line_of(rows, "   share of raw bullmq").endswith("50% / 38%")
    assert line_of(rows, "raw bullmq: Redis commands").endswith("38.5 / 123")
    assert line_of(rows, "   engine (1 worker) / Celery").endswith("4.0x")
    # what the earlier run did not measure is left blank, not made up
    assert line_of(rows, "engine 3-node (postgres)").endswith(
        f"{THIS_RUN['postgres']['executions_per_s']['2']:.0f}"
    )


def test_without_a_baseline_the_table_has_this_runs_figures_only() -> None:
    rows = table(THIS_RUN, Baseline.load(None))
    assert rows[0].split() == ["what", "1", "worker", "2", "workers"]
    assert line_of(rows, "raw bullmq no-op jobs/s").split()[-2:] == [
        f"{THIS_RUN['raw_bullmq']['jobs_per_s'][w]:.0f}" for w in ("1", "2")
    ]


def test_the_previous_round_is_the_default_baseline_with_its_figures_by_hand() -> None:
    previous = Baseline.load(PREVIOUS_ROUND)
    assert previous.heading == "before (2026-11-28)"
    assert previous.get("sqlite", "executions_per_s", "1") > 0
    assert previous.parked() == "before (2026-11-28): 10,000 parked, peak RSS 115 MB"
    assert "48 ms at 100,000" in previous.stats_by_group()
    lines = scale_table({"history": [{"store": "sqlite", "sizes": {}}]}, previous)
    assert lines[-1] == previous.stats_by_group()
