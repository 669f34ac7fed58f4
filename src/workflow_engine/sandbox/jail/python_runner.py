"""The warm Python sandbox process (a fork server). It never runs user code itself: each job
runs in a fresh fork (``python_child``), so nothing one run does (a patched module, a leftover
file, a global) is seen by the next, and a run's CPU and memory limits are that process's own.

Started by the pool as ``python -I -S -B -c <bootstrap>`` with an empty environment. Reads jobs
``{"id", "code", "inputs"}`` as JSON lines on stdin; writes ``{"ready"}`` once, then per job
``{"id", "log"}`` lines as the child prints and one ``{"id", "done", "result"|"error"}``.
The child's output is relayed, not passed through: the runner bounds it, checks its shape, and
enforces the run's CPU (``/proc/<pid>/stat``) and wall-clock limits.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import IO, Any

from workflow_engine.sandbox.jail.python_child import run_child, send
from workflow_engine.sandbox.jail.python_lock import Lock

PRELOADED = (
    *("json", "math", "re", "datetime", "time", "random", "collections", "itertools"),
    *("functools", "string", "base64", "hashlib", "hmac", "decimal", "fractions"),
    *("statistics", "copy", "textwrap", "unicodedata", "operator", "heapq", "bisect"),
    *("uuid", "typing", "dataclasses", "enum", "urllib.parse", "html", "zlib", "struct"),
    *("binascii", "calendar", "pprint", "csv", "io"),
)
"""Imported before the fork: a run finds them loaded, at no cost."""
_SLACK = 64 * 1024
_TICK = os.sysconf("SC_CLK_TCK")
_SIGNALS = {
    signal.SIGSYS: ("sandbox", "the code made a system call the sandbox forbids (network, "
                    "child processes, threads, signals, ...) and was stopped"),
    signal.SIGXFSZ: ("sandbox", "the code wrote a file larger than the sandbox allows"),
    signal.SIGXCPU: ("timeout", "the code used its CPU time limit"),
    signal.SIGSEGV: ("sandbox", "the code crashed the interpreter (segmentation fault)"),
}  # fmt: skip


@dataclass(slots=True)
class Config:
    cpu_s: float
    wall_s: float
    memory_bytes: int
    max_output: int
    max_log: int
    pyseccomp: str
    src: str
    """Where ``workflow_engine`` was imported from: off ``sys.path`` once the runner is up."""

    @property
    def max_bytes(self) -> int:
        return self.max_output + self.max_log + _SLACK


@dataclass(slots=True)
class Relay:
    """What one child wrote, read as it comes."""

    job_id: str
    out: IO[bytes]
    config: Config
    pending: bytes = b""
    total: int = 0
    final: dict[str, Any] | None = None
    broken: str | None = None
    logs: list[str] = field(default_factory=list)

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        if self.total > self.config.max_bytes:
            self.broken = f"the code wrote more than {self.config.max_bytes} bytes of output"
            return
        *lines, self.pending = (self.pending + data).split(b"\n")
        for line in lines:
            self._message(line)

    def _message(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if not isinstance(message, dict) or self.final is not None:
            self.broken = "the code wrote to the sandbox's control channel"
        elif isinstance(message.get("log"), str):
            send(self.out, {"id": self.job_id, "log": message["log"]})
        elif "result" in message:
            self.final = {"result": message["result"]}
        elif _is_error(message.get("error")):
            self.final = {"error": message["error"]}
        else:
            self.broken = "the code wrote to the sandbox's control channel"


def _is_error(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and value.get("type") in ("code_error", "sandbox")
        and isinstance(value.get("message"), str)
    )


def main() -> None:
    config = Config(**json.loads(sys.argv[1]))
    stdlib = [p for p in sys.path if p != config.src and os.path.isdir(p)]
    for name in PRELOADED:
        __import__(name)
    lock = Lock.prepare(int(config.cpu_s) + 1, config.memory_bytes, stdlib, config.pyseccomp)
    sys.path[:] = stdlib  # user code imports the standard library only
    out = sys.stdout.buffer
    send(out, {"ready": True, "landlock": lock.landlock_abi})
    for line in sys.stdin.buffer:
        job = json.loads(line)
        job.update(maxOutput=config.max_output, maxLog=config.max_log)
        final = run_job(job, lock, config, out)
        send(out, {"id": job["id"], "done": True, **final})


def run_job(job: dict[str, Any], lock: Lock, config: Config, out: IO[bytes]) -> dict[str, Any]:
    # inside the runner's own directory, which the pool removes whatever happens to the runner
    private_dir = tempfile.mkdtemp(prefix="run-", dir=os.getcwd())
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        run_child(job, lock, write_end, private_dir)
    os.close(write_end)
    try:
        return _watch(Relay(str(job["id"]), out, config), read_end, pid)
    finally:
        os.close(read_end)
        shutil.rmtree(private_dir, ignore_errors=True)


def _watch(relay: Relay, read_end: int, pid: int) -> dict[str, Any]:
    """Relay the child's output until it exits; kill it at a limit. Returns the final part
    of the ``done`` message."""
    config = relay.config
    started = time.monotonic()
    exited = os.pidfd_open(pid)
    over: tuple[str, str] | None = None
    with selectors.DefaultSelector() as selector:
        selector.register(read_end, selectors.EVENT_READ)
        selector.register(exited, selectors.EVENT_READ)
        open_ends = 2
        while open_ends:
            cpu = _cpu_seconds(pid)
            wall = time.monotonic() - started
            if over is None and cpu >= config.cpu_s:
                over = ("timeout", f"the code used its {config.cpu_s:g} s of CPU time")
            elif over is None and wall >= config.wall_s:
                over = ("timeout", f"the code ran longer than {config.wall_s:g} s (wall clock)")
            elif over is None and relay.broken is not None:
                over = ("sandbox", relay.broken)
            if over is not None:
                _kill(pid)
            wait = max(min(config.cpu_s - cpu, config.wall_s - wall), 0.005)
            for key, _ in selector.select(wait):
                if key.fd == exited:
                    selector.unregister(exited)
                    open_ends -= 1
                    continue
                data = os.read(read_end, 1 << 16)
                if data:
                    relay.feed(data)
                else:
                    selector.unregister(read_end)
                    open_ends -= 1
    os.close(exited)
    _, status = os.waitpid(pid, 0)
    if over is not None:
        return {"error": {"type": over[0], "message": over[1]}}
    if relay.final is not None:
        return relay.final
    return {"error": _death(status)}


def _death(status: int) -> dict[str, str]:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        known = _SIGNALS.get(signal.Signals(number))
        kind, message = known or ("sandbox", f"the code was killed by signal {number}")
        return {"type": kind, "message": message}
    code = os.WEXITSTATUS(status)
    return {
        "type": "sandbox",
        "message": f"the code ended the sandbox process (exit status {code}) without a result "
        "(out of memory?)",
    }


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
