"""Configuration from the environment (prefix ``WFE_``), strict: an unknown ``WFE_`` variable is
an error, not a silent no-op. The seed's names (``REDIS_HOST``, ``REDIS_PORT``,
``REDIS_PASSWORD``, ``REDIS_DB``, ``MONGODB_URI``, ``PORT``, ``WORKER_ID``) are honoured."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from workflow_engine.connections import ConnectionSettings
from workflow_engine.egress import EgressPolicy
from workflow_engine.errors import WorkflowEngineError
from workflow_engine.maintenance import MaintenanceWindow, zone
from workflow_engine.vocabulary import QUEUE_NAMES as QUEUE_NAMES  # (was defined here)

QueueName = Literal["realtime", "workflow", "scheduled", "background"]


class ConfigError(WorkflowEngineError):
    """The configuration is invalid; the message says which variable and why."""


class QueueSettings(BaseModel):
    """One queue class: job defaults (BullMQ) and the worker's concurrency for it."""

    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(3, ge=1)
    backoff_ms: int = Field(2000, ge=0, description="First retry delay, doubling (0: no backoff).")
    timeout_s: float | None = Field(300, gt=0, description="Execution timeout (None: none).")
    remove_on_complete: int = Field(100, ge=0)
    remove_on_fail: int = Field(50, ge=0)
    concurrency: int = Field(16, ge=1, le=10_000)


class RealtimeQueue(QueueSettings):
    attempts: int = Field(2, ge=1)
    backoff_ms: int = Field(0, ge=0)
    timeout_s: float | None = Field(30, gt=0)
    remove_on_complete: int = Field(50, ge=0)
    remove_on_fail: int = Field(20, ge=0)


class ScheduledQueue(QueueSettings):
    attempts: int = Field(5, ge=1)
    backoff_ms: int = Field(5000, ge=0)
    timeout_s: float | None = Field(None, gt=0)
    remove_on_complete: int = Field(1000, ge=0)
    remove_on_fail: int = Field(100, ge=0)


class BackgroundQueue(QueueSettings):
    timeout_s: float | None = Field(1800, gt=0)
    concurrency: int = Field(4, ge=1, le=10_000)


class Queues(BaseModel):
    """The four queue classes of SPEC section 3, each with the seed's defaults."""

    model_config = ConfigDict(extra="forbid")

    realtime: RealtimeQueue = Field(default_factory=RealtimeQueue)
    workflow: QueueSettings = Field(default_factory=QueueSettings)
    scheduled: ScheduledQueue = Field(default_factory=ScheduledQueue)
    background: BackgroundQueue = Field(default_factory=BackgroundQueue)


QUEUE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
"""A named queue's name: it is a BullMQ queue name (a Redis key part) and the ``queue`` column."""


