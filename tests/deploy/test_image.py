"""deploy/docker/Dockerfile: hadolint finds nothing, the build is multi-stage with nothing to
compile in the final stage, the build context holds what the image copies and nothing else,
and the image's commands run here exactly as the Dockerfile states them (ENTRYPOINT + CMD, the
worker's command, ENV, HEALTHCHECK) against a private Redis and a store: the API answers
/health and /ready, a workflow submitted to it is run by the worker, the health check passes
(and fails once the API is gone), and without API keys the API refuses to start.

No Docker engine runs here: what this cannot show is said in docs/deploy.md."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.processes import Process, wait_http
from tests.support.services import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
HADOLINT = Path(sys.executable).with_name("hadolint")
IF_ELSE = json.loads((ROOT / "examples" / "if_else.json").read_text())
# the official python image's own environment (docker inspect python:3.11-slim-bookworm)
BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"no {keyword} in the stage FROM {self.base}"
        return found[-1]


def parse(text: str) -> list[Stage]:
    """The Dockerfile's stages: instructions with continuation lines joined, comments dropped."""
    stages: list[Stage] = []
    logical = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", text)  # continuations (and comments in them)
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            parts = args.split()
            stages.append(Stage(parts[0], parts[2] if len(parts) > 2 else None))
        elif stages:
            stages[-1].instructions.append((keyword, args))
    return stages


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"not the exec form: {args}"
    return [str(v) for v in value]


def expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: env.get(m.group(1), ""), value)


def image_env(stage: Stage) -> dict[str, str]:
    """The final stage's environment: the base image's, then every ENV in order."""
    env = dict(BASE_ENV)
    for args in stage.all("ENV"):
        for item in shlex.split(args):
            key, _, value = item.partition("=")
            env[key] = expand(value, env)
    return env


def final_stage() -> Stage:
    return parse(DOCKERFILE.read_text())[-1]


# -- static checks ----------------------------------------------------------------------------


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_object(tmp_path: Path) -> None:
    """The linter runs and has opinions: a Dockerfile written carelessly fails it."""
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\nRUN apt-get install gcc\nRUN cd /app\n")
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(careless)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest tag


def test_multi_stage_non_root_and_nothing_to_compile_at_run_time() -> None:
    stages = parse(DOCKERFILE.read_text())
    assert len(stages) == 2
    builder, final = stages
    assert builder.name == "builder"
    assert re.fullmatch(r"python:\$\{PYTHON_VERSION\}-slim-\w+", final.base)
    assert any("pip wheel" in run for run in builder.all("RUN"))
    runs = " ".join(final.all("RUN"))
    assert "--no-index" in runs  # installed from the builder's wheels only
    for tool in ("apt-get", "gcc", "build-essential", "pip wheel"):
        assert tool not in runs
    user = final.last("USER").split(":")[0]
    assert user.isdigit()
    assert int(user) != 0
    assert exec_form(final.last("ENTRYPOINT")) == ["wfe"]
    assert exec_form(final.last("CMD")) == ["api"]
    assert final.last("HEALTHCHECK")
    assert final.last("EXPOSE") == image_env(final)["WFE_PORT"]


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule, closely enough for this file: patterns in order, the last
    that matches the path or one of its parent directories decides; ``!`` re-includes."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        cleaned = pattern.removeprefix("!").strip("/")
        if any(fnmatch.fnmatchcase(c, cleaned) for c in candidates):
            ignored = not negated
    return ignored


def test_the_build_context_holds_what_the_image_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = [
        token
        for stage in parse(DOCKERFILE.read_text())
        for args in stage.all("COPY")
        if "--from=" not in args
        for token in [t for t in args.split() if not t.startswith("--")][:-1]  # all but target
    ]
    assert {"pyproject.toml", "README.md", "src", "deploy/docker/healthcheck.py"} <= set(sources)
    for source in sources:
        path = ROOT / source
        files = [path] if path.is_file() else list(path.rglob("*.py"))
        assert files, source
        for file in files:
            assert not dockerignored(str(file.relative_to(ROOT)), patterns), file
    for left_out in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/conftest.py",
        ".wfe/wfe.db",
        "docs/deploy.md",
        "src/workflow_engine/__pycache__/cli.cpython-311.pyc",
    ):
        assert dockerignored(left_out, patterns), left_out


# -- the image's commands, run here -------------------------------------------------------------


@dataclass
class Image:
    """The final stage's commands and environment mapped onto this machine: /opt/venv is this
    test run's virtualenv, the files COPY puts on the PATH are the repository's."""

    env: dict[str, str]
    entrypoint: list[str]
    cmd: list[str]
    healthcheck: list[str]
    workdir: Path

    def argv(self, *command: str) -> list[str]:
        argv = [*self.entrypoint, *(command or self.cmd)]
        found = shutil.which(argv[0], path=self.env["PATH"])
        assert found is not None, f"{argv[0]} is not on the image's PATH"
        return [found, *argv[1:]]


