from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.support.clock import FakeClock
from tests.support.http_server import LocalHttpServer
from tests.support.nodes import Probe, make_registry
from tests.support.services import RedisServer, create_postgres_database, drop_postgres_database
from workflow_engine.engine.executor import Executor
from workflow_engine.nodes.registry import NodeRegistry
from workflow_engine.store import StateStore, open_store


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


# -- real services -----------------------------------------------------------------------------

REQUIRE_POSTGRES = os.environ.get("WFE_REQUIRE_POSTGRES") == "1"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server for this test session, on a free port."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    """A fresh PostgreSQL database for this test session (None when unreachable)."""
    url = asyncio.run(create_postgres_database())
    yield url
    if url is not None:
        asyncio.run(drop_postgres_database(url))


def _reset_postgres(url: str) -> None:
    async def reset() -> None:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            await conn.execute(
                "DROP TABLE IF EXISTS wfe_executions, wfe_node_results, wfe_schema_migrations"
            )
        finally:
            await conn.close()

    asyncio.run(reset())


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str | None) -> str:
    """Each store test runs against SQLite and PostgreSQL, on an empty schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/wfe.db"
    if postgres_url is None:
        if REQUIRE_POSTGRES:
            pytest.fail("PostgreSQL is required (WFE_REQUIRE_POSTGRES=1) but cannot be reached")
        pytest.skip("PostgreSQL cannot be reached")
    _reset_postgres(postgres_url)
    return postgres_url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[StateStore]:
    s = open_store(store_url)
    await s.migrate()
    yield s
    await s.close()
