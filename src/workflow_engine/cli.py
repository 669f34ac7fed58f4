"""The ``workflow-engine`` / ``wfe`` command line.

Each command imports what it needs in its body: ``wfe --help`` and ``wfe validate`` need
neither FastAPI, uvicorn, Redis, the stores, the SDK nor the executor, 0.9 s of imports
together. At the top: typer and rich only. ``tests/test_cli_imports.py`` keeps it so;
``python -m benchmarks.cli`` times the start of three commands.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from workflow_engine.vocabulary import ExecutionStatus

if TYPE_CHECKING:
    from collections.abc import Coroutine, Iterator

    from workflow_engine.client import Event, InputWait, WorkflowEngineClient
    from workflow_engine.client.models import Status, Wire
    from workflow_engine.config import Settings
    from workflow_engine.connections import ConnectionResolver
    from workflow_engine.engine.hooks import ExecutionHooks
    from workflow_engine.engine.results import ExecutionOutcome
    from workflow_engine.errors import Problem

app = typer.Typer(
    name="workflow-engine",
    help="Run FastGPT/Dify-style workflow graphs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False, soft_wrap=True)

# --help shows these: they come from the vocabulary, which costs nothing to import (the
# config module would cost pydantic, the SDK httpx and websockets)
EXIT_WAITING = 3
"""``submit --wait``: the execution waits for an answer (``wfe resume``); 1 is a failure."""


def _print_version(value: bool) -> None:
    if value:
        from workflow_engine import __version__  # (the package's __init__ holds only that)

        sys.stdout.write(f"workflow-engine {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Run FastGPT/Dify-style workflow graphs."""


def _dump(value: Any) -> str:
    import orjson

    return orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode()


def _wire(model: Wire) -> str:
    """A response model as the API sent it."""
    return _dump(model.model_dump(mode="json", by_alias=True, exclude_unset=True)) + "\n"


def _print_problems(title: str, problems: list[Problem]) -> None:
    err.print(f"[red]{title}[/] ({len(problems)} problem{'s' if len(problems) != 1 else ''}):")
    for problem in problems:
        err.print(f"  {problem.path}: {problem.message}", markup=False)


def _load(path: Path) -> Any:
    from workflow_engine.definition.loader import LoadError, load_document

    try:
        return load_document(path)
    except LoadError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None


def _inputs(assignments: list[str] | None, inputs_file: Path | None) -> dict[str, Any]:
    """--inputs-file first, then each --input key=value over it."""
    from workflow_engine.definition.loader import LoadError, parse_assignment

    inputs: dict[str, Any] = {}
    if inputs_file is not None:
        loaded = _load(inputs_file)
        if not isinstance(loaded, dict):
            err.print(f"[red]error:[/] {inputs_file} must hold a JSON object")
            raise typer.Exit(1)
        inputs.update(loaded)
    try:
        inputs.update(parse_assignment(item) for item in assignments or [])
    except LoadError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    return inputs


def _native(file: Path, raw: Any) -> tuple[Any, str]:
    """Our definition of a loaded document: itself, or a FastGPT export translated (exit 1
    with every problem when it cannot be); and what to say of its source."""
    from workflow_engine.errors import DefinitionError
    from workflow_engine.fastgpt.graph import is_fastgpt
    from workflow_engine.fastgpt.translate import translate

    if not is_fastgpt(raw):
        return raw, ""
    try:
        return translate(raw).definition, ", translated from FastGPT"
    except DefinitionError as exc:
        _print_problems(f"{file} is invalid", exc.problems)
        raise typer.Exit(1) from None


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="Workflow definition (JSON or YAML).")],
) -> None:
    """Check a definition; print every problem with its JSON path (exit 1 if any)."""
    from workflow_engine.definition.expressions import ExpressionEngine
    from workflow_engine.definition.validate import inspect_definition
    from workflow_engine.nodes.registry import NodeRegistry

    raw, source = _native(file, _load(file))
    findings = inspect_definition(raw, NodeRegistry.default(), ExpressionEngine())
    for warning in findings.warnings:  # likely a typo, but it runs
        line = f"[yellow]warning[/] {warning.path}: {warning.message}"
        err.print(line, markup=True, highlight=False)
    if findings.problems:
        _print_problems(f"{file} is invalid", findings.problems)
        raise typer.Exit(1)
    nodes, edges = len(raw.get("nodes", [])), len(raw.get("edges", []))
    err.print(
        f"[green]✓[/] {file}: workflow '{raw['id']}' is valid ({nodes} nodes, {edges} edges"
        f"{source})"
    )