class NamedQueue(BaseModel):
    """A queue by business type (``WFE_NAMED_QUEUES__<NAME>__CLASS`` and the other fields): a
    BullMQ queue of its own that takes its class's defaults, each one overridable here."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    queue_class: QueueName = Field(
        "workflow", alias="class", description="The class whose defaults it inherits."
    )
    attempts: int | None = Field(None, ge=1)
    backoff_ms: int | None = Field(None, ge=0)
    timeout_s: float | None = Field(None, gt=0)
    remove_on_complete: int | None = Field(None, ge=0)
    remove_on_fail: int | None = Field(None, ge=0)
    concurrency: int | None = Field(None, ge=1, le=10_000)

    def over(self, base: QueueSettings) -> QueueSettings:
        """The class's settings with the fields set here in their place."""
        changed = {name: getattr(self, name) for name in self.model_fields_set - {"queue_class"}}
        return base.model_copy(update=changed)


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WFE_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    redis_url: str = "redis://127.0.0.1:6379/0"
    store_url: str = "sqlite+aiosqlite:///.wfe/wfe.db"
    queue_prefix: str = Field("wfe", description="Prefix of every Redis key of ours and BullMQ's.")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    worker_id: str = Field(default_factory=_default_worker_id)
    api_keys: str = Field(
        "",
        description="Comma-separated tenant=key or tenant=sha256:<hex>; tenant:admin=... adds "
        "the admin scope; empty: no auth (one tenant, anonymous).",
    )
    queues: Queues = Field(default_factory=Queues)
    named_queues: dict[str, NamedQueue] = Field(
        default_factory=dict,
        description="Queues by business type (WFE_NAMED_QUEUES__<NAME>__CLASS=workflow and "
        "the class's fields to override), chosen per execution by `queue`.",
    )
    stalled_interval_ms: int = Field(30_000, ge=1000)
    drain_delay_s: int = Field(
        1,
        ge=1,
        description="An idle worker looks at its queues at least this often (seconds).",
    )
    max_stalled_count: int = Field(3, ge=0)
    lock_duration_ms: int = Field(30_000, ge=1000)
    rate_limit_max: int | None = Field(None, ge=1, description="Jobs per rate_limit_duration_ms.")
    rate_limit_duration_ms: int = Field(60_000, ge=1)
    max_queued: int = Field(
        0,
        ge=0,
        description="Refuse (429) a submit when its queue holds this many jobs (0: no cap).",
    )
    tenant_max_active: int = Field(
        10_000,
        ge=0,
        description="Executions queued or running per tenant; past it execute answers 429 "
        "(0: no cap).",
    )
    tenant_rate: float = Field(
        0,
        ge=0,
        description="Submits per second per tenant (token bucket, a second's burst); past it "
        "429 (0: no limit).",
    )
    shutdown_grace_s: float = Field(25, ge=0)
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_nodes: int = Field(1000, ge=1)
    max_depth: int = Field(
        10, ge=0, description="How deep `workflow` nodes may nest child executions."
    )
    max_loop_results: int = Field(
        100_000,
        ge=1,
        description="Loop body node results one execution may record, all its loops together "
        "(nested loops multiply); a loop that would pass it fails with `limit`.",
    )
    min_repeat_ms: int = Field(
        1000, ge=1, description="Shortest `repeat.every` a schedule may have (milliseconds)."
    )
    group_commit_ms: float = Field(
        0, ge=0, description="Extra wait before a store batch commits (0: commit at once)."
    )
    progress_interval_ms: int = Field(
        250, ge=0, description="Persist an execution's progress at most this often."
    )
    events_maxlen: int = Field(10_000, ge=10, description="Events kept per execution stream.")
    events_ttl_s: int = Field(86_400, ge=1, description="Event streams expire this long after.")
    ws_heartbeat_s: float = Field(25, gt=0, description="WebSocket heartbeat interval.")
    ws_queue_size: int = Field(1000, ge=1, description="Events buffered per client connection.")
    cancel_wait_s: float = Field(5, ge=0, description="How long cancel waits for the worker.")
    group_commit_max: int = Field(1000, ge=1)
    park_after_s: float = Field(
        10, ge=0, description="A delay longer than this parks the execution (frees the worker)."
    )
    checkpoint_ttl_s: int = Field(
        7 * 86_400, ge=60, description="Redis checkpoints of running executions expire after."
    )
    maintenance_window: str | None = Field(
        None,
        description="Daily HH:MM-HH:MM (in maintenance_tz) when schedule ticks are skipped.",
    )
    maintenance_tz: str = "UTC"
    retention_days: float = Field(
        30, ge=0, description="Finished executions are removed after this many days (0: never)."
    )
    cleanup_interval_s: float = Field(3600, gt=0, description="How often a worker cleans up.")
    callback_secret: SecretStr | None = Field(
        None,
        description="Signs every tenant's completion callbacks (X-WFE-Signature: sha256=HMAC "
        "of the body); default: each tenant's own key, derived from WFE_SECRET_KEY.",
    )
    callback_attempts: int = Field(
        8, ge=1, le=50, description="Deliveries of a completion callback before giving up."
    )
    metrics_port: int = Field(
        9464,
        ge=0,
        le=65535,
        description="Where a worker serves /metrics, /health and /ready (0: it serves none).",
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="When set, /metrics (the API's and each worker's) answers only requests "
        "with Authorization: Bearer <this token>; /health and /ready stay open.",
    )
    metrics_tenant_label: bool = Field(
        False,
        description="Count ended executions by tenant too (wfe_tenant_executions_total): "
        "one series per tenant, so only with a bounded number of tenants.",
    )
    recovery_interval_s: float = Field(
        300, gt=0, description="How often a worker looks for executions whose job was lost."
    )
    recovery_after_s: float = Field(
        60, gt=0, description="An active execution unchanged this long may have lost its job."
    )
    log_level: str = "INFO"
    log_json: bool = False
    expression_timeout_ms: float = Field(
        100, gt=0, description="CPU time one template/expression evaluation may use (SPEC 8)."
    )
    expression_max_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest value one evaluation may produce (bytes)."
    )
    max_output_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Largest node output (JSON bytes); larger fails it."
    )
    code_timeout_s: float = Field(
        10, gt=0, le=3600, description="CPU seconds one `code` node run may use (SPEC 9)."
    )
    code_memory_mb: int = Field(
        256, ge=32, le=65536, description="Memory one `code` node run may use (MiB)."
    )
    code_pool_size: int = Field(
        4, ge=1, le=256, description="Warm sandbox processes per language per worker."
    )
    egress_allow: str = Field(
        "",
        description="What workflows may reach besides public addresses (SPEC 8): comma list "
        "of CIDRs, host names, '*'. Empty: no loopback, private, link-local...",
    )
    connections: dict[str, ConnectionSettings] = Field(
        default_factory=dict,
        description="Server-wide connections by name (WFE_CONNECTIONS__<NAME>__BASE_URL, "
        "__API_KEY, __MODEL), used by llm nodes when the tenant has none of that name.",
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Encrypts stored connections' keys (Fernet): a comma list, the first "
        "encrypts, all decrypt (rotation). wfe dev makes one in .wfe/ when unset.",
    )

    @field_validator("named_queues")
    @classmethod
    def _named(cls, value: dict[str, NamedQueue]) -> dict[str, NamedQueue]:
        for name in value:
            if name in QUEUE_NAMES or not QUEUE_NAME.fullmatch(name):
                raise ValueError(
                    f"{name!r} cannot name a queue: 1-32 of a-z 0-9 _ - (starting with a "
                    f"letter or digit), not one of the classes {', '.join(QUEUE_NAMES)}"
                )
        return value

    @field_validator("egress_allow")
    @classmethod
    def _egress(cls, value: str) -> str:
        EgressPolicy.parse(value)  # (ValueError names the bad entry)
        return value

    @field_validator("maintenance_window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value:
            MaintenanceWindow.parse(value)
        return value or None

    @field_validator("maintenance_tz")
    @classmethod
    def _tz(cls, value: str) -> str:
        zone(value)
        return value

    def window(self) -> MaintenanceWindow | None:
        if self.maintenance_window is None:
            return None
        return MaintenanceWindow.parse(self.maintenance_window, self.maintenance_tz)

    @property
    def queue_names(self) -> tuple[str, ...]:
        """The four classes, then the named queues: every BullMQ queue of the deployment."""
        return QUEUE_NAMES + tuple(sorted(self.named_queues))

    def queue_class(self, name: str) -> str:
        """The class of a queue: itself for a class, the declared one for a named queue."""
        named = self.named_queues.get(name)
        return name if named is None else named.queue_class

    def queue(self, name: str) -> QueueSettings:
        """A class's settings, or a named queue's (its class's, with its own overrides);
        ``KeyError`` for a name that is neither."""
        named = self.named_queues.get(name)
        if named is not None:
            return named.over(self.queue(named.queue_class))
        if name not in QUEUE_NAMES:
            raise KeyError(name)
        settings: QueueSettings = getattr(self.queues, name)
        return settings


def _legacy(environ: Mapping[str, str]) -> dict[str, Any]:
    """Values from the seed's variable names, used when the WFE_ name is not set."""
    values: dict[str, Any] = {}
    if "WFE_REDIS_URL" not in environ and "REDIS_HOST" in environ:
        password = environ.get("REDIS_PASSWORD")
        auth = f":{quote(password, safe='')}@" if password else ""
        host, port, db = (
            environ["REDIS_HOST"],
            environ.get("REDIS_PORT", "6379"),
            environ.get("REDIS_DB", "0"),
        )
        values["redis_url"] = f"redis://{auth}{host}:{port}/{db}"
    if "WFE_STORE_URL" not in environ and "MONGODB_URI" in environ:
        values["store_url"] = environ["MONGODB_URI"]
    if "WFE_PORT" not in environ and "PORT" in environ:
        values["port"] = environ["PORT"]
    if "WFE_WORKER_ID" not in environ and "WORKER_ID" in environ:
        values["worker_id"] = environ["WORKER_ID"]
    return values


def load_settings(**overrides: Any) -> Settings:
    """Read the environment; raise ``ConfigError`` naming every bad or unknown variable.
    ``overrides`` (from command-line flags) win over the environment."""
    known = {f"WFE_{name.upper()}" for name in Settings.model_fields}
    unknown = sorted(
        key
        for key in os.environ
        if key.startswith("WFE_") and key.split("__")[0] not in known and key not in _NOT_SETTINGS
    )
    if unknown:
        raise ConfigError(
            f"unknown setting{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known))})"
        )
    values = {**_legacy(os.environ), **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"WFE_{'__'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        raise ConfigError(f"invalid configuration: {problems}") from None


# Variables with our prefix that are read elsewhere (tests, scripts), not settings.
_NOT_SETTINGS = frozenset(
    {
        "WFE_REQUIRE_POSTGRES",
        "WFE_VENV",
        "WFE_TEST_POSTGRES_URL",
        "WFE_TEST_MONGODB_URL",
        "WFE_API_URL",
        "WFE_API_KEY",
        "WFE_IMAGE",  # docker-compose.yml: the image and the host port of nginx
        "WFE_HTTP_PORT",
        "WFE_TEST_OPENAI_BASE_URL",  # tests/nodes/test_llm.py: a real provider, when given
        "WFE_TEST_OPENAI_API_KEY",
        "WFE_TEST_OPENAI_MODEL",
    }
)