@pytest.fixture
def image(tmp_path: Path) -> Image:
    final = final_stage()
    bin_dir = tmp_path / "usr-local-bin"
    bin_dir.mkdir()
    for args in final.all("COPY"):
        *_, source, target = args.split()
        if "--from=" not in args and target.startswith("/usr/local/bin/"):
            (bin_dir / Path(target).name).symlink_to(ROOT / source)
    env = {
        key: value.replace("/opt/venv", sys.prefix).replace(
            "/usr/local/bin", f"{bin_dir}:/usr/local/bin"
        )
        for key, value in image_env(final).items()
    }
    healthcheck = final.last("HEALTHCHECK")
    assert " CMD " in f" {healthcheck} "
    workdir = tmp_path / final.last("WORKDIR").strip("/")
    workdir.mkdir(parents=True)
    return Image(
        env=env,
        entrypoint=exec_form(final.last("ENTRYPOINT")),
        cmd=exec_form(final.last("CMD")),
        healthcheck=exec_form(healthcheck.split(" CMD ", 1)[1]),
        workdir=workdir,
    )


def deployment_env(redis_server: RedisServer, store_url: str, key: str) -> dict[str, str]:
    """What compose's env file or the Kubernetes Secret adds; a port of the test's own instead
    of the image's 8000 (as ``docker run -e WFE_PORT=...``), and a keyspace of its own."""
    return {
        "WFE_REDIS_URL": redis_server.url,
        "WFE_STORE_URL": store_url,
        "WFE_API_KEYS": f"acme=sha256:{hashlib.sha256(key.encode()).hexdigest()}",
        "WFE_QUEUE_PREFIX": f"img{time.monotonic_ns()}",
        "WFE_PORT": str(free_port()),
    }


def run_healthcheck(image: Image, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The HEALTHCHECK command, as Docker runs it inside the container (same env, same cwd)."""
    found = shutil.which(image.healthcheck[0], path=env["PATH"])
    assert found is not None, f"{image.healthcheck[0]} is not on the image's PATH"
    return subprocess.run(
        [found, *image.healthcheck[1:]],
        env=env,
        cwd=image.workdir,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_image_commands_serve_and_run_a_workflow(
    image: Image, redis_server: RedisServer, tmp_path: Path
) -> None:
    key = "wfe_test_key"
    env = {**image.env, **deployment_env(redis_server, f"sqlite:///{image.workdir}/wfe.db", key)}
    base = f"http://127.0.0.1:{env['WFE_PORT']}"
    assert run_healthcheck(image, env).returncode == 1  # nothing serves yet: unhealthy
    api = Process(image.argv(), env, cwd=image.workdir)
    worker = Process(image.argv("worker"), env, cwd=image.workdir)
    try:
        assert api.proc.args[0] == str(Path(sys.prefix) / "bin" / "wfe")
        wait_http(f"{base}/health")
        ready = httpx.get(f"{base}/ready", timeout=5)
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"redis": "ok", "store": "ok"}
        checked = run_healthcheck(image, env)
        assert checked.returncode == 0, checked.stderr
        worker.wait_for("worker started")
        auth = {"authorization": f"Bearer {key}"}
        body = {"workflowDefinition": IF_ELSE, "inputs": {"total": 500}}
        submitted = httpx.post(f"{base}/api/workflow/execute", json=body, headers=auth)
        assert submitted.status_code == 202, submitted.text
        status_url = f"{base}/api/workflow/status/{submitted.json()['executionId']}"
        deadline = time.monotonic() + 30
        while (status := httpx.get(status_url, headers=auth).json())["context"]["status"] in {
            "pending",
            "running",
        } and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status["context"]["status"] == "completed"
        assert status["result"] == {"tier": "vip", "total": 500}
        # docker stop: SIGTERM, then both end on their own, cleanly
        assert api.stop() == 0
        assert worker.stop() == 0
        assert run_healthcheck(image, env).returncode == 1
    finally:
        api.stop()
        worker.stop()
    # the JSON logs of production (WFE_LOG_JSON from the image's ENV)
    assert any(line.startswith("{") and '"worker started"' in line for line in worker.lines)


def test_the_image_refuses_to_serve_without_api_keys(
    image: Image, redis_server: RedisServer
) -> None:
    """The image listens on 0.0.0.0 (WFE_HOST): without keys that would be an open API."""
    env = {**image.env, **deployment_env(redis_server, f"sqlite:///{image.workdir}/wfe.db", "k")}
    env.pop("WFE_API_KEYS")
    assert env["WFE_HOST"] == "0.0.0.0"
    api = Process(image.argv(), env, cwd=image.workdir)
    assert api.wait_exit(30) == 2
    refusal = "refusing to listen on 0.0.0.0 without API keys"
    assert any(refusal in line for line in api.lines), api.lines