def _console_progress() -> ExecutionHooks:
    """Hooks that print each node's end (and each retry) on stderr. The class is made here
    because its base, ``ExecutionHooks``, comes with the engine, which only ``run`` loads."""
    from workflow_engine.engine.hooks import ExecutionHooks, NodeFinished, NodeRetrying
    from workflow_engine.vocabulary import NodeStatus

    marks = {
        NodeStatus.COMPLETED: "[green]✓[/]",
        NodeStatus.FAILED: "[red]✗[/]",
        NodeStatus.SKIPPED: "[dim]-[/]",
        NodeStatus.CANCELLED: "[yellow]■[/]",
    }

    class ConsoleProgress(ExecutionHooks):
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
            mark = marks.get(r.status, "?")
            line = f"{mark} {r.node_id} [dim]({r.node_type})[/] {r.status}{took}"
            if r.error:
                line += f": {r.error['message']}"
            err.print(line)

    return ConsoleProgress()


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
    import asyncio

    from workflow_engine.monitor.logging import configure_logging

    configure_logging("WARNING")
    raw, _ = _native(file, _load(file))
    inputs = _inputs(input, inputs_file)
    outcome = asyncio.run(_run(raw, inputs, None if quiet else _console_progress(), timeout))
    if json_output or outcome.ok:  # a failure has no result: stdout stays empty
        sys.stdout.write(_dump(outcome.to_dict() if json_output else outcome.result) + "\n")
    if not outcome.ok:
        error = outcome.error
        _print_failure(
            str(outcome.status), error.node_id if error else None, error.message if error else ""
        )
        raise typer.Exit(1)


def _print_failure(status: str, node_id: str | None, message: str) -> None:
    """``execution failed at node 'boom': card declined``, on stderr."""
    where = f" at node '{node_id}'" if node_id else ""
    err.print(f"[red]execution {status}{where}:[/] {message}", markup=True)


def _run_connections() -> ConnectionResolver | None:
    """The ``WFE_CONNECTIONS__*`` of the environment (``llm`` nodes), if any is set."""
    if not any(key.startswith("WFE_CONNECTIONS__") for key in os.environ):
        return None
    from pydantic import ValidationError

    from workflow_engine.connections import environment_connections

    try:
        return environment_connections()
    except ValidationError as exc:
        problems = "; ".join(
            f"WFE_{'__'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        err.print(f"[red]configuration error:[/] {problems}", markup=True)
        raise typer.Exit(2) from None


async def _run(
    raw: Any, inputs: dict[str, Any], hooks: ExecutionHooks | None, deadline: float | None
) -> ExecutionOutcome:
    from workflow_engine.egress import EgressPolicy
    from workflow_engine.engine.executor import Executor
    from workflow_engine.errors import DefinitionError, InputValidationError

    try:  # (read here: ``wfe run`` loads no settings; loopback is open, SPEC 8)
        egress = EgressPolicy.parse(os.environ.get("WFE_EGRESS_ALLOW", "")).with_loopback()
    except ValueError as exc:
        err.print(f"[red]configuration error:[/] WFE_EGRESS_ALLOW: {exc}", markup=True)
        raise typer.Exit(2) from None
    connections = _run_connections()
    async with Executor(egress=egress, connections=connections) as executor:
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


# -- the service --------------------------------------------------------------------------


def _settings(**overrides: Any) -> Settings:
    import structlog

    from workflow_engine.config import ConfigError, load_settings
    from workflow_engine.monitor.logging import configure_logging

    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/] {exc}", markup=True)
        raise typer.Exit(2) from None
    configure_logging(settings.log_level, json=settings.log_json)
    structlog.contextvars.bind_contextvars(workerId=settings.worker_id)
    return settings


