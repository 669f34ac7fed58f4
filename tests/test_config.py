from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from workflow_engine.config import ConfigError, load_settings
from workflow_engine.queue.queues import job_defaults
from workflow_engine.store import normalize_url, open_store


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("WFE_") or key in {
            "REDIS_HOST",
            "REDIS_PORT",
            "REDIS_PASSWORD",
            "REDIS_DB",
            "MONGODB_URI",
            "PORT",
            "WORKER_ID",
        }:
            monkeypatch.delenv(key)


def test_defaults_need_no_configuration() -> None:
    settings = load_settings()
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.store_url.startswith("sqlite")
    assert settings.port == 8000
    assert settings.max_body_bytes == 10 * 1024 * 1024


def test_the_seed_queue_defaults() -> None:
    s = load_settings()
    assert job_defaults(s.queue("realtime")) == {
        "attempts": 2,
        "removeOnComplete": 50,
        "removeOnFail": 20,
    }
    assert s.queue("realtime").timeout_s == 30
    assert job_defaults(s.queue("workflow")) == {
        "attempts": 3,
        "removeOnComplete": 100,
        "removeOnFail": 50,
        "backoff": {"type": "exponential", "delay": 2000},
    }
    assert s.queue("workflow").timeout_s == 300
    assert job_defaults(s.queue("scheduled")) == {
        "attempts": 5,
        "removeOnComplete": 1000,
        "removeOnFail": 100,
        "backoff": {"type": "exponential", "delay": 5000},
    }
    assert s.queue("background").timeout_s == 1800
    assert (s.stalled_interval_ms, s.max_stalled_count) == (30_000, 3)


def test_nested_queue_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFE_QUEUES__REALTIME__CONCURRENCY", "64")
    settings = load_settings()
    assert settings.queue("realtime").concurrency == 64
    assert settings.queue("realtime").attempts == 2  # the other defaults of the class stay


def test_unknown_settings_are_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFE_REDIS_ULR", "redis://x")
    with pytest.raises(ConfigError, match="unknown setting: WFE_REDIS_ULR"):
        load_settings()


def test_misspelt_nested_setting_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFE_QUEUES__REALTIME__CONCURENCY", "64")
    with pytest.raises(ConfigError, match="WFE_QUEUES__REALTIME__CONCURENCY"):
        load_settings()


def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFE_PORT", "eighty")
    with pytest.raises(ConfigError, match="WFE_PORT"):
        load_settings()


def test_the_seed_variable_names_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_HOST", "redis.internal")
    monkeypatch.setenv("REDIS_PORT", "6380")
    monkeypatch.setenv("REDIS_PASSWORD", "p@ss")
    monkeypatch.setenv("REDIS_DB", "2")
    monkeypatch.setenv("PORT", "3000")
    monkeypatch.setenv("WORKER_ID", "worker-1")
    monkeypatch.setenv("MONGODB_URI", "mongodb://db/workflow")
    settings = load_settings()
    assert settings.redis_url == "redis://:p%40ss@redis.internal:6380/2"
    assert settings.port == 3000
    assert settings.worker_id == "worker-1"
    assert settings.store_url == "mongodb://db/workflow"
    monkeypatch.setenv("WFE_REDIS_URL", "redis://wins:1/0")
    assert load_settings().redis_url == "redis://wins:1/0"
    monkeypatch.setenv("WFE_STORE_URL", "sqlite:///wins.db")
    assert load_settings().store_url == "sqlite:///wins.db"


def test_store_urls_are_normalised_and_checked() -> None:
    assert normalize_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert normalize_url("postgres://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert normalize_url("postgresql+asyncpg://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert normalize_url("mongodb://u@h/db") == "mongodb://u@h/db"
    assert (
        normalize_url("mongodb+srv://u@cluster.example/db") == "mongodb+srv://u@cluster.example/db"
    )
    with pytest.raises(ConfigError, match="unsupported store URL scheme 'mysql'"):
        open_store("mysql://db/x")


def test_a_mongodb_url_without_the_driver_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "pymongo", None)  # as if not installed: import fails
    for url in ("mongodb://db/x", "mongodb+srv://cluster.example/x"):
        with pytest.raises(ConfigError, match=r"pip install 'workflow-engine\[mongo\]'"):
            open_store(url)


