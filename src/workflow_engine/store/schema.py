"""The SQL schema (SQLAlchemy Core), shared by SQLite and PostgreSQL. Table names carry a
``wfe_`` prefix so the store can share a database with an application."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

JSON = sa.JSON(none_as_null=True)
NODE_ID_LENGTH = 512

executions = sa.Table(
    "wfe_executions",
    metadata,
    sa.Column("execution_id", sa.String(64), primary_key=True),
    sa.Column("tenant_id", sa.String(200), nullable=False),
    sa.Column("workflow_id", sa.String(200), nullable=False),
    sa.Column("client_id", sa.String(200)),
    sa.Column("queue", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("metadata", JSON),
    sa.Column("definition", JSON),
    sa.Column("inputs", JSON),
    sa.Column("result", JSON),
    sa.Column("error", JSON),
    sa.Column("progress", JSON),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("idempotency_key", sa.String(200)),
    sa.Column("token_usage", JSON),  # llm nodes' usage, summed (SPEC 9); migration 3
    sa.Column("workflow_version", sa.Integer),  # a stored workflow's version; migration 4
    sa.Column("variables", JSON),  # the final execution variables (SPEC 9); migration 5
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("started_at", sa.BigInteger),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("completed_at", sa.BigInteger),
    # the API's queries: a tenant's executions newest first, a client's, a workflow's, and
    # cleanup by completion time. No index contains the status: it changes on every
    # transition, and each such index would be rewritten with it (hot path).
    sa.Index("ix_wfe_executions_tenant", "tenant_id", "execution_id"),
    sa.Index("ix_wfe_executions_client", "client_id"),
    sa.Index("ix_wfe_executions_workflow", "workflow_id", "execution_id"),
    sa.Index("ix_wfe_executions_completed", "completed_at"),
    sa.Index("ux_wfe_executions_idempotency", "tenant_id", "idempotency_key", unique=True),
)

node_results = sa.Table(
    "wfe_node_results",
    metadata,
    sa.Column("execution_id", sa.String(64), primary_key=True),
    # a loop iteration's node is "<loopId>[<index>].<bodyNodeId>" (SPEC 9); migration 6
    sa.Column("node_id", sa.String(NODE_ID_LENGTH), primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("node_type", sa.String(100), nullable=False),
    sa.Column("name", sa.String(500)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("input", JSON),
    sa.Column("output", JSON),
    sa.Column("error", JSON),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("started_at", sa.BigInteger),
    sa.Column("completed_at", sa.BigInteger),
)

connections = sa.Table(
    "wfe_connections",
    metadata,
    sa.Column("tenant_id", sa.String(200), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("base_url", sa.String(2000), nullable=False),
    sa.Column("secret", sa.Text, nullable=False),  # Fernet token: the key and headers
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

workflows = sa.Table(
    "wfe_workflows",
    metadata,
    # the key is the guard of a save: two saves that picked the same next version cannot both
    # insert it (store/sql.py retries the loser)
    sa.Column("tenant_id", sa.String(200), primary_key=True),
    sa.Column("workflow_id", sa.String(200), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(500)),
    sa.Column("definition", JSON, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("deleted_at", sa.BigInteger),
)

schema_migrations = sa.Table(
    "wfe_schema_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.BigInteger, nullable=False),
)

execution_counts = sa.Table(
    "wfe_execution_counts",
    metadata,
    # how many executions each tenant has in each status, kept by every write that creates an
    # execution, changes its status or deletes it, in that write's transaction (migration 8).
    # PostgreSQL splits a key's count by the month partition its executions are in (``bucket``,
    # so that dropping a month drops its counts) and over a few ``slot`` rows (concurrent
    # writers of one tenant do not queue on one row); SQLite keeps bucket and slot at 0.
    sa.Column("tenant_id", sa.String(200), primary_key=True),
    sa.Column("status", sa.String(16), primary_key=True),
    sa.Column("bucket", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("slot", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("n", sa.BigInteger, nullable=False),
)