def _serve(main: Coroutine[Any, Any, None]) -> None:
    from workflow_engine import serve
    from workflow_engine.config import ConfigError
    from workflow_engine.embedded_redis import EmbeddedRedisError

    try:
        serve.run(main)
    except (ConfigError, EmbeddedRedisError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


@app.command()
def dev(
    port: Annotated[int | None, typer.Option(help="Port (default: WFE_PORT, PORT, 8000).")] = None,
    host: Annotated[str | None, typer.Option(help="Address (default: WFE_HOST, loopback).")] = None,
) -> None:
    """API + worker + an embedded Redis + SQLite in ./.wfe — nothing to configure."""
    from workflow_engine import serve

    settings = _settings(port=port, host=host, store_url=_dev_store_url())
    _check_port(settings.host, settings.port)
    _serve(serve.serve_dev(settings, lambda text: err.print(text, markup=False)))


def _check_port(host: str, port: int) -> None:
    """Exit with one line when something listens on the port already, before anything starts
    (uvicorn would fail only once Redis, the store and the worker are up, and then stop them
    all). Bound as uvicorn binds (``SO_REUSEADDR``): a port in TIME_WAIT is free."""
    import errno
    import socket

    if port == 0:
        return
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except OSError:
        return  # an unknown host: uvicorn says so
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return  # (not ours to explain: uvicorn's error says it)
            err.print(
                f"[red]error:[/] port {port} on {host} is taken (another wfe dev or api?); "
                f"choose another with --port N or WFE_PORT=N",
                markup=True,
            )
            raise typer.Exit(2) from None


def _dev_store_url() -> str | None:
    from workflow_engine.serve import DEV_DIR

    return (
        None
        if "WFE_STORE_URL" in os.environ or "MONGODB_URI" in os.environ
        else (f"sqlite:///{DEV_DIR / 'wfe.db'}")
    )


@app.command()
def api(
    port: Annotated[int | None, typer.Option(help="Port (default: WFE_PORT, PORT, 8000).")] = None,
    host: Annotated[str | None, typer.Option(help="Address (default: WFE_HOST, loopback).")] = None,
) -> None:
    """Serve the HTTP API (uses WFE_REDIS_URL and WFE_STORE_URL)."""
    from workflow_engine import serve

    settings = _settings(port=port, host=host)
    _check_port(settings.host, settings.port)
    _serve(serve.serve_api(settings))


@app.command()
def worker(
    queues: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated queues to work on (classes and named queues); default: all."
        ),
    ] = None,
) -> None:
    """Run a worker: takes jobs from the queues, runs them, records every result."""
    from workflow_engine import serve

    settings = _settings()
    names = (
        list(settings.queue_names)
        if queues is None
        else [q.strip() for q in queues.split(",") if q.strip()]
    )
    unknown = sorted(set(names) - set(settings.queue_names))
    if unknown or not names:
        known = ", ".join(settings.queue_names)
        err.print(f"[red]unknown queue(s):[/] {', '.join(unknown)} (known: {known})")
        raise typer.Exit(2)
    _serve(serve.serve_worker(settings, names))


@app.command()
def cleanup(
    days: Annotated[float, typer.Option(help="Remove finished executions older than this.")] = 30,
) -> None:
    """Delete finished executions (and their node results) older than --days."""
    import asyncio

    import redis.asyncio as aioredis

    from workflow_engine.keys import Keys
    from workflow_engine.redis_pool import from_url
    from workflow_engine.store import open_store
    from workflow_engine.worker.retention import forget_streams

    settings = _settings()

    async def go() -> tuple[int, str]:
        store = open_store(settings.store_url)
        try:
            await store.migrate()
            removed = await store.cleanup(days)
        finally:
            await store.close()
        redis = from_url(settings.redis_url, socket_connect_timeout=2)
        try:
            await forget_streams(redis, Keys(settings.queue_prefix), removed)
            note = ""
        except aioredis.RedisError:
            note = " (Redis unreachable: their event streams expire on their own)"
        finally:
            await redis.aclose()
        return len(removed), note

    removed, note = asyncio.run(go())
    err.print(f"removed {removed} execution(s) finished more than {days:g} day(s) ago{note}")


keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("new")
def keys_new(
    tenant: Annotated[str, typer.Option(help="The tenant (userId) the key acts for.")],
) -> None:
    """Make a key: give the key to the client, put the hashed entry in WFE_API_KEYS."""
    from workflow_engine.api.auth import new_key

    key, hashed = new_key()
    sys.stdout.write(f"key:            {key}\nWFE_API_KEYS:   {tenant}={hashed}\n")


# -- talking to a running service -----------------------------------------------------------

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="WFE_API_URL",
        help="The API's base URL.",
        show_default="http://$WFE_HOST:$WFE_PORT, else 127.0.0.1:8000",
    ),
]
KeyOption = Annotated[
    str | None, typer.Option("--key", envvar="WFE_API_KEY", help="API key (Bearer).")
]
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]"})


def _api_url(url: str | None) -> str:
    """--url (or WFE_API_URL); else where ``wfe dev`` and ``wfe api`` listen with the same
    environment: WFE_HOST (a wildcard address: this machine), WFE_PORT (or PORT, as the
    server reads it), 127.0.0.1:8000 by default."""
    if url:
        return url
    host = os.environ.get("WFE_HOST") or "127.0.0.1"
    if host in WILDCARD_HOSTS:
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    port = os.environ.get("WFE_PORT") or os.environ.get("PORT") or "8000"
    return f"http://{host}:{port}"


def _client(url: str | None, key: str | None) -> WorkflowEngineClient:
    from workflow_engine.client import WorkflowEngineClient

    return WorkflowEngineClient(_api_url(url), key)


def _call(fn: Any) -> Any:
    from workflow_engine.client import ClientError

    try:
        return fn()
    except ClientError as exc:
        err.print(f"[red]error {exc.status or ''}:[/] {exc.message}", markup=True)
        for detail in exc.details:
            err.print(f"  {detail.get('path', '')}: {detail.get('message', '')}", markup=False)
        raise typer.Exit(1) from None