def test_the_compose_files_variables_are_not_unknown_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A shell that exports what docker-compose.yml interpolates (its image, nginx's host port)
    can still run `wfe` commands."""
    compose = (Path(__file__).resolve().parents[1] / "docker-compose.yml").read_text()
    interpolated = set(re.findall(r"\$\{(WFE_[A-Z0-9_]+)", compose))
    assert interpolated  # the file still takes some
    for name in interpolated:
        monkeypatch.setenv(name, "x")
    load_settings()


async def test_connections_come_from_the_environment_and_never_print_their_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from workflow_engine.connections import ServerConnections, environment_connections

    key = "sk-config-test-Hq4Tz8Rv"
    monkeypatch.setenv("WFE_CONNECTIONS__DEFAULT__BASE_URL", "https://api.example.com/v1")
    monkeypatch.setenv("WFE_CONNECTIONS__DEFAULT__API_KEY", key)
    monkeypatch.setenv("WFE_CONNECTIONS__LOCAL__BASE_URL", "http://127.0.0.1:11434/v1")
    monkeypatch.setenv("WFE_CONNECTIONS__LOCAL__MODEL", "qwen3")
    settings = load_settings()
    assert sorted(settings.connections) == ["default", "local"]
    assert settings.connections["default"].api_key.get_secret_value() == key
    assert settings.connections["local"].model == "qwen3"
    assert key not in repr(settings) + str(settings) + settings.model_dump_json()
    for resolver in (ServerConnections(settings.connections), environment_connections()):
        connection = await resolver.resolve("anyone", "DEFAULT")  # (names: any case)
        assert connection is not None
        assert connection.base_url == "https://api.example.com/v1"
        assert key not in repr(connection)
        assert await resolver.resolve("anyone", "other") is None
    monkeypatch.setenv("WFE_CONNECTIONS__BAD__BASE_URL", "ftp://x")
    monkeypatch.setenv("WFE_CONNECTIONS__BAD__API_KEY", key)
    with pytest.raises(ConfigError, match="WFE_CONNECTIONS__BAD__BASE_URL") as raised:
        load_settings()
    assert key not in str(raised.value)


def test_named_queues_inherit_their_class_and_override_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFE_NAMED_QUEUES__BILLING__CLASS", "realtime")
    monkeypatch.setenv("WFE_NAMED_QUEUES__BILLING__CONCURRENCY", "3")
    monkeypatch.setenv("WFE_NAMED_QUEUES__REPORTS__TIMEOUT_S", "600")
    settings = load_settings()
    assert settings.queue_names == (
        "realtime",
        "workflow",
        "scheduled",
        "background",
        "billing",
        "reports",
    )
    billing = settings.queue("billing")
    assert (billing.concurrency, billing.attempts, billing.timeout_s) == (3, 2, 30)
    reports = settings.queue("reports")  # class workflow by default
    assert (reports.timeout_s, reports.attempts, reports.backoff_ms) == (600, 3, 2000)
    assert (settings.queue_class("billing"), settings.queue_class("reports")) == (
        "realtime",
        "workflow",
    )
    assert settings.queue_class("background") == "background"
    with pytest.raises(KeyError):
        settings.queue("nowhere")


@pytest.mark.parametrize("name", ["workflow", "Bad:name", "x" * 33])
def test_a_named_queue_needs_a_name_of_its_own(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("WFE_NAMED_QUEUES", f'{{"{name}": {{"class": "background"}}}}')
    with pytest.raises(ConfigError, match=r"WFE_NAMED_QUEUES.*cannot name a queue"):
        load_settings()


def test_a_named_queue_of_an_unknown_class_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFE_NAMED_QUEUES__BILLING__CLASS", "urgent")
    with pytest.raises(ConfigError, match="WFE_NAMED_QUEUES__BILLING__CLASS"):
        load_settings()
