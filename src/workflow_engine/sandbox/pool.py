"""Warm sandbox processes per language: started on first use, reused across runs, at most
``pool_size`` per language; one that was killed or broke the rules is dropped and a fresh one
started when next needed."""

from __future__ import annotations

import asyncio
from typing import Any

from workflow_engine.sandbox.limits import SandboxLimits
from workflow_engine.sandbox.process import LogSink, SandboxProcess
from workflow_engine.sandbox.runners import LANGUAGES, runner_for


class LanguagePool:
    def __init__(self, language: str, limits: SandboxLimits) -> None:
        self.language = language
        self.limits = limits
        self._idle: list[SandboxProcess] = []
        self._slots = asyncio.Semaphore(limits.pool_size)
        self.started = 0
        """Processes started so far (a replaced one counts again)."""

    async def run(self, code: str, inputs: dict[str, Any], on_log: LogSink) -> Any:
        async with self._slots:
            process = await self._take()
            try:
                return await process.run(code, inputs, on_log)
            finally:
                if process.alive:
                    self._idle.append(process)
                else:
                    await process.close()

    async def _take(self) -> SandboxProcess:
        while self._idle:
            process = self._idle.pop()
            if process.alive:
                return process
            await process.close()
        process = SandboxProcess(runner_for(self.language, self.limits), self.limits)
        await process.start()
        self.started += 1
        return process

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for process in idle:
            await process.close()


class SandboxPools:
    """One ``LanguagePool`` per language, created on first use. Owned by the executor."""

    def __init__(self, limits: SandboxLimits | None = None) -> None:
        self.limits = limits if limits is not None else SandboxLimits()
        self._pools: dict[str, LanguagePool] = {}

    def pool(self, language: str) -> LanguagePool:
        if language not in LANGUAGES:
            raise ValueError(f"unknown language {language!r}")
        pool = self._pools.get(language)
        if pool is None:
            pool = self._pools[language] = LanguagePool(language, self.limits)
        return pool

    async def run(self, language: str, code: str, inputs: dict[str, Any], on_log: LogSink) -> Any:
        return await self.pool(language).run(code, inputs, on_log)

    async def aclose(self) -> None:
        await asyncio.gather(*(pool.aclose() for pool in self._pools.values()))