@app.command()
def submit(
    file: Annotated[
        Path | None, typer.Argument(help="Workflow definition (JSON or YAML).", show_default=False)
    ] = None,
    workflow_id: Annotated[
        str | None,
        typer.Option("--workflow-id", help="Run a stored workflow instead of FILE."),
    ] = None,
    version: Annotated[
        int | None, typer.Option(help="The stored workflow's version (default: its latest).")
    ] = None,
    input: Annotated[list[str] | None, typer.Option("--input", "-i", help="key=value")] = None,
    inputs_file: Annotated[Path | None, typer.Option("--inputs-file")] = None,
    queue: Annotated[
        str | None, typer.Option("--type", help="Queue class (default: workflow).")
    ] = None,
    named_queue: Annotated[
        str | None,
        typer.Option("--queue", help="A named queue (WFE_NAMED_QUEUES); --type is its class."),
    ] = None,
    priority: Annotated[int, typer.Option(help="1 is the highest; 0: none.")] = 0,
    delay: Annotated[int, typer.Option(help="Milliseconds before it may start.")] = 0,
    client_id: Annotated[str | None, typer.Option("--client-id")] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Show progress until it ends (result on stdout; exit 1 if it fails) or waits "
            f"for input (the `wfe resume` command that answers it; exit {EXIT_WAITING}).",
        ),
    ] = False,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Submit a workflow (FILE, or a stored one: --workflow-id) to a running service; print the
    execution id (and, with --wait, the result)."""
    if (file is None) == (workflow_id is None):
        err.print("[red]error:[/] give either FILE or --workflow-id")
        raise typer.Exit(2)
    inputs = _inputs(input, inputs_file)
    options: dict[str, Any] = {
        "type": queue,
        "queue": named_queue,
        "priority": priority or None,
        "delay": delay or None,
        "client_id": client_id,
    }
    with _client(url, key) as client:
        if workflow_id is not None:
            submitted = _call(
                lambda: client.execute_workflow(workflow_id, inputs, version=version, **options)
            )
        elif file is not None:
            definition = _load(file)
            submitted = _call(lambda: client.execute(definition, inputs, **options))
        execution_id = submitted.execution_id
        if not wait:
            sys.stdout.write(execution_id + "\n")
            return
        final = _wait_with_progress(client, execution_id)
    _settle(final, url, key)


def _settle(final: Status, url: str | None, key: str | None) -> None:
    """How ``submit --wait`` ends: the result on stdout; or what to answer and the command
    that answers it (exit 3); or the failing node and its error, stdout empty (exit 1)."""
    from workflow_engine.client import input_waits

    context = final.context
    if context.status == "completed":
        sys.stdout.write(_dump(final.result) + "\n")
        return
    waits = input_waits(final)
    if waits:
        _print_waits(context.execution_id, waits, _resume_options(url, key))
        raise typer.Exit(EXIT_WAITING)
    error = context.error
    _print_failure(context.status, error.node_id if error else None, error.message if error else "")
    raise typer.Exit(1)


def _resume_options(url: str | None, key: str | None) -> str:
    """What ``wfe resume`` needs besides the environment this command ran in: the --url given
    on the command line; a --key given there (named, never printed)."""
    options = ""
    if url and url != os.environ.get("WFE_API_URL"):
        options += f" --url {shlex.quote(url)}"
    if key and key != os.environ.get("WFE_API_KEY"):
        options += " --key KEY"
    return options


def _print_waits(execution_id: str, waits: list[InputWait], options: str) -> None:
    from workflow_engine.client import example_answer

    err.print(f"[yellow]{execution_id} is waiting for input[/]", markup=True)
    for wait in waits:
        node = f" --node {shlex.quote(wait.node_id)}" if len(waits) > 1 else ""
        answer = _compact(example_answer(wait.schema))
        until = f" (answer before {wait.timeout_at})" if wait.timeout_at else ""
        err.print(f"  {wait.node_id}: {wait.prompt or '(no prompt)'}{until}", markup=False)
        if wait.schema:
            err.print(f"    schema: {_compact(wait.schema)}", markup=False)
        err.print(
            f"    answer: wfe resume {shlex.quote(execution_id)}{node} "
            f"--input {shlex.quote(answer)}{options}",
            markup=False,
        )


def _compact(value: Any) -> str:
    """One line of JSON, spaced to be read (and typed back)."""
    import json

    return json.dumps(value, ensure_ascii=False, default=str)


def _wait_with_progress(client: WorkflowEngineClient, execution_id: str) -> Status:
    """Follow the execution's live events (SSE, resumed after a dropped connection) with a
    progress bar until it ends, or parks on a ``wait_input``; then return its status (with
    node results when it waits: what for)."""
    from contextlib import closing

    from rich.progress import BarColumn, Progress, TextColumn

    from workflow_engine.client import input_waits

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        console=err,
        transient=False,
    ) as bar:
        task = bar.add_task(f"{execution_id} pending", total=100)

        def follow() -> Status | None:
            with closing(client.events(execution_id)) as events:
                for event in events:
                    bar.update(task, **_progress_of(execution_id, event))
                    if event.type != "execution.waiting":
                        continue
                    # waiting for time or a child execution ends by itself; for input, not
                    parked = client.get_status(execution_id, nodes=True)
                    if input_waits(parked):
                        return parked
            return None

        parked: Status | None = _call(follow)
        if parked is not None:
            return parked
        status: Status = _call(lambda: client.get_status(execution_id))
        return status


def _progress_of(execution_id: str, event: Event) -> dict[str, Any]:
    """What an event changes on the progress bar."""
    if event.type == "execution.progress":
        current = event.data.get("currentNode")
        where = f" · {current}" if current else ""
        return {
            "completed": event.data.get("percentage", 0),
            "description": f"{execution_id} running{where}",
        }
    if event.type == "execution.waiting":
        progress = event.data.get("progress") or {}
        return {
            "completed": progress.get("percentage", 0),
            "description": f"{execution_id} waiting",
        }
    if event.type == "execution.started":
        return {"description": f"{execution_id} running"}
    if event.final:
        state = event.type.removeprefix("execution.")
        return {"completed": 100, "description": f"{execution_id} {state}"}
    return {}


@app.command()
def status(
    execution_id: Annotated[str, typer.Argument()],
    nodes: Annotated[bool, typer.Option("--nodes", help="Include node results.")] = False,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Print an execution's status JSON."""
    with _client(url, key) as client:
        sys.stdout.write(_wire(_call(lambda: client.get_status(execution_id, nodes=nodes))))


