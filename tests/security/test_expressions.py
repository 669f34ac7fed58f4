"""Issue 14, findings 1 and 4: the expression budget (SPEC section 8) and the node output limit.

A template that burns CPU fails with ``expression_limit`` within about the budget, and the
event loop (every other execution on the worker) gets control back; amplifying filters and
operators are refused by their arguments; an output over ``max_output_bytes`` fails its node.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
import tracemalloc
from typing import Any

import pytest

from workflow_engine.config import Settings
from workflow_engine.definition.expressions import ExpressionEngine
from workflow_engine.engine.executor import Executor
from workflow_engine.errors import ExpressionLimitError
from workflow_engine.vocabulary import ExecutionStatus

BURN = "{% for a in range(3000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}done"
SLACK_S = 0.6  # scheduling noise on a loaded machine; the unbounded burn takes ~15 s


def transform(value: Any, **fields: Any) -> dict[str, Any]:
    return {
        "id": "w",
        "nodes": [{"id": "t", "type": "transform", "inputs": {"value": value}, **fields}],
    }


def node_error(outcome: Any) -> dict[str, Any]:
    assert outcome.status is ExecutionStatus.FAILED, outcome
    error = outcome.nodes["t"].error
    assert error is not None
    return dict(error)


async def test_a_cpu_burning_template_fails_within_the_budget_and_frees_the_loop() -> None:
    async with Executor() as executor:
        burn = executor.start(executor.compile(transform(BURN, timeout=1)))
        quick = executor.start(executor.compile(transform("{{ 6 * 7 }}")))
        started = time.perf_counter()
        finished: dict[str, float] = {}

        async def timed(name: str, run: Any) -> Any:
            outcome = await run.wait()
            finished[name] = time.perf_counter() - started
            return outcome

        # both on the one event loop, the burning one first: the other runs when it yields
        burnt, other = await asyncio.gather(timed("burn", burn), timed("quick", quick))

    error = node_error(burnt)
    assert error["type"] == "expression_limit", error
    assert finished["burn"] < 0.1 + SLACK_S
    assert other.nodes["t"].output == 42
    assert finished["quick"] < 0.1 + SLACK_S  # not held back by the burn


async def test_a_node_timeout_below_the_budget_bounds_its_templates() -> None:
    async with Executor(expressions=ExpressionEngine(timeout_ms=60_000)) as executor:
        started = time.perf_counter()
        outcome = await executor.run(executor.compile(transform(BURN, timeout=0.2)))
    assert node_error(outcome)["type"] == "expression_limit"
    assert time.perf_counter() - started < 0.2 + SLACK_S


async def test_the_budget_holds_outside_the_main_thread() -> None:
    engine = ExpressionEngine()
    resolver = engine.compile_value(BURN)
    assert resolver is not None
    started = time.perf_counter()
    with pytest.raises(ExpressionLimitError):
        await asyncio.to_thread(engine.resolve, resolver, engine.scope())
    assert time.perf_counter() - started < 0.1 + SLACK_S


async def test_the_branches_of_a_condition_share_one_budget() -> None:
    slow = "range(100000)|map('string')|list|length < 0"  # tens of ms each, never true
    branches = [{"name": f"b{i}", "when": slow} for i in range(40)]
    definition = {
        "id": "w",
        "nodes": [{"id": "t", "type": "condition", "inputs": {"branches": branches}}],
    }
    async with Executor() as executor:
        started = time.perf_counter()
        outcome = await executor.run(executor.compile(definition))
    assert node_error(outcome)["type"] == "expression_limit"
    assert time.perf_counter() - started < 0.1 + SLACK_S


async def test_a_condition_over_its_budget_between_two_branches_fails_its_node() -> None:
    """The budget can run out between two evaluations of a condition (in the node's own code,
    inside ``limit()``): the ``OverBudget`` came out of the node, a ``BaseException`` that
    killed the run's worker task; the node ended cancelled and the execution completed."""
    cheap = "[1, 2, 3]|length > 5"  # ~1 µs each: much of the time goes between evaluations
    branches = [{"name": f"b{i}", "when": cheap} for i in range(20_000)]
    definition = {
        "id": "w",
        "nodes": [{"id": "t", "type": "condition", "inputs": {"branches": branches}}],
    }
    async with Executor(expressions=ExpressionEngine(timeout_ms=5)) as executor:
        plan = executor.compile(definition)
        for _ in range(30):  # (it landed between two branches about one time in seven)
            outcome = await executor.run(plan)
            assert node_error(outcome)["type"] == "expression_limit"


