from __future__ import annotations

import os

# Hypothesis loads the plugins other packages register with it when it is first imported:
# trio's (brought by selenium, for the browser tests) warns at interpreter exit, which the
# `filterwarnings = error` setting turns into a failed run. Our tests need none of them.
os.environ.setdefault("HYPOTHESIS_NO_PLUGINS", "1")

import asyncio
import gc
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.support import mongo
from tests.support.clock import FakeClock
from tests.support.http_server import LocalHttpServer
from tests.support.nodes import Probe, make_registry
from tests.support.processes import PLUGIN_PATH
from tests.support.services import RedisServer, create_postgres_database, drop_postgres_database
from workflow_engine.api.app import create_app
from workflow_engine.api.services import Services
from workflow_engine.config import Settings
from workflow_engine.embedded_redis import EmbeddedRedis
from workflow_engine.engine.executor import Executor
from workflow_engine.nodes.registry import NodeRegistry
from workflow_engine.store import StateStore, open_store
from workflow_engine.worker.worker import WorkerService

# the test plugin (record, hold) is installed for in-process registries too
if PLUGIN_PATH not in sys.path:
    sys.path.insert(0, PLUGIN_PATH)


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Collect each test's garbage when it ends (after its event loop closed). A connection
    or socket it left open is then a ResourceWarning, an error here, in that test's teardown,
    not in whichever later test the garbage collector happens to run. What survives is frozen
    (never scanned again), so that each collection looks at one test's objects only."""
    yield
    gc.collect()
    gc.freeze()


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
REQUIRE_MONGODB = os.environ.get("CI") == "true"


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
                "DROP TABLE IF EXISTS wfe_executions, wfe_node_results, wfe_connections, "
                "wfe_workflows, wfe_schema_migrations, wfe_execution_counts, "
                "wfe_idempotency_keys"
            )
        finally:
            await conn.close()

    asyncio.run(reset())


@pytest.fixture(scope="session")
def mongodb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str | None]:
    """A MongoDB for this test session: ``WFE_TEST_MONGODB_URL`` (a real one) when set, else a
    private nx-27017 on a free port; None when neither can be had."""
    configured = mongo.configured_url()
    if configured is not None:
        yield configured
        return
    try:
        server = mongo.NxServer(tmp_path_factory.mktemp("mongodb")).start()
    except mongo.NxServerError as exc:
        if REQUIRE_MONGODB:
            pytest.fail(f"a MongoDB is required in CI but nx-27017 cannot run: {exc}")
        yield None
        return
    yield server.url
    server.stop()


def on_nx(url: str) -> bool:
    """Whether ``url`` is the nx-27017 stand-in (not a real MongoDB)."""
    return mongo.configured_url() is None and url.startswith("mongodb://127.0.0.1")


@pytest.fixture
def mongodb_url(mongodb_server: str | None) -> Iterator[str]:
    """A database of its own on the session's MongoDB, dropped afterwards."""
    if mongodb_server is None:
        pytest.skip("no MongoDB: nx-27017 is not installed and WFE_TEST_MONGODB_URL is not set")
    url = mongo.database_url(mongodb_server)
    yield url
    mongo.drop_database(url)


@pytest.fixture(params=["sqlite", "postgres", "mongodb"])
def store_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str | None
) -> Iterator[str]:
    """Each store test runs against SQLite, PostgreSQL and MongoDB, on an empty schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/wfe.db"
        return
    if request.param == "mongodb":
        url = request.getfixturevalue("mongodb_url")
        gap = request.node.get_closest_marker("nx_gap")
        if gap is not None and on_nx(url):
            request.applymarker(pytest.mark.xfail(reason=f"nx-27017: {gap.args[0]}", strict=True))
        yield url
        return
    if postgres_url is None:
        if REQUIRE_POSTGRES:
            pytest.fail("PostgreSQL is required (WFE_REQUIRE_POSTGRES=1) but cannot be reached")
        pytest.skip("PostgreSQL cannot be reached")
    _reset_postgres(postgres_url)
    yield postgres_url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[StateStore]:
    s = open_store(store_url)
    await s.migrate()
    yield s
    await s.close()


# -- the service, in-process ----------------------------------------------------------------


def make_settings(redis_url: str, store_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "redis_url": redis_url,
        "store_url": store_url,
        "queue_prefix": f"t{uuid.uuid4().hex[:10]}",  # a keyspace of its own per test
        "stalled_interval_ms": 1000,
        "lock_duration_ms": 2000,
        "shutdown_grace_s": 5,
        "worker_id": "test-worker",
        # the tests' HTTP servers listen on loopback, which a worker refuses by default (SPEC 8)
        "egress_allow": "127.0.0.0/8,::1",
        "metrics_port": 0,  # (a worker serves its probes only where a test asks for them)
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    """A Redis of the test's own, which it may stop (an outage) and start again."""
    server = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    yield server
    server.stop()


@pytest.fixture
def settings(redis_server: RedisServer, tmp_path: Path) -> Settings:
    return make_settings(redis_server.url, f"sqlite:///{tmp_path}/wfe.db")


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    opened = await Services.open(settings)
    yield opened
    await opened.close()


@pytest.fixture
async def api(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """The API in-process (ASGI transport), sharing ``services`` with the test."""
    app = create_app(services.settings, services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


@pytest.fixture
async def worker(services: Services) -> AsyncIterator[WorkerService]:
    """A worker in this process, on every queue class."""
    service = WorkerService(services.settings, services.store)
    await service.start()
    yield service
    await service.stop(grace=5)
    await service.executor.aclose()
