"""The ``workflow-engine`` / ``wfe`` command line."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from workflow_engine.definition.expressions import ExpressionEngine
from workflow_engine.definition.loader import LoadError, load_document, parse_assignment
from workflow_engine.definition.validate import find_problems
from workflow_engine.engine.executor import Executor
from workflow_engine.engine.hooks import ExecutionHooks, NodeFinished, NodeRetrying
from workflow_engine.engine.results import ExecutionOutcome
from workflow_engine.engine.status import NodeStatus
from workflow_engine.errors import DefinitionError, InputValidationError, Problem
from workflow_engine.monitor.logging import configure_logging
from workflow_engine.nodes.registry import NodeRegistry

app = typer.Typer(
    name="workflow-engine",
    help="Run FastGPT/Dify-style workflow graphs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False, soft_wrap=True)

STATUS_MARKS = {
    NodeStatus.COMPLETED: "[green]✓[/]",
    NodeStatus.FAILED: "[red]✗[/]",
    NodeStatus.SKIPPED: "[dim]-[/]",
    NodeStatus.CANCELLED: "[yellow]■[/]",
}


def _dump(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode()


def _print_problems(title: str, problems: list[Problem]) -> None:
    err.print(f"[red]{title}[/] ({len(problems)} problem{'s' if len(problems) != 1 else ''}):")
    for problem in problems:
        err.print(f"  {problem.path}: {problem.message}", markup=False)


def _load(path: Path) -> Any:
    try:
        return load_document(path)
    except LoadError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="Workflow definition (JSON or YAML).")],
) -> None:
    """Check a definition; print every problem with its JSON path (exit 1 if any)."""
    raw = _load(file)
    problems = find_problems(raw, NodeRegistry.default(), ExpressionEngine())
    if problems:
        _print_problems(f"{file} is invalid", problems)
        raise typer.Exit(1)
    nodes, edges = len(raw.get("nodes", [])), len(raw.get("edges", []))
    err.print(f"[green]✓[/] {file}: workflow '{raw['id']}' is valid ({nodes} nodes, {edges} edges)")


class _ConsoleProgress(ExecutionHooks):
    async def on_node_retry(self, event: NodeRetrying) -> None:
        err.print(
            f"[yellow]↻[/] {event.node_id} attempt {event.attempt} failed "
            f"({event.error['message']}); retrying in {event.delay:g}s",
            markup=True,
        )

    async def on_node_complete(self, event: NodeFinished) -> None:
        r = event.result
        took = (
            f" {r.duration_ms:.1f} ms"
            if r.duration_ms is not None and r.status != "skipped"
            else ""
        )
        mark = STATUS_MARKS.get(r.status, "?")
        line = f"{mark} {r.node_id} [dim]({r.node_type})[/] {r.status}{took}"
        if r.error:
            line += f": {r.error['message']}"
        err.print(line)


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="Workflow definition (JSON or YAML).")],
    input: Annotated[
        list[str] | None,
        typer.Option(
            "--input", "-i", help="An input as key=value (value parsed as JSON if it can be)."
        ),
    ] = None,
    inputs_file: Annotated[
        Path | None, typer.Option("--inputs-file", help="A JSON or YAML file of inputs.")
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the whole execution record, not only the result.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    timeout: Annotated[
        float | None, typer.Option(help="Fail the execution after this many seconds.")
    ] = None,
) -> None:
    """Run a workflow in this process (no Redis) and print its result as JSON on stdout."""
    configure_logging("WARNING")
    raw = _load(file)
    inputs: dict[str, Any] = {}
    if inputs_file is not None:
        loaded = _load(inputs_file)
        if not isinstance(loaded, dict):
            err.print(f"[red]error:[/] {inputs_file} must hold a JSON object")
            raise typer.Exit(1)
        inputs.update(loaded)
    try:
        inputs.update(parse_assignment(item) for item in input or [])
    except LoadError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    outcome = asyncio.run(_run(raw, inputs, None if quiet else _ConsoleProgress(), timeout))
    sys.stdout.write(_dump(outcome.to_dict() if json_output else outcome.result) + "\n")
    if not outcome.ok:
        error = outcome.error or {}
        where = f" at node '{error['nodeId']}'" if error.get("nodeId") else ""
        err.print(
            f"[red]execution {outcome.status}{where}:[/] {error.get('message', '')}", markup=True
        )
        raise typer.Exit(1)


async def _run(
    raw: Any, inputs: dict[str, Any], hooks: ExecutionHooks | None, deadline: float | None
) -> ExecutionOutcome:
    async with Executor() as executor:
        try:
            plan = executor.compile(raw)
        except DefinitionError as exc:
            _print_problems("invalid workflow definition", exc.problems)
            raise typer.Exit(1) from None
        try:
            run = executor.start(plan, inputs, hooks=hooks, timeout=deadline)
            return await run.wait()
        except InputValidationError as exc:
            _print_problems("invalid inputs", exc.problems)
            raise typer.Exit(1) from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