def test_many_condition_branches_are_checked_in_linear_time() -> None:
    """The unique-names check ran on the event loop, outside any budget, in quadratic time:
    20,000 branches held a worker's loop ~4 s at compile and again at every run."""
    from workflow_engine.nodes.condition import ConditionInputs

    branches = [{"name": f"b{i}", "when": "true"} for i in range(20_000)]
    started = time.thread_time()
    ConditionInputs.model_validate({"branches": branches})
    assert time.thread_time() - started < 0.5


async def test_a_huge_power_fails_fast_whatever_the_cpu_budget() -> None:
    unbounded = ExpressionEngine(timeout_ms=None)  # the size check alone refuses it
    async with Executor(expressions=unbounded) as executor:
        started = time.perf_counter()
        outcome = await executor.run(executor.compile(transform("{{ ((2**10000)**10000)**10 }}")))
    assert node_error(outcome)["type"] == "expression_limit"
    assert time.perf_counter() - started < 0.5


AMPLIFIERS = [
    "{{ 'a'|center(100000000) }}",
    "{{ 'a'.ljust(100000000) }}",
    "{{ 'a'.rjust(100000000) }}",
    "{{ 'a'.zfill(100000000) }}",
    "{{ '%100000000d'|format(1) }}",
    "{{ '%.100000000d'|format(1) }}",
    "{{ 'a\\nb'|indent(100000000) }}",
    "{{ '%100000000d' % 1 }}",
    "{{ '%*d' % (100000000, 1) }}",
    "{{ '{:>100000000}'.format(1) }}",
    "{{ 'x' * 100000000 }}",
    "{{ ('x' * 1000000)|replace('x', 'xxxxx') }}",
    "{{ ('x' * 1000000) ~ ('x' * 1000000) }}",
    "{{ ('x' * 1000000) + ('x' * 1000000) }}",
    "{% for i in range(1000) %}{{ 'x' * 1000000 }}{% endfor %}",
    "{{ [0]|batch(100000000, 0)|list }}",
    "{{ ['x' * 1000000] * 1000 }}",
    "{{ (['x' * 1000] * 1000)|join('y' * 1000) }}",
    "{{ ['x' * 600000] + ['y' * 600000] }}",
]


@pytest.mark.parametrize("template", AMPLIFIERS)
async def test_an_amplifying_operation_fails_without_allocating_its_result(template: str) -> None:
    async with Executor() as executor:
        plan = executor.compile(transform(template))
        tracemalloc.start()
        try:
            outcome = await executor.run(plan)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert node_error(outcome)["type"] == "expression_limit"
    assert peak < 20 * 1024 * 1024  # (the result would be 100 MB or more)


async def test_ordinary_templates_still_work() -> None:
    template = (
        "{{ 'x'|center(5) }}|{{ '%03d' % 7 }}|{{ 'a' ~ 'b' }}|{{ 2**100 }}|"
        "{{ 'ab'|indent(2, true) }}|{{ [1] + [2] }}|{{ 'x'.ljust(3, '.') }}|"
        # the digits of the text are no widths
        "{{ 'Invoice 20241130123: %s' % 'x' }}|{{ 'Order 12345678 {}'.format('y') }}|"
        "{{ 'x %s * %s' % (2, 3000000) }}|{{ ['a', 'b']|join(',') }}|{{ [1, 2, 3]|sum }}"
    )
    async with Executor() as executor:
        outcome = await executor.run(executor.compile(transform(template)))
    assert outcome.nodes["t"].output == (
        "  x  |007|ab|1267650600228229401496703205376|  ab|[1, 2]|x..|"
        "Invoice 20241130123: x|Order 12345678 y|x 2 * 3000000|a,b|6"
    )


async def test_sum_adds_numbers_only() -> None:
    """Summing lists is one C call the CPU timer cannot stop, quadratic in the size."""
    async with Executor() as executor:
        outcome = await executor.run(executor.compile(transform("{{ [[1], [2]]|sum(start=[]) }}")))
    assert node_error(outcome)["type"] == "expression_limit"


