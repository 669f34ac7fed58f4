"""The package's layering, read from its imports (every ``import`` statement, including those
inside functions and ``TYPE_CHECKING`` blocks): a layer may not import one it must not, so data
keeps flowing one way (api -> queue -> worker -> engine -> nodes, store and events on the side,
the shared vocabulary at the bottom)."""

from __future__ import annotations

import ast
from pathlib import Path

import workflow_engine

PACKAGE = Path(workflow_engine.__file__).parent
ROOT = "workflow_engine"

TOP = "(top-level)"
"""The layer of the package's own top-level modules (config, errors, clock, keys, ...), except
the ones that wire every layer together (``ENTRY_POINTS``)."""
ENTRY_POINTS = frozenset({"cli", "serve", "__main__"})


EVERY_LAYER = (
    "api",
    "queue",
    "worker",
    "engine",
    "plan",
    "nodes",
    "definition",
    "store",
    "events",
    "sandbox",
    "fastgpt",
)

FORBIDDEN: dict[str, tuple[str, ...]] = {
    # the words every layer shares import nothing of ours
    "vocabulary": ("*",),
    "definition": (
        "nodes",
        "plan",
        "engine",
        "worker",
        "queue",
        "api",
        "store",
        "events",
        "fastgpt",
    ),
    "nodes": ("engine", "plan", "worker", "queue", "api", "store", "events", "fastgpt"),
    "plan": ("engine", "worker", "queue", "api", "store", "events", "fastgpt"),
    "engine": ("worker", "queue", "api", "store", "events", "fastgpt"),
    "store": ("engine", "plan", "nodes", "worker", "queue", "api", "events", "fastgpt"),
    "events": ("engine", "plan", "nodes", "worker", "queue", "api", "store", "fastgpt"),
    # FastGPT's graphs: translated (definition), run as node types (nodes, a plugin the
    # registry loads), streamed in its dialect (events); the API calls it
    "fastgpt": ("engine", "plan", "worker", "queue", "api", "store"),
    "queue": ("engine", "worker", "api"),
    "api": ("engine", "worker"),
    "worker": ("api",),
    "client": (
        "engine",
        "plan",
        "nodes",
        "definition",
        "worker",
        "queue",
        "api",
        "store",
        "events",
    ),
    # the code node's sandbox processes: below nodes and the engine, above the helpers only
    "sandbox": tuple(layer for layer in EVERY_LAYER if layer != "sandbox"),
    "monitor": EVERY_LAYER,
    # helpers every layer may use (settings, errors, the clock, Redis key names, ...)
    TOP: (*EVERY_LAYER, "client"),
}
"""Layer -> the layers (subpackages of ``workflow_engine``) its modules may not import."""


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != ROOT:
        return None
    if (PACKAGE / parts[1]).is_dir() or parts[1] in ENTRY_POINTS:
        return parts[1]
    return TOP


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE).with_suffix("")
    parts = [ROOT, *relative.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, *, is_package: bool) -> list[tuple[int, str]]:
    """(line, module) for every import of ours in ``source`` (the text of ``module``), relative
    ones resolved, in line order."""
    tree = ast.parse(source)
    package = module if is_package else module.rsplit(".", 1)[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.append((node.lineno, module))
    return sorted((line, m) for line, m in found if m == ROOT or m.startswith(ROOT + "."))


def package_sources() -> list[tuple[str, str, bool]]:
    """(where, module, is_package) of every file of the package."""
    return [
        (str(path.relative_to(PACKAGE.parent)), module_name(path), path.name == "__init__.py")
        for path in sorted(PACKAGE.rglob("*.py"))
    ]


def violations(
    sources: list[tuple[str, str, bool]], read: dict[str, str] | None = None
) -> list[str]:
    found = []
    for where, name, is_package in sources:
        own = layer_of(name)
        if own not in FORBIDDEN:
            continue
        text = read[where] if read is not None else (PACKAGE.parent / where).read_text()
        for line, module in imported_modules(text, name, is_package=is_package):
            target = layer_of(module)
            if target == own:
                continue
            rules = FORBIDDEN[own]
            if "*" in rules or target in rules:
                found.append(f"{where}:{line}: {own} imports {module}")
    return found


def test_no_layer_imports_one_it_must_not() -> None:
    problems = violations(package_sources())
    assert not problems, "layering broken:\n" + "\n".join(problems)


def test_every_layer_has_a_rule() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()} | {TOP}
    unruled = packages - set(FORBIDDEN)
    assert not unruled, f"add the layering rules of {sorted(unruled)} to FORBIDDEN"
    assert set(EVERY_LAYER) <= set(FORBIDDEN)


def test_the_walk_sees_every_kind_of_import() -> None:
    """An import in a function, one under TYPE_CHECKING and a relative one all count."""
    where = "workflow_engine/store/probe.py"
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from workflow_engine.engine.results import ExecutionOutcome\n"
        "def f():\n"
        "    import workflow_engine.queue.submit\n"
        "from ..api import app\n"
        "from . import base\n"
    )
    found = violations([(where, "workflow_engine.store.probe", False)], {where: source})
    assert found == [
        f"{where}:3: store imports workflow_engine.engine.results",
        f"{where}:5: store imports workflow_engine.queue.submit",
        f"{where}:6: store imports workflow_engine.api",
    ]


def test_a_top_level_helper_may_not_reach_into_a_layer() -> None:
    where = "workflow_engine/keys.py"
    source = "from workflow_engine.config import Settings\nfrom workflow_engine.store import base\n"
    found = violations([(where, "workflow_engine.keys", False)], {where: source})
    assert found == [f"{where}:2: {TOP} imports workflow_engine.store"]
