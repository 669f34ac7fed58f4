"""Cron schedules on BullMQ job schedulers. A schedule is a scheduler of one queue whose job
template carries the definition and inputs; each tick is a job that a worker turns into a new
execution (its own id) and runs. Removing the scheduler stops the ticks at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from croniter import croniter

from workflow_engine.clock import Clock, SystemClock
from workflow_engine.errors import InvalidRequest, Problem
from workflow_engine.ids import new_id
from workflow_engine.maintenance import zone
from workflow_engine.plan import PlanCache
from workflow_engine.queue.bullmq_adapter import find_job_scheduler
from workflow_engine.queue.fairness import RANKS, queue_priority
from workflow_engine.queue.queues import JOB_NAME, QueueSet, job_defaults
from workflow_engine.queue.submit import NotFound, QueueUnavailable, Submission
from workflow_engine.vocabulary import iso_ms

SCHEDULE_PREFIX = "sch_"
TICK_KEY = "scheduleId"
"""Job data of a tick has this key (and no ``executionId``)."""


@dataclass(frozen=True, slots=True)
class Repeat:
    """``cron`` (5 fields, in ``tz``) or ``every`` (milliseconds); at most ``limit`` ticks."""

    cron: str | None = None
    every_ms: int | None = None
    tz: str | None = None
    limit: int | None = None

    def problems(self, root: str = "repeat", min_every_ms: int = 1) -> list[Problem]:
        found: list[Problem] = []
        if (self.cron is None) == (self.every_ms is None):
            found.append(Problem(root, "give exactly one of cron and every", "invalid_repeat"))
        if self.every_ms is not None and self.every_ms < min_every_ms:
            # a tenant's every: 1 would start a thousand executions a second
            found.append(
                Problem(
                    f"{root}.every",
                    f"every must be at least {min_every_ms} ms (WFE_MIN_REPEAT_MS)",
                    "invalid_repeat",
                )
            )
        if self.cron is not None:
            fields = self.cron.split()
            if len(fields) != 5:
                found.append(
                    Problem(
                        f"{root}.cron",
                        f"a cron expression has 5 fields (minute hour day month weekday); "
                        f"{self.cron!r} has {len(fields)}",
                        "invalid_cron",
                    )
                )
            elif not croniter.is_valid(self.cron):
                found.append(
                    Problem(
                        f"{root}.cron", f"invalid cron expression {self.cron!r}", "invalid_cron"
                    )
                )
        if self.tz is not None:
            try:
                zone(self.tz)
            except ValueError as exc:
                found.append(Problem(f"{root}.tz", str(exc), "invalid_tz"))
            if self.every_ms is not None:
                found.append(Problem(f"{root}.tz", "tz applies to cron only", "invalid_repeat"))
        return found

    def bullmq_options(self) -> dict[str, Any]:
        options: dict[str, Any] = (
            {"pattern": self.cron} if self.cron is not None else {"every": self.every_ms}
        )
        if self.tz is not None:
            options["tz"] = self.tz
        if self.limit is not None:
            options["limit"] = self.limit
        return options

    def to_dict(self) -> dict[str, Any]:
        return {"cron": self.cron, "every": self.every_ms, "tz": self.tz, "limit": self.limit}


@dataclass(frozen=True, slots=True)
class Schedule:
    schedule_id: str
    queue: str
    repeat: Repeat
    template: dict[str, Any]
    next_run_ms: int | None
    iterations: int = 0

    @property
    def tenant_id(self) -> str:
        return str(self.template.get("tenantId", "anonymous"))

    def to_dict(self, *, detail: bool = False, queue_class: str = "") -> dict[str, Any]:
        """camelCase; ``type`` the queue class (``queue_class`` for a named queue), ``queue``
        the queue its ticks go to."""
        definition = self.template.get("workflowDefinition") or {}
        body: dict[str, Any] = {
            "scheduleId": self.schedule_id,
            "workflowId": definition.get("id"),
            "userId": self.tenant_id,
            "clientId": self.template.get("clientId"),
            "type": queue_class or self.queue,
            "queue": self.queue,
            "repeat": self.repeat.to_dict(),
            "iterations": self.iterations,
            "nextRunAt": iso_ms(self.next_run_ms),
            "createdAt": iso_ms(self.template.get("createdAt")),
        }
        if detail:
            body["workflowDefinition"] = definition
            body["inputs"] = self.template.get("inputs") or {}
            body["metadata"] = self.template.get("metadata") or {}
        return body


def tick_submission(data: dict[str, Any], queue: str, job_id: str) -> Submission:
    """The execution a schedule's tick starts. Its idempotency key is the tick's job id: a
    retried tick job finds the execution it started before."""
    return Submission(
        definition=data["workflowDefinition"],
        inputs=data.get("inputs") or {},
        tenant_id=data.get("tenantId") or "anonymous",
        queue=queue,
        priority=int(data.get("priority") or 0),
        client_id=data.get("clientId"),
        metadata={**(data.get("metadata") or {}), "scheduleId": data[TICK_KEY]},
        idempotency_key=f"schedule:{job_id}",
        workflow_version=data.get("workflowVersion"),
    )


class Scheduler:
    def __init__(self, queues: QueueSet, plans: PlanCache, clock: Clock | None = None) -> None:
        self.queues = queues
        self.plans = plans
        self.clock: Clock = clock if clock is not None else SystemClock()

    async def create(self, submission: Submission, repeat: Repeat) -> Schedule:
        """Raises ``DefinitionError`` / ``InputValidationError`` / ``InvalidRequest`` (nothing
        created) or ``QueueUnavailable``."""
        problems = repeat.problems(min_every_ms=self.queues.settings.min_repeat_ms)
        if problems:
            raise InvalidRequest(problems)
        plan = self.plans.get(submission.definition)
        plan.check_inputs(submission.inputs)
        schedule_id = new_id(SCHEDULE_PREFIX)
        template = {
            TICK_KEY: schedule_id,
            "workflowDefinition": submission.definition,
            "inputs": submission.inputs,
            "tenantId": submission.tenant_id,
            "clientId": submission.client_id,
            "metadata": submission.metadata,
            "priority": submission.priority,
            "createdAt": int(self.clock.now() * 1000),
        }
        if submission.workflow_version is not None:  # a stored workflow, resolved now
            template["workflowVersion"] = submission.workflow_version
        queue = self.queues[submission.queue]
        options = job_defaults(self.queues.settings.queue(submission.queue))
        # a tick takes the last place of its priority band: however many schedules a tenant
        # has, they never go before another tenant's submit (SPEC 8, queue/fairness.py)
        options["priority"] = queue_priority(submission.priority, RANKS - 1)
        try:
            await queue.upsertJobScheduler(
                schedule_id, repeat.bullmq_options(), JOB_NAME, template, options
            )
            found = await find_job_scheduler(queue, schedule_id)
        except (ValueError, TypeError) as exc:  # what bullmq itself refuses
            raise InvalidRequest([Problem("repeat", str(exc), "invalid_repeat")]) from exc
        except Exception as exc:
            raise QueueUnavailable(f"could not create the schedule: {exc}") from exc
        return (
            _schedule(submission.queue, found)
            if found
            else Schedule(schedule_id, submission.queue, repeat, template, None)
        )

    async def of_tenant(self, tenant_id: str | None) -> list[Schedule]:
        """Every schedule of the tenant (all of them without one), soonest first."""
        found: list[Schedule] = []
        for name, queue in self.queues.queues.items():
            for raw in await queue.getJobSchedulers(0, -1, True):
                schedule = _schedule(name, raw)
                if tenant_id is None or schedule.tenant_id == tenant_id:
                    found.append(schedule)
        return sorted(found, key=lambda s: (s.next_run_ms is None, s.next_run_ms or 0))

    async def get(self, schedule_id: str, tenant_id: str | None) -> Schedule:
        if schedule_id.startswith(SCHEDULE_PREFIX):
            for name, queue in self.queues.queues.items():
                raw = await find_job_scheduler(queue, schedule_id)
                if raw:
                    schedule = _schedule(name, raw)
                    if tenant_id is None or schedule.tenant_id == tenant_id:
                        return schedule
        raise NotFound(f"schedule {schedule_id} not found")

    async def delete(self, schedule_id: str, tenant_id: str | None) -> Schedule:
        """Stop it: no tick after this returns. ``NotFound`` for an unknown id."""
        schedule = await self.get(schedule_id, tenant_id)
        await self.queues[schedule.queue].removeJobScheduler(schedule_id)
        return schedule


def _schedule(queue: str, raw: dict[str, Any]) -> Schedule:
    template = (raw.get("template") or {}).get("data") or {}
    every = raw.get("every")
    repeat = Repeat(
        cron=raw.get("pattern"),
        every_ms=int(every) if every is not None else None,
        tz=raw.get("tz"),
        limit=raw.get("limit"),
    )
    next_ms = raw.get("next")
    return Schedule(
        schedule_id=str(raw.get("key")),
        queue=queue,
        repeat=repeat,
        template=template if isinstance(template, dict) else {},
        next_run_ms=int(next_ms) if next_ms is not None else None,
        iterations=int(raw.get("iterationCount") or 0),
    )