async def test_an_output_over_the_limit_fails_the_node() -> None:
    mega = "{{ 'x' * 1000000 }}"  # each within the expression budget, 5 MB together
    async with Executor() as executor:
        outcome = await executor.run(executor.compile(transform([mega] * 5)))
        small = await executor.run(executor.compile(transform([mega] * 3)))
    error = node_error(outcome)
    assert error["type"] == "output_limit", error
    assert outcome.nodes["t"].output is None
    assert small.status is ExecutionStatus.COMPLETED


def test_the_settings_build_the_budget() -> None:
    settings = Settings(expression_timeout_ms=50, expression_max_bytes=2048, max_output_bytes=4096)
    engine = ExpressionEngine.configured(settings)
    assert engine.budget.seconds == 0.05
    assert engine.max_bytes == 2048
    resolver = engine.compile_value("{{ 'a'|center(4096) }}")
    assert resolver is not None
    with pytest.raises(ExpressionLimitError):
        engine.resolve(resolver, engine.scope())


def test_the_budget_counts_the_evaluating_thread_only() -> None:
    """The timer counts the whole process's CPU; another thread of the process burning a core
    (a store's write thread, a driver) must not use up an evaluation's budget. A template that
    needs two thirds of its budget completes while a thread hashes outside the GIL."""
    engine = ExpressionEngine(timeout_ms=600)
    loop_body = "{% for a in range(N) %}{% for b in range(100000) %}{% endfor %}{% endfor %}done"
    probe = engine.compile_value(loop_body.replace("N", "2"))
    assert probe is not None
    started = time.thread_time()
    engine.resolve(probe, engine.scope())
    per_round = (time.thread_time() - started) / 2
    rounds = max(int(0.4 / per_round), 1)  # ~0.4 s of this thread's CPU, two thirds of it
    template = engine.compile_value(loop_body.replace("N", str(rounds)))
    assert template is not None
    stop = threading.Event()
    data = b"x" * (8 << 20)

    def burn() -> None:  # hashlib releases the GIL for large inputs: a second core, busy
        while not stop.is_set():
            hashlib.sha256(data).digest()

    burner = threading.Thread(target=burn)
    burner.start()
    try:
        for _ in range(3):
            assert engine.resolve(template, engine.scope()) == "done"
    finally:
        stop.set()
        burner.join()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # (the swallowed)
def test_a_budget_raise_swallowed_by_a_finalizer_is_raised_again() -> None:
    """Python ignores an exception that escapes a ``__del__`` (or a weakref or garbage
    collector callback): an ``OverBudget`` landing there was lost, and the evaluation ran on
    unbudgeted. The budget raises again until the evaluation ends."""
    engine = ExpressionEngine(timeout_ms=100)
    finalized: list[str] = []

    class Slow:
        def __del__(self) -> None:  # the budget runs out in here, the first times
            finalized.append("del")
            started = time.thread_time()
            while time.thread_time() - started < 0.15:
                pass

    def litter() -> int:
        if len(finalized) < 3:
            Slow()  # (freed at once: its __del__ runs here, inside the evaluation)
        return 0

    # many seconds of CPU unbounded; each round drops a slow object, the first three times
    burn = engine.compile_value(
        "{% for a in range(3000) %}{% set _ = litter() %}{% for b in range(20000) %}"
        "{% endfor %}{% endfor %}done"
    )
    assert burn is not None
    started = time.thread_time()
    with pytest.raises(ExpressionLimitError):
        engine.resolve(burn, engine.scope(litter=litter))
    assert finalized  # the finalizer did run inside the evaluation
    assert time.thread_time() - started < 0.45 + 0.1 + SLACK_S  # three finalizers, the budget


def test_the_collectors_time_is_not_charged_to_an_evaluation() -> None:
    """A full collection of a big heap in the middle of a one-line template (a worker's heap
    after hours) is the collector's time, not the template's: the template completes."""
    import gc

    engine = ExpressionEngine(timeout_ms=100)
    template = engine.compile_value("{{ collect() }}")
    assert template is not None
    heap = [[i] for i in range(1_500_000)]  # tracked objects a full collection walks

    def collect() -> int:
        started = time.thread_time()
        while time.thread_time() - started < 0.15:  # longer than the budget, in the collector
            gc.collect()
        return len(heap)

    assert engine.resolve(template, engine.scope(collect=collect)) == len(heap)
