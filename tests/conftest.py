from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.clock import FakeClock
from tests.support.http_server import LocalHttpServer
from tests.support.nodes import Probe, make_registry
from workflow_engine.engine.executor import Executor
from workflow_engine.nodes.registry import NodeRegistry


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def registry(probe: Probe) -> NodeRegistry:
    return make_registry(probe)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def executor(registry: NodeRegistry) -> AsyncIterator[Executor]:
    async with Executor(registry) as ex:
        yield ex


@pytest.fixture
async def fake_time_executor(registry: NodeRegistry, clock: FakeClock) -> AsyncIterator[Executor]:
    async with Executor(registry, clock=clock) as ex:
        yield ex


@pytest.fixture
async def http_server() -> AsyncIterator[LocalHttpServer]:
    server = await LocalHttpServer().start()
    yield server
    await server.stop()