@app.command()
def cancel(
    execution_id: Annotated[str, typer.Argument()],
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Cancel an execution."""
    with _client(url, key) as client:
        sys.stdout.write(_wire(_call(lambda: client.cancel(execution_id))))


@app.command()
def stats(url: UrlOption = None, key: KeyOption = None) -> None:
    """Queue counts and execution counts."""
    with _client(url, key) as client:
        sys.stdout.write(_wire(_call(client.stats)))


@app.command("ls")
def ls(
    status: Annotated[
        ExecutionStatus | None, typer.Option("--status", help="Only executions in this status.")
    ] = None,
    workflow_id: Annotated[
        str | None, typer.Option("--workflow-id", help="Only executions of this workflow.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 20,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON list of contexts.")] = False,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """The tenant's executions, newest first: id, status, workflow id, creation time."""
    from functools import partial

    from workflow_engine.client import Context

    items: list[Context] = []
    cursor: str | None = None
    with _client(url, key) as client:
        while len(items) < limit:  # the API's pages hold at most 200
            page = _call(
                partial(
                    client.executions,
                    status=status,
                    workflow_id=workflow_id,
                    limit=min(200, limit - len(items)),
                    cursor=cursor,
                )
            )
            items += page.items
            cursor = page.next_cursor
            if cursor is None:
                break
    if json_output:
        wire = [item.model_dump(mode="json", by_alias=True, exclude_unset=True) for item in items]
        sys.stdout.write(_dump(wire) + "\n")
    else:
        for item in items:
            sys.stdout.write(
                f"{item.execution_id}\t{item.status}\t{item.workflow_id}\t{item.created_at or ''}\n"
            )
    if cursor is not None:
        err.print(f"(the newest {limit}; more with a larger --limit)", markup=False)


@app.command()
def events(
    execution_id: Annotated[str, typer.Argument(metavar="ID")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Then the live events, until it ends.")
    ] = False,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Print an execution's events as JSON lines (--follow: until it ends).

    Without --follow, what it recorded so far: an ended execution's events up to its final
    one; a pending, running or waiting one's until no event comes for a second."""
    import orjson

    with _client(url, key) as client:

        def emit() -> None:
            stream: Iterator[Event]
            if follow or client.get_status(execution_id).final:
                stream = client.events(execution_id)  # ends after the final event
            else:
                stream = client.replay(execution_id)
            for event in stream:
                sys.stdout.write(
                    orjson.dumps(
                        event.model_dump(mode="json", by_alias=True, exclude_unset=True)
                    ).decode()
                )
                sys.stdout.write("\n")
                sys.stdout.flush()  # a line as it happens, also into a pipe

        _call(emit)


@app.command()
def resume(
    execution_id: Annotated[str, typer.Argument(metavar="ID")],
    answer: Annotated[
        str, typer.Option("--input", "-i", help="The answer, JSON (checked against the schema).")
    ],
    node: Annotated[
        str | None, typer.Option("--node", help="The waiting node (when several wait).")
    ] = None,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Answer the wait_input an execution waits on; print {executionId, nodeId, status}."""
    import orjson

    try:
        value = orjson.loads(answer)
    except orjson.JSONDecodeError as exc:
        err.print(f"[red]error:[/] --input is not JSON ({exc}); a string is '\"...\"'")
        raise typer.Exit(2) from None
    with _client(url, key) as client:
        resumed = _call(lambda: client.resume(execution_id, value, node_id=node))
    sys.stdout.write(_wire(resumed))


@app.command()
def rerun(
    execution_id: Annotated[str, typer.Argument(metavar="ID")],
    from_node: Annotated[
        str, typer.Option("--from", metavar="NODE", help="Run this node and what follows it.")
    ],
    input: Annotated[
        list[str] | None,
        typer.Option("--input", "-i", help="key=value; given, they replace the first inputs."),
    ] = None,
    inputs_file: Annotated[Path | None, typer.Option("--inputs-file")] = None,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Run an ended execution again from a node; print the new execution id.

    The new execution reuses the results of every node upstream of --from and runs the rest."""
    inputs = _inputs(input, inputs_file) if input or inputs_file else None
    with _client(url, key) as client:
        submitted = _call(lambda: client.rerun(execution_id, from_node, inputs=inputs))
    sys.stdout.write(submitted.execution_id + "\n")


schedules_app = typer.Typer(
    help="Schedules (submit with repeat): list them; rm ID.", invoke_without_command=True
)
app.add_typer(schedules_app, name="schedules")


def _options_go_after(ctx: typer.Context) -> None:
    """A group's ``--url``/``--key`` name the server of its listing only: given before a
    subcommand (``wfe queues --url X pause NAME``), they would be ignored and the subcommand
    would act on another server; refused instead."""
    from typer._click.core import ParameterSource

    given = [
        f"--{name}"
        for name in ("url", "key")
        if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
    ]
    if given:
        raise typer.BadParameter(
            f"put {' and '.join(given)} after the command: "
            f"wfe {ctx.info_name} {ctx.invoked_subcommand} ... {given[0]} ..."
        )


@schedules_app.callback()
def schedules_ls(
    ctx: typer.Context,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON list.")] = False,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Without a command: the tenant's schedules, soonest first.

    One line each: id, repeat, next run, workflow id, ticks so far."""
    if ctx.invoked_subcommand is not None:
        _options_go_after(ctx)
        return
    with _client(url, key) as client:
        listed = _call(client.schedules)
    if json_output:
        wire = [item.model_dump(mode="json", by_alias=True, exclude_unset=True) for item in listed]
        sys.stdout.write(_dump(wire) + "\n")
        return
    for item in listed:
        repeat = item.repeat
        when = f"cron {repeat.cron}" if repeat.cron else f"every {repeat.every}ms"
        when += f" {repeat.tz}" if repeat.tz else ""
        when += f" limit {repeat.limit}" if repeat.limit else ""
        sys.stdout.write(
            f"{item.schedule_id}\t{when}\t{item.next_run_at or ''}\t{item.workflow_id or ''}"
            f"\titerations={item.iterations}\n"
        )


@schedules_app.command("rm")
def schedules_rm(
    schedule_id: Annotated[str, typer.Argument(metavar="ID")],
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Delete a schedule: no tick starts after it; the executions it started stay."""
    with _client(url, key) as client:
        _call(lambda: client.delete_schedule(schedule_id))
    err.print(f"deleted schedule {schedule_id}", markup=False)


import_app = typer.Typer(help="Translate another product's workflows.", no_args_is_help=True)
app.add_typer(import_app, name="import")


@import_app.command("fastgpt")
def import_fastgpt(
    file: Annotated[Path, typer.Argument(help="A FastGPT workflow export (JSON).")],
    workflow_id: Annotated[
        str | None, typer.Option("--id", help="The definition's id (default: from its name).")
    ] = None,
) -> None:
    """Print our definition of a FastGPT workflow (exit 1 with every problem if it cannot
    run here: each node whose type needs what this service does not have, by id and type)."""
    from workflow_engine.errors import DefinitionError
    from workflow_engine.fastgpt.translate import translate

    try:
        translation = translate(_load(file), workflow_id=workflow_id)
    except DefinitionError as exc:
        _print_problems(f"{file} cannot run here", exc.problems)
        raise typer.Exit(1) from None
    if translation.left_out:
        err.print(
            "left out (no run reaches them, or configuration only): "
            + ", ".join(translation.left_out),
            markup=False,
        )
    sys.stdout.write(_dump(translation.definition) + "\n")


workflows_app = typer.Typer(help="Stored workflows (per tenant, versioned).", no_args_is_help=True)
app.add_typer(workflows_app, name="workflows")


@workflows_app.command("push")
def workflows_push(
    file: Annotated[Path, typer.Argument(help="Workflow definition (JSON or YAML).")],
    workflow_id: Annotated[
        str | None, typer.Option("--id", help="Store it as this id (default: its own `id`).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Default: the definition's name.")] = None,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Store a definition as the next version of its id; print {workflowId, version}."""
    definition = _load(file)
    with _client(url, key) as client:
        saved = _call(lambda: client.save_workflow(definition, workflow_id=workflow_id, name=name))
    sys.stdout.write(_wire(saved))


@workflows_app.command("ls")
def workflows_ls(
    json_output: Annotated[bool, typer.Option("--json", help="One JSON list.")] = False,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """The stored workflows, by id: the latest version of each."""
    from functools import partial

    from workflow_engine.client import WorkflowSummary

    items: list[WorkflowSummary] = []
    cursor: str | None = None
    with _client(url, key) as client:
        while True:  # every page
            page = _call(partial(client.workflows, limit=200, cursor=cursor))
            items += page.items
            cursor = page.next_cursor
            if cursor is None:
                break
    if json_output:
        wire = [item.model_dump(mode="json", by_alias=True) for item in items]
        sys.stdout.write(_dump(wire) + "\n")
        return
    for item in items:
        sys.stdout.write(
            f"{item.workflow_id}\tv{item.version}\t{item.updated_at}\t{item.name or ''}\n"
        )


@workflows_app.command("rm")
def workflows_rm(
    workflow_id: Annotated[str, typer.Argument(metavar="ID")],
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Delete a stored workflow: it cannot be executed any more; its executions stay."""
    with _client(url, key) as client:
        _call(lambda: client.delete_workflow(workflow_id))
    err.print(f"deleted workflow {workflow_id}", markup=False)


queues_app = typer.Typer(
    help="Queue classes (an admin key): list; pause, resume, clean, retry-failed one.",
    invoke_without_command=True,
)
app.add_typer(queues_app, name="queues")


@queues_app.callback()
def queues_ls(ctx: typer.Context, url: UrlOption = None, key: KeyOption = None) -> None:
    """Without a command: each queue class, paused or not, with its jobs by state."""
    if ctx.invoked_subcommand is not None:
        _options_go_after(ctx)
        return
    with _client(url, key) as client:
        listed = _call(client.queues)
    for queue in listed:
        jobs = " ".join(f"{state}={count}" for state, count in queue["jobs"].items())
        paused = "paused" if queue["paused"] else "running"
        sys.stdout.write(f"{queue['name']}\t{paused}\tworkers={queue['workers']}\t{jobs}\n")


QueueName = Annotated[str, typer.Argument(metavar="NAME", help="A queue class or a named queue.")]


@queues_app.command("pause")
def queues_pause(name: QueueName, url: UrlOption = None, key: KeyOption = None) -> None:
    """Workers stop taking its jobs (running ones go on); submits still queue."""
    with _client(url, key) as client:
        sys.stdout.write(_dump(_call(lambda: client.queue_action(name, "pause"))) + "\n")


@queues_app.command("resume")
def queues_resume(name: QueueName, url: UrlOption = None, key: KeyOption = None) -> None:
    with _client(url, key) as client:
        sys.stdout.write(_dump(_call(lambda: client.queue_action(name, "resume"))) + "\n")


@queues_app.command("clean")
def queues_clean(
    name: QueueName,
    state: Annotated[
        str, typer.Option(help="completed, failed, delayed or wait (their executions cancelled).")
    ] = "completed",
    grace_ms: Annotated[int, typer.Option("--grace-ms", help="Keep younger jobs.")] = 0,
    limit: Annotated[int, typer.Option(help="Remove at most this many.")] = 1000,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Remove jobs in a state; the executions of removed waiting or delayed jobs are cancelled."""
    with _client(url, key) as client:
        cleaned = _call(
            lambda: client.queue_action(name, "clean", state=state, graceMs=grace_ms, limit=limit)
        )
    sys.stdout.write(_dump(cleaned) + "\n")


@queues_app.command("retry-failed")
def queues_retry_failed(name: QueueName, url: UrlOption = None, key: KeyOption = None) -> None:
    """Send its failed jobs back: their executions pending again, then run."""
    with _client(url, key) as client:
        sys.stdout.write(_dump(_call(lambda: client.queue_action(name, "retry-failed"))) + "\n")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
