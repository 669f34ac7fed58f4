"""The expression language: Jinja2 in an immutable sandbox, compiled once and cached.

Two forms (SPEC section 2):
- templates, in any string of a node's ``inputs``: ``"Hello {{ inputs.name }}"`` renders text; a
  string that is exactly one ``{{ expr }}`` keeps the native type of the value;
- bare expressions, in ``when``-style fields: ``nodes.fetch.output.status == 200``.

The names visible are ``inputs``, ``nodes``, ``execution`` and, in a loop body, ``item`` and
``index``. ``a.b`` on a mapping reads the key ``b`` before any attribute of the mapping.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, Undefined, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.parser import Parser
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from workflow_engine.errors import ExpressionError

VISIBLE_NAMES = frozenset({"inputs", "nodes", "execution", "item", "index"})
MAX_SEQUENCE_PRODUCT = 1_000_000
MAX_POWER_EXPONENT = 10_000

Scope = dict[str, Any]
Resolver = Callable[[Scope], Any]
"""A compiled input value: call it with a scope to get the resolved value."""


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox: no attribute starting with ``_``, no mutation of lists or dicts, no huge
    products, and mapping keys before attributes."""

    intercepted_binops = frozenset({"*", "**"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict or isinstance(obj, Mapping):  # the common case without the ABC
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)

    def call_binop(self, context: Context, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "**" and isinstance(right, int) and abs(right) > MAX_POWER_EXPONENT:
            raise SecurityError(f"exponent {right} is too large")
        if operator_ == "*":
            for seq, count in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(count, int)
                    and len(seq) * count > MAX_SEQUENCE_PRODUCT
                ):
                    raise SecurityError("the repeated sequence would be too long")
        return super().call_binop(context, operator_, left, right)


def unwrap_bare(source: str) -> str:
    """Allow ``{{ expr }}`` where a bare expression is expected."""
    text = source.strip()
    if _is_lone_expression(text):
        return _lone_inner(text)
    return source


def is_template(value: str) -> bool:
    return "{{" in value or "{%" in value or "{#" in value


def _is_lone_expression(value: str) -> bool:
    if not (value.startswith("{{") and value.endswith("}}")) or len(value) < 4:
        return False
    inner = value[2:-2]
    return "{{" not in inner and "}}" not in inner and "{%" not in inner


def _lone_inner(value: str) -> str:
    inner = value[2:-2]
    if inner.startswith(("-", "+")):
        inner = inner[1:]
    if inner.endswith("-"):
        inner = inner[:-1]
    return inner.strip()


_PLAIN_SCALARS = (str, int, float, bool, type(None))


def to_plain(value: Any) -> Any:
    """Turn what an expression produced into JSON-shaped data (generators of filter chains become
    lists); refuse what has no JSON form."""
    if isinstance(value, _PLAIN_SCALARS):
        return value
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if type(value) is dict or isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset | range | types.GeneratorType):
        return [to_plain(v) for v in value]
    if isinstance(value, Iterable) and not isinstance(value, bytes | bytearray):
        return [to_plain(v) for v in value]
    raise TypeError(f"the expression produced a {type(value).__name__}, which has no JSON form")


@dataclass(frozen=True, slots=True)
class Analysis:
    """What an expression or template refers to, found without running it."""

    node_refs: frozenset[str]
    unknown_names: frozenset[str]
    dynamic_node_access: bool


@dataclass
class _RefCollector:
    refs: set[str] = field(default_factory=set)
    dynamic: bool = False

    def visit(self, node: nodes.Node) -> None:
        if isinstance(node, nodes.Getattr) and _is_nodes_name(node.node):
            self.refs.add(node.attr)
            return
        if isinstance(node, nodes.Getitem) and _is_nodes_name(node.node):
            if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                self.refs.add(node.arg.value)
            else:
                self.dynamic = True
                self.visit(node.arg)
            return
        if _is_nodes_name(node):
            self.dynamic = True
            return
        for child in node.iter_child_nodes():
            self.visit(child)


def _is_nodes_name(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Name) and node.name == "nodes" and node.ctx == "load"


