"""One warm sandbox process, talked to over asyncio pipes (the event loop never blocks on it).

What it writes is not trusted (a JavaScript run shares its process): every line must be a JSON
object for the current job's random id, the whole answer is bounded, and a process that breaks
the protocol, dies, or outlives the run's wall-clock limit is killed, never reused."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from workflow_engine.sandbox.errors import TIMEOUT, CodeRunError, SandboxUnavailable
from workflow_engine.sandbox.limits import SandboxLimits
from workflow_engine.sandbox.runners import Runner

START_TIMEOUT_S = 30.0
GRACE_S = 5.0
"""How long past a run's wall-clock limit the pool waits for the runner's own verdict."""
_SLACK = 64 * 1024

LogSink = Callable[[str], Awaitable[None]]


class SandboxProcess:
    def __init__(self, runner: Runner, limits: SandboxLimits) -> None:
        self.runner = runner
        self.limits = limits
        self._process: asyncio.subprocess.Process | None = None
        self._dir = tempfile.mkdtemp(prefix=f"wfe-{runner.language}-")
        self.broken = False

    @property
    def alive(self) -> bool:
        return not self.broken and self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        limits = self.limits
        self._process = await asyncio.create_subprocess_exec(
            *self.runner.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env={},
            cwd=self._dir,
            start_new_session=True,
            limit=limits.max_output_bytes + limits.max_log_bytes + _SLACK,
        )
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                ready = await self._read()
            if not isinstance(ready, dict) or ready.get("ready") is not True:
                raise SandboxUnavailable(f"the {self.runner.language} sandbox did not start")
            self.runner.after_start(self._process.pid, limits)
        except (TimeoutError, SandboxUnavailable, OSError, CodeRunError) as exc:
            await self.close()
            if isinstance(exc, SandboxUnavailable):
                raise
            raise SandboxUnavailable(
                f"the {self.runner.language} sandbox did not start: {exc}"
            ) from exc
        except BaseException:
            await self.close()
            raise

    async def run(self, code: str, inputs: dict[str, Any], on_log: LogSink) -> Any:
        """The value ``main`` returned; raises ``CodeRunError`` (its ``error_type`` says why).
        Cancelled, the process is killed (it may be mid-run)."""
        assert self._process is not None
        assert self._process.stdin is not None
        job_id = secrets.token_hex(16)  # unguessable: a run cannot answer for the next one
        try:
            self._process.stdin.write(
                orjson.dumps({"id": job_id, "code": code, "inputs": inputs}) + b"\n"
            )
            async with asyncio.timeout(self.limits.wall_s + GRACE_S):
                return await self._answer(job_id, on_log)
        except TimeoutError:
            await self.close()
            raise CodeRunError("timeout", "the code did not finish in time") from None
        except CodeRunError as exc:
            if self.runner.shared and exc.error_type == TIMEOUT:
                await self.close()  # what it left behind must not meet the next run
            raise
        except BaseException:
            await self.close()
            raise

    async def _answer(self, job_id: str, on_log: LogSink) -> Any:
        logged = 0
        while True:
            message = await self._read()
            if not isinstance(message, dict) or message.get("id") != job_id:
                await self.close()
                raise CodeRunError("sandbox", "the code broke the sandbox's protocol")
            text = message.get("log")
            if isinstance(text, str):
                if logged < self.limits.max_log_bytes + 256:  # (the runner bounds it too)
                    logged += len(text)
                    await on_log(text)
                continue
            if message.get("done") is not True:
                continue
            if "result" in message:
                return message["result"]
            error = message.get("error")
            if isinstance(error, dict) and isinstance(error.get("message"), str):
                raise CodeRunError(str(error.get("type")), error["message"])
            await self.close()
            raise CodeRunError("sandbox", "the code broke the sandbox's protocol")

    async def _read(self) -> Any:
        assert self._process is not None
        assert self._process.stdout is not None
        try:
            line = await self._process.stdout.readline()
        except (ValueError, asyncio.LimitOverrunError):  # a line over the limit
            await self.close()
            raise CodeRunError("sandbox", "the code wrote more output than allowed") from None
        if not line:
            await self.close()
            raise CodeRunError(
                "sandbox",
                f"the {self.runner.language} sandbox process died (out of memory?); it is replaced",
            )
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError:
            await self.close()
            raise CodeRunError("sandbox", "the code broke the sandbox's protocol") from None

    async def close(self) -> None:
        """Kill the process (and anything it started) and remove its directory."""
        self.broken = True
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        if process is not None and process.stdin is not None:
            process.stdin.close()
        _remove(self._dir)


def _remove(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
