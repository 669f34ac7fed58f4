"""Compiled plans cached by definition content: a worker sees the same definition in every job
of a workflow and compiles it once."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import orjson

from workflow_engine.plan.compiler import Compiler
from workflow_engine.plan.plan import WorkflowPlan


def definition_digest(definition: Mapping[str, Any]) -> str:
    return hashlib.blake2b(
        orjson.dumps(definition, option=orjson.OPT_SORT_KEYS), digest_size=16
    ).hexdigest()


class PlanCache:
    def __init__(self, compiler: Compiler, size: int = 256) -> None:
        self.compiler = compiler
        self.size = size
        self._plans: OrderedDict[str, WorkflowPlan] = OrderedDict()

    def get(self, definition: Mapping[str, Any]) -> WorkflowPlan:
        """The compiled plan; raises ``DefinitionError`` (not cached) when invalid."""
        key = definition_digest(definition)
        plan = self._plans.get(key)
        if plan is not None:
            self._plans.move_to_end(key)
            return plan
        plan = self.compiler.compile(definition)
        self._plans[key] = plan
        if len(self._plans) > self.size:
            self._plans.popitem(last=False)
        return plan
