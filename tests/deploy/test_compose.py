"""docker-compose.yml: valid against the Compose Specification's JSON schema (vendored in
tests/deploy/schemas), the seed's services with health checks gating start order, secrets only
in git-ignored env files, and settings the service accepts."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from typing import Any

import jsonschema
import pytest
import yaml

from tests.support.deploy import ROOT, SCHEMAS, settings_from

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|API_KEYS|TOKEN", re.IGNORECASE)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def schema_problems(document: dict[str, Any]) -> list[str]:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return [
        f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in validator_class(schema).iter_errors(document)
    ]


def env_file(name: str) -> dict[str, str]:
    """The example of a compose env file: KEY=VALUE lines, # comments."""
    values: dict[str, str] = {}
    for line in (ROOT / f"{name}.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def test_the_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    assert schema_problems(compose) == []


def test_the_schema_check_catches_mistakes(compose: dict[str, Any]) -> None:
    misspelt = copy.deepcopy(compose)
    misspelt["services"]["worker"]["deploy"]["replica"] = 2
    wrong_type = copy.deepcopy(compose)
    wrong_type["services"]["redis"]["healthcheck"]["retries"] = [10]
    bad_condition = copy.deepcopy(compose)
    bad_condition["services"]["nginx"]["depends_on"]["api"]["condition"] = "service_ready"
    for broken in (misspelt, wrong_type, bad_condition):
        assert schema_problems(broken)


def test_the_seed_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"redis", "postgres", "mongodb", "api", "worker", "nginx"}
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    assert "--appendonly yes" in " ".join(redis["command"])
    assert "--maxmemory-policy noeviction" in " ".join(redis["command"])  # BullMQ needs it
    assert "redis_data:/data" in redis["volumes"]
    assert "postgres_data:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert services["mongodb"]["profiles"] == ["mongo"]
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["api"]["deploy"]["replicas"] == 2
    assert services["api"]["command"] == ["api"]
    assert services["worker"]["command"] == ["worker"]
    for name in ("api", "worker"):
        build = services[name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).is_file()
    mounts = services["nginx"]["volumes"]
    assert "./deploy/nginx/nginx.conf:/etc/nginx/nginx.conf:ro" in mounts
    assert set(compose["volumes"]) == {"redis_data", "postgres_data", "mongo_data"}


def test_start_order_waits_for_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, (name, dependency)
            check = services[dependency].get("healthcheck")
            if check is None:  # our image's HEALTHCHECK applies
                assert "build" in services[dependency], dependency
                assert "\nHEALTHCHECK " in DOCKERFILE.read_text()
            else:
                assert check.get("test"), dependency
                assert not check.get("disable"), dependency
    # the API's health check is the image's (HEALTHCHECK); the worker has no port to check
    assert "healthcheck" not in services["api"]
    assert services["worker"]["healthcheck"] == {"disable": True}


def test_no_secret_in_the_compose_file(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        environment = service.get("environment", {})
        assert isinstance(environment, dict)
        assert not [k for k in environment if SECRET_NAME.search(k)], name
    text = COMPOSE.read_text()
    assert "change-me" not in text
    assert not re.search(r"://[^/\s:]+:[^@\s$]+@", text)  # no credentials in a URL


def test_env_files_are_examples_and_the_real_ones_are_ignored(compose: dict[str, Any]) -> None:
    names = {f for s in compose["services"].values() for f in s.get("env_file", [])}
    assert names == {
        "deploy/compose/redis.env",
        "deploy/compose/postgres.env",
        "deploy/compose/mongo.env",
        "deploy/compose/wfe.env",
    }
    for name in names:
        assert (ROOT / f"{name}.example").is_file()
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", name], cwd=ROOT, check=False, timeout=10
        )
        assert ignored.returncode == 0, f"{name} is not git-ignored"


def test_the_settings_are_accepted_and_consistent(compose: dict[str, Any]) -> None:
    wfe = env_file("deploy/compose/wfe.env")
    for name in ("api", "worker"):
        settings = settings_from({**wfe, **compose["services"][name].get("environment", {})})
        assert settings.redis_url.endswith("@redis:6379/0")
        assert settings.api_keys
    # the example passwords line up, so that the copies work once each is changed alike
    redis_password = env_file("deploy/compose/redis.env")["REDIS_PASSWORD"]
    postgres = env_file("deploy/compose/postgres.env")
    assert f":{redis_password}@redis:" in wfe["WFE_REDIS_URL"]
    assert (
        f"{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}@postgres:5432/"
        f"{postgres['POSTGRES_DB']}"
    ) in wfe["WFE_STORE_URL"]


def test_the_worker_is_given_the_time_to_drain(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    drain = settings_from(
        {**env_file("deploy/compose/wfe.env"), **worker["environment"]}
    ).shutdown_grace_s
    stop_grace = int(worker["stop_grace_period"].removesuffix("s"))
    assert stop_grace >= drain + 10