class ExpressionEngine:
    """Compiles templates and expressions once (an LRU cache keyed by source) and evaluates them."""

    def __init__(self, cache_size: int = 4096) -> None:
        self.env = _Environment(undefined=StrictUndefined, autoescape=False)
        self._globals = dict(self.env.globals)
        self.compile_expression: Callable[[str], Callable[[Scope], Any]] = functools.lru_cache(
            maxsize=cache_size
        )(self._compile_expression)
        self.compile_template: Callable[[str], Callable[[Scope], str]] = functools.lru_cache(
            maxsize=cache_size
        )(self._compile_template)
        self.analyze: Callable[..., Analysis] = functools.lru_cache(maxsize=cache_size)(
            self._analyze
        )

    # -- scopes ---------------------------------------------------------------------------

    def scope(self, **names: Any) -> Scope:
        """A scope for evaluation: the sandbox's globals plus the given names."""
        scope = dict(self._globals)
        scope.update(names)
        return scope

    # -- compiling ------------------------------------------------------------------------

    def _compile_expression(self, source: str) -> Callable[[Scope], Any]:
        template = self.env.compile_expression(source, undefined_to_none=False)._template
        render = template.root_render_func
        new_context = self._context_factory(template)

        def evaluate(scope: Scope) -> Any:
            context = new_context(scope)
            for _ in render(context):
                pass
            return context.vars["result"]

        return evaluate

    def _compile_template(self, source: str) -> Callable[[Scope], str]:
        template = self.env.from_string(source)
        render = template.root_render_func
        new_context = self._context_factory(template)

        def evaluate(scope: Scope) -> str:
            return "".join(render(new_context(scope)))

        return evaluate

    def _context_factory(self, template: Template) -> Callable[[Scope], Context]:
        """What ``template.new_context(scope, shared=True)`` makes, without copying the
        template's globals (a ``ChainMap``) into a set on every call: a third of an
        expression's cost. The scope already holds the globals (``scope()``)."""
        context_class, env, name, blocks = (
            self.env.context_class,
            self.env,
            template.name,
            template.blocks,
        )

        def new_context(scope: Scope) -> Context:
            return context_class(env, scope, name, blocks)

        return new_context

    def compile_value(
        self, value: Any, path: str = "", bare_paths: frozenset[str] = frozenset()
    ) -> Resolver | None:
        """Compile a JSON value whose strings may hold templates.

        Returns ``None`` when nothing in ``value`` is templated (use the value as it is). Strings
        at ``bare_paths`` (patterns with ``*`` for any list index) are left as they are: the node
        evaluates them itself as bare expressions.
        """
        if isinstance(value, str):
            if pattern_of(path) in bare_paths or not is_template(value):
                return None
            return self._compile_string(value, path)
        if isinstance(value, dict):
            parts = {
                key: self.compile_value(item, join_path(path, key), bare_paths)
                for key, item in value.items()
            }
            if all(part is None for part in parts.values()):
                return None
            pairs = [(key, parts[key], item) for key, item in value.items()]

            def resolve_dict(scope: Scope) -> dict[str, Any]:
                return {key: (item if part is None else part(scope)) for key, part, item in pairs}

            return resolve_dict
        if isinstance(value, list):
            items = [
                (self.compile_value(item, f"{path}[{i}]", bare_paths), item)
                for i, item in enumerate(value)
            ]
            if all(part is None for part, _ in items):
                return None

            def resolve_list(scope: Scope) -> list[Any]:
                return [item if part is None else part(scope) for part, item in items]

            return resolve_list
        return None

    def _compile_string(self, source: str, path: str) -> Resolver:
        try:
            if _is_lone_expression(source):
                native = self.compile_expression(_lone_inner(source))

                def resolve_native(scope: Scope) -> Any:
                    try:
                        return to_plain(native(scope))
                    except Exception as exc:
                        raise ExpressionError(source, _describe(exc), path) from exc

                return resolve_native
            text = self.compile_template(source)
        except TemplateSyntaxError as exc:
            raise ExpressionError(source, f"syntax error: {exc.message}", path) from exc

        def resolve_text(scope: Scope) -> str:
            try:
                return text(scope)
            except Exception as exc:
                raise ExpressionError(source, _describe(exc), path) from exc

        return resolve_text

    # -- evaluating bare expressions ------------------------------------------------------

    def evaluate(self, source: str, scope: Scope) -> Any:
        """Evaluate a bare expression (``when`` fields) and return plain data."""
        expression = unwrap_bare(source)
        try:
            return to_plain(self.compile_expression(expression)(scope))
        except TemplateSyntaxError as exc:
            raise ExpressionError(source, f"syntax error: {exc.message}") from exc
        except Exception as exc:
            raise ExpressionError(source, _describe(exc)) from exc

    # -- static analysis (used by the validator) ------------------------------------------

    def _analyze(self, source: str, *, bare: bool) -> Analysis:
        """Parse without running. Raises ``TemplateSyntaxError`` on bad syntax."""
        if bare:
            parser = Parser(self.env, unwrap_bare(source), state="variable")
            tree: nodes.Node = parser.parse_expression()
            if not parser.stream.eos:
                raise TemplateSyntaxError("unexpected text after the expression", 1)
            names = {n.name for n in tree.find_all(nodes.Name) if n.ctx == "load"}
        else:
            template_tree = self.env.parse(source)
            tree = template_tree
            names = set(meta.find_undeclared_variables(template_tree))
        collector = _RefCollector()
        collector.visit(tree)
        unknown = frozenset(names - VISIBLE_NAMES - set(self._globals))
        return Analysis(frozenset(collector.refs), unknown, collector.dynamic)


def _describe(exc: BaseException) -> str:
    message = str(exc) or type(exc).__name__
    if isinstance(exc, ZeroDivisionError | TypeError | ValueError | KeyError | IndexError):
        return f"{type(exc).__name__}: {message}"
    return message


def join_path(path: str, key: str) -> str:
    if key.isidentifier():
        return f"{path}.{key}" if path else key
    return f"{path}[{key!r}]"


def pattern_of(path: str) -> str:
    """``branches[2].when`` -> ``branches[*].when``."""
    out: list[str] = []
    i = 0
    while i < len(path):
        if path[i] == "[" and i + 1 < len(path) and path[i + 1].isdigit():
            end = path.index("]", i)
            out.append("[*]")
            i = end + 1
        else:
            out.append(path[i])
            i += 1
    return "".join(out)
