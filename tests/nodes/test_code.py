"""The ``code`` node (issue 15): Python ``main(**inputs)`` and JavaScript ``main(inputs)`` in
warm sandbox processes (real ones: Deno, a jailed CPython), output the JSON ``main`` returns,
printed text as ``node.log``, the code's own errors as ``code_error``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from workflow_engine.engine.executor import Executor
from workflow_engine.engine.hooks import ExecutionHooks, NodeLogged
from workflow_engine.vocabulary import ExecutionStatus

PY_SUM = "def main(a, b):\n    print('adding', a, b)\n    return {'sum': a + b, 'items': [a, b]}\n"
JS_SUM = (
    "async function main({a, b}) {\n  console.log('adding', a, b);\n"
    "  await null;\n  return {sum: a + b, items: [a, b]};\n}\n"
)


class Logs(ExecutionHooks):
    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    async def on_node_log(self, event: NodeLogged) -> None:
        self.texts.append((event.node_id, event.text))


def code_wf(language: str, code: str, inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    node = {"id": "c", "type": "code", "inputs": {"language": language, "code": code}}
    if inputs is not None:
        node["inputs"]["inputs"] = inputs
    return {"id": "code", "nodes": [node]}


@pytest.fixture
async def ex() -> AsyncIterator[Executor]:
    async with Executor() as executor:
        yield executor


async def run_code(
    ex: Executor, language: str, code: str, inputs: dict[str, Any] | None = None, **wf: Any
) -> tuple[Any, dict[str, Any] | None, list[tuple[str, str]]]:
    hooks = Logs()
    outcome = await ex.run(ex.compile(code_wf(language, code, inputs)), wf, hooks=hooks)
    node = outcome.nodes["c"]
    return node.output, node.error, hooks.texts


@pytest.mark.parametrize(("language", "code"), [("python", PY_SUM), ("javascript", JS_SUM)])
async def test_inputs_in_json_out_and_prints_as_logs(
    ex: Executor, language: str, code: str
) -> None:
    inputs = {"a": "{{ inputs.a }}", "b": 2}
    output, error, logs = await run_code(ex, language, code, inputs, a=40)
    assert error is None
    assert output == {"sum": 42, "items": [40, 2]}
    assert logs == [("c", "adding 40 2\n")]


@pytest.mark.parametrize(
    ("language", "code"),
    [("python", "def main():\n    return {1, 2}\n"), ("javascript", "function main() {}\n")],
)
async def test_a_result_that_is_not_json_is_a_clear_error(
    ex: Executor, language: str, code: str
) -> None:
    output, error, _ = await run_code(ex, language, code)
    assert output is None
    assert error is not None
    assert error["type"] == "code_error"
    assert "main must return a JSON value" in error["message"]


@pytest.mark.parametrize(
    ("language", "code", "expected"),
    [
        ("python", "def main(:\n    pass\n", "SyntaxError"),
        ("javascript", "function main( {\n", "SyntaxError"),
        ("python", "x = 1\n", "must define a function `main`"),
        ("javascript", "const x = 1;\n", "must define a function `main`"),
        ("python", "def main():\n    return 1 / 0\n", "ZeroDivisionError: division by zero"),
        ("javascript", "function main() { throw new Error('boom') }\n", "Error: boom"),
    ],
)
async def test_broken_code_fails_the_node_with_what_went_wrong(
    ex: Executor, language: str, code: str, expected: str
) -> None:
    _, error, _ = await run_code(ex, language, code)
    assert error is not None
    assert error["type"] == "code_error"
    assert expected in error["message"]


@pytest.mark.parametrize("language", ["python", "javascript"])
async def test_processes_are_reused_across_runs(ex: Executor, language: str) -> None:
    code = "def main(n):\n    return n\n" if language == "python" else "const main = (i) => i.n;"
    plan = ex.compile(code_wf(language, code, {"n": "{{ inputs.n }}"}))
    for n in range(5):
        outcome = await ex.run(plan, {"n": n})
        assert outcome.status is ExecutionStatus.COMPLETED
        assert outcome.result == {"c": n}
    assert ex.sandboxes().pool(language).started == 1


async def test_python_state_does_not_survive_a_run(ex: Executor) -> None:
    """Each Python run is a fresh fork: a patched module or a file is gone for the next."""
    taint = (
        "import builtins, math\ndef main():\n    math.pi = 3\n    builtins.leak = 'x'\n"
        "    open('left.txt', 'w').write('x')\n    return 1\n"
    )
    check = (
        "import builtins, math, os\ndef main():\n"
        "    return [math.pi, hasattr(builtins, 'leak'), os.listdir('.')]\n"
    )
    assert (await run_code(ex, "python", taint))[1] is None
    output, error, _ = await run_code(ex, "python", check)
    assert error is None
    assert output == [3.141592653589793, False, []]


async def test_logs_are_capped_at_64_kib_per_run(ex: Executor) -> None:
    code = "def main():\n    for _ in range(2000):\n        print('x' * 99)\n    return 'done'\n"
    output, error, logs = await run_code(ex, "python", code)
    assert error is None
    assert output == "done"
    text = "".join(t for _, t in logs)
    assert 64 * 1024 <= len(text) < 65 * 1024
    assert text.endswith("[log truncated: more than the 64 KiB a run may print]\n")
