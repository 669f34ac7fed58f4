"""Every Redis key and channel name of ours, in one place. BullMQ's own keys live under
``{prefix}:{queue}:...``; ours under ``{prefix}:wfe:...`` so one prefix scopes a deployment."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "wfe"

    @property
    def bullmq_prefix(self) -> str:
        """The ``prefix`` option given to every BullMQ Queue and Worker."""
        return self.prefix

    def bullmq_marker(self, queue: str) -> str:
        """BullMQ's marker set of a queue: idle workers block on it (BZPOPMIN) to hear of jobs."""
        return f"{self.bullmq_prefix}:{queue}:marker"

    def _ours(self, *parts: str) -> str:
        return ":".join((self.prefix, "wfe", *parts))

    @property
    def cancel_channel(self) -> str:
        """Pub/sub channel on which cancel requests reach every worker."""
        return self._ours("cancel")

    def events(self, execution_id: str) -> str:
        """Stream of an execution's events; the stream id is the event id."""
        return self._ours("events", execution_id)

    def callbacks(self, execution_id: str) -> str:
        """List of an execution's completion callback deliveries (the latest last)."""
        return self._ours("callbacks", execution_id)

    def checkpoint(self, execution_id: str) -> str:
        """Hash of a running execution's finished nodes (the fast copy a resumed run reads)."""
        return self._ours("checkpoint", execution_id)

    def maintenance(self, name: str) -> str:
        """Coordination keys of the periodic jobs that one worker at a time runs."""
        return self._ours("maintenance", name)

    def client_index(self, tenant_id: str, client_id: str) -> str:
        """Stream of the executions a tenant's client submitted (one entry per execution)."""
        return self._ours("client", tenant_id, client_id)

    def tenant_active(self, tenant_id: str) -> str:
        """Sorted set of a tenant's executions in flight (queued, running), scored by the time
        they were added or last confirmed: its size is the tenant's active count."""
        return self._ours("tenant", tenant_id, "active")

    def tenant_bucket(self, tenant_id: str) -> str:
        """Hash of a tenant's submit token bucket (tokens, at)."""
        return self._ours("tenant", tenant_id, "bucket")
