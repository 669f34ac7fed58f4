"""How each language's sandbox process is started. Both get an empty environment, a private
working directory, their own session (the pool kills the whole group) and stdin/stdout pipes."""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import workflow_engine
from workflow_engine.sandbox.errors import SandboxUnavailable
from workflow_engine.sandbox.limits import SandboxLimits

HERE = Path(__file__).parent
LANGUAGES = ("python", "javascript")


@dataclass(frozen=True, slots=True)
class Runner:
    language: str
    argv: tuple[str, ...]
    bound_data: bool = False
    """Bound the process's data segment once it is up (``RLIMIT_DATA``: what it uses at start
    plus the memory limit). Deno's V8 reserves more at start than a run may use."""
    shared: bool = False
    """Runs share the process (JavaScript; Python forks a child per run). One interrupted at
    its time limit may leave its heap, or work it scheduled, behind: its process is replaced
    rather than handed to the next run, which may be another tenant's. (Not after other
    refusals: a run could then force a process start at will, by touching ``fetch``.)"""

    def after_start(self, pid: int, limits: SandboxLimits) -> None:
        if not self.bound_data:
            return
        limit = _data_bytes(pid) + limits.memory_bytes
        resource.prlimit(pid, resource.RLIMIT_DATA, (limit, limit))


def runner_for(language: str, limits: SandboxLimits) -> Runner:
    if language == "python":
        return _python(limits)
    if language == "javascript":
        return _deno(limits)
    raise SandboxUnavailable(f"no sandbox for language {language!r}")


def _python(limits: SandboxLimits) -> Runner:
    spec = find_spec("pyseccomp")
    if spec is None or spec.origin is None:
        raise SandboxUnavailable("the Python sandbox needs pyseccomp: pip install pyseccomp")
    src = str(Path(workflow_engine.__file__).parent.parent)
    config = {
        "cpu_s": limits.timeout_s,
        "wall_s": limits.wall_s,
        "memory_bytes": limits.memory_bytes,
        "max_output": limits.max_output_bytes,
        "max_log": limits.max_log_bytes,
        "pyseccomp": spec.origin,
        "src": src,
    }
    bootstrap = (
        f"import sys; sys.path.insert(0, {src!r}); "
        "from workflow_engine.sandbox.jail.python_runner import main; main()"
    )
    # -I: no environment variables, no user site; -S: no site-packages; -B: no .pyc writes
    return Runner("python", (sys.executable, "-I", "-S", "-B", "-c", bootstrap, json.dumps(config)))


def _deno(limits: SandboxLimits) -> Runner:
    binary = _deno_binary()
    settings = [round(limits.timeout_s * 1000), limits.max_output_bytes, limits.max_log_bytes]
    argv = (
        binary,
        "run",
        "--no-prompt",  # a permission it lacks is refused, never asked for
        "--no-config",
        "--no-lock",
        "--no-remote",
        f"--v8-flags=--max-old-space-size={limits.memory_mb}",
        str(HERE / "deno_runner.js"),
        json.dumps(settings),
    )  # and no --allow-*: no network, files, environment, subprocesses, FFI
    return Runner("javascript", argv, bound_data=True, shared=True)


def _deno_binary() -> str:
    try:
        import deno  # type: ignore[import-untyped]

        found: str = deno.find_deno_bin()
        if os.access(found, os.X_OK):
            return found
    except (ImportError, FileNotFoundError):
        pass
    on_path = shutil.which("deno")
    if on_path is None:
        raise SandboxUnavailable("the JavaScript sandbox needs Deno: pip install deno")
    return on_path


def _data_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    return 0
