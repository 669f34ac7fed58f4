"""What starting the command line loads. ``wfe --help`` and ``wfe validate`` should answer in a
blink, so the CLI module imports typer and rich and each command imports what it needs. These
tests look at the modules a fresh process has loaded, never at the clock
(``python -m benchmarks.cli`` prints the times)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The service's stack: none of it is needed to read, check or run a definition in-process.
SERVICE = {
    "fastapi",
    "starlette",
    "uvicorn",
    "bullmq",
    "redis",
    "sqlalchemy",
    "aiosqlite",
    "asyncpg",
    "pymongo",
    "websockets",
}
# What only some commands use: the executor's HTTP client and logging, the definition checks.
COMMAND_ONLY = {"httpx", "structlog", "pydantic", "pydantic_settings", "jinja2", "jsonschema"}
SERVICE_LAYERS = ("api", "queue", "worker", "store", "events")

# Imports the CLI, runs the command given (if any) as `wfe` would, then writes the names of the
# loaded modules to the file named first.
PROBE = """
import json, sys
from workflow_engine.cli import app
out, argv = sys.argv[1], sys.argv[2:]
code = 0
if argv:
    try:
        app(argv)
    except SystemExit as exc:
        code = exc.code
with open(out, "w") as f:
    json.dump({"code": code, "modules": sorted(sys.modules)}, f)
"""


@dataclass(frozen=True)
class Loaded:
    modules: set[str]

    @property
    def packages(self) -> set[str]:
        return {name.split(".")[0] for name in self.modules}

    def ours(self) -> set[str]:
        """Our modules and subpackages loaded, by name under the package (``cli``, ``engine``)."""
        return {name.split(".")[1] for name in self.modules if name.startswith("workflow_engine.")}


def loaded_by(tmp_path: Path, *argv: str) -> Loaded:
    out = tmp_path / "modules.json"
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["code"] in (0, None), proc.stderr
    return Loaded(set(report["modules"]))


def test_importing_the_cli_loads_neither_the_service_nor_any_command_s_dependencies(
    tmp_path: Path,
) -> None:
    loaded = loaded_by(tmp_path)
    assert sorted(loaded.packages & (SERVICE | COMMAND_ONLY)) == []
    assert sorted(loaded.ours()) == ["cli", "vocabulary"]


def test_help_loads_only_the_cli(tmp_path: Path) -> None:
    loaded = loaded_by(tmp_path, "--help")
    assert sorted(loaded.packages & (SERVICE | COMMAND_ONLY)) == []
    assert sorted(loaded.ours()) == ["cli", "vocabulary"]


def test_validate_loads_the_definition_checks_but_not_the_engine_or_the_service(
    tmp_path: Path,
) -> None:
    loaded = loaded_by(tmp_path, "validate", "examples/diamond.json")
    assert sorted(loaded.packages & (SERVICE | {"httpx", "structlog"})) == []
    assert {"definition", "nodes"} <= loaded.ours()
    assert sorted(loaded.ours() & {"engine", "serve", *SERVICE_LAYERS}) == []


def test_run_loads_the_engine_but_not_the_service(tmp_path: Path) -> None:
    loaded = loaded_by(tmp_path, "run", "examples/diamond.json", "-q")
    assert sorted(loaded.packages & SERVICE) == []
    assert "engine" in loaded.ours()
    assert sorted(loaded.ours() & {"serve", *SERVICE_LAYERS}) == []


def test_the_start_up_benchmark_runs_and_prints_a_row_per_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.cli", "--runs", "1", "--warmup", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("wfe ")]
    assert [row.split()[1] for row in rows] == ["--help", "validate", "run"]
