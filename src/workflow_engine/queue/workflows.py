"""Stored workflows (SPEC section 10): a tenant saves a definition under an id, each save a new
immutable version, and an execution names one (``workflowId``, ``version``) instead of sending
its definition. A saved definition passed the validation an execution's does."""

from __future__ import annotations

import re
from typing import Any, Final

from workflow_engine.errors import DefinitionError, Problem
from workflow_engine.plan import PlanCache
from workflow_engine.queue.submit import NotFound
from workflow_engine.store.base import StateStore
from workflow_engine.store.records import WorkflowRecord

WORKFLOW_ID: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$"
"""A stored workflow's id: it is a path segment of ``/api/workflows/{id}``."""


class WorkflowLibrary:
    """A tenant's stored workflows: save (validated), and find the version an execution runs."""

    def __init__(self, store: StateStore, plans: PlanCache) -> None:
        self.store = store
        self.plans = plans

    async def save(
        self,
        tenant_id: str,
        definition: dict[str, Any],
        *,
        workflow_id: str | None = None,
        name: str | None = None,
    ) -> WorkflowRecord:
        """A new version. The id: ``workflow_id``, written into the definition (so that its
        executions carry it), else the definition's own ``id``; the name: ``name``, else the
        definition's. Raises ``DefinitionError`` (paths inside the definition)."""
        if workflow_id is not None:
            definition = {**definition, "id": workflow_id}
        plan = self.plans.get(definition)
        if not re.fullmatch(WORKFLOW_ID, plan.workflow_id):
            raise DefinitionError(
                [
                    Problem(
                        "id",
                        "a stored workflow's id is 1-200 letters, digits and _.:- (starting "
                        "with a letter or digit); give another one as `id`",
                        "invalid_id",
                    )
                ]
            )
        loops = _self_references(definition.get("nodes"), plan.workflow_id, "nodes")
        if loops:
            raise DefinitionError(
                [
                    Problem(
                        path,
                        f"a `workflow` node of workflow {plan.workflow_id!r} runs "
                        f"{plan.workflow_id!r} itself: it would nest without end",
                        "self_reference",
                    )
                    for path in loops
                ]
            )
        name = name if name is not None else plan.definition.name
        return await self.store.save_workflow(tenant_id, plan.workflow_id, name, definition)

    async def get(
        self, tenant_id: str, workflow_id: str, version: int | None = None
    ) -> WorkflowRecord:
        """That version (the latest without one), with its definition; ``NotFound`` when the
        tenant has no such workflow (or deleted it) or no such version."""
        found = await self.store.get_workflow(tenant_id, workflow_id, version)
        if found is None:
            raise _not_found(workflow_id, version)
        return found

    async def runnable(
        self, tenant_id: str, workflow_id: str, version: int | None = None
    ) -> tuple[dict[str, Any], int]:
        """What an execution of it runs: (definition, version). ``NotFound`` as ``get``."""
        found = await self.store.get_workflow(tenant_id, workflow_id, version)
        if found is None or found.definition is None:
            raise _not_found(workflow_id, version)
        return found.definition, found.version


def _self_references(nodes: Any, workflow_id: str, path: str) -> list[str]:
    """The paths of the ``workflow`` nodes (loop bodies included) naming ``workflow_id``."""
    found: list[str] = []
    for index, node in enumerate(nodes if isinstance(nodes, list) else ()):
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict):
            continue
        where = f"{path}[{index}].inputs"
        if node.get("type") == "workflow" and inputs.get("workflowId") == workflow_id:
            found.append(f"{where}.workflowId")
        body = inputs.get("body")
        if isinstance(body, dict):
            found += _self_references(body.get("nodes"), workflow_id, f"{where}.body.nodes")
    return found


def _not_found(workflow_id: str, version: int | None) -> NotFound:
    which = "" if version is None else f" version {version}"
    return NotFound(f"workflow {workflow_id!r}{which} not found")
