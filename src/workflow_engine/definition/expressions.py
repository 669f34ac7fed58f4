"""The expression language: Jinja2 in an immutable sandbox, compiled once and cached.

Two forms (SPEC section 2):
- templates, in any string of a node's ``inputs``: ``"Hello {{ inputs.name }}"`` renders text; a
  string that is exactly one ``{{ expr }}`` keeps the native type of the value;
- bare expressions, in ``when``-style fields: ``nodes.fetch.output.status == 200``.

The names visible are ``inputs``, ``nodes``, ``vars`` (the execution variables, SPEC section 9),
``execution`` and, in a loop body, ``item`` and ``index``. ``a.b`` on a mapping reads the key
``b`` before any attribute of the mapping.
"""

from __future__ import annotations

import contextlib
import functools
import re
import string
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from jinja2 import (
    Environment,
    StrictUndefined,
    Template,
    TemplateSyntaxError,
    Undefined,
    meta,
    nodes,
    pass_environment,
    pass_eval_context,
)
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.filters import (
    do_batch,
    do_center,
    do_format,
    do_indent,
    do_join,
    do_replace,
    do_sum,
    do_tojson,
)
from jinja2.nodes import EvalContext
from jinja2.parser import Parser
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range

from workflow_engine.definition.budget import Budget, OverBudget
from workflow_engine.errors import ExpressionError, ExpressionLimitError
from workflow_engine.jsonvalues import json_size_below

if TYPE_CHECKING:
    from workflow_engine.config import Settings

VISIBLE_NAMES = frozenset({"inputs", "nodes", "vars", "execution", "item", "index"})
LOOP_NAMES = frozenset({"item", "index"})
"""Visible only inside a loop body (SPEC section 2)."""
MAX_SEQUENCE_PRODUCT = 1_000_000
MAX_POWER_EXPONENT = 10_000
MAX_INT_BITS = 1_000_000
"""No ``**`` or ``*`` of integers whose result would be longer (in bits): ``(2**10000)**10000``
is refused by the size of its result, not its right operand alone."""
DEFAULT_TIMEOUT_MS = 100
DEFAULT_MAX_BYTES = 1024 * 1024


class TooLarge(SecurityError):
    """An evaluation would produce more than the sandbox's ``max_bytes``."""


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(\*|\d+)?(?:\.(\*|\d+))?[a-zA-Z%]")
"""A ``%`` conversion: its width and precision (digits, or ``*`` taken from the arguments)."""
_FORMAT_NUMBERS = re.compile(r"\d+")


def _amplified(s: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """How long the result of ``s.<name>(*args)`` can be, for the ``str`` methods whose result
    can be much longer than their inputs (0 for the others)."""
    first = args[0] if args else None
    if name in ("center", "ljust", "rjust", "zfill"):
        width = kwargs.get("width", first)
        return width if isinstance(width, int) else 0
    if name == "expandtabs":
        size = kwargs.get("tabsize", 8 if first is None else first)
        return len(s) * size if isinstance(size, int) else 0
    if name == "replace" and len(args) >= 2 and isinstance(args[0], str):
        old, new = args[0], args[1]
        if not isinstance(new, str) or len(new) <= len(old):
            return 0
        count = s.count(old) if old else len(s) + 1
        if len(args) > 2 and isinstance(args[2], int) and args[2] >= 0:
            count = min(count, args[2])
        return len(s) + count * (len(new) - len(old))
    if name == "join" and isinstance(first, list | tuple):
        return len(s) * max(len(first) - 1, 0) + sum(len(x) for x in first if isinstance(x, str))
    return 0


def _format_width(fmt: str, args: Any) -> int:
    """The largest width or precision a format string (``%`` or ``str.format``) asks for,
    counting the arguments when the widths come from them (``%*d``, ``{:{}}``). Only the
    conversion specs count: the digits of the text around them (an invoice number) do not."""
    values = args if isinstance(args, tuple | list) else (args,)
    from_args = [v for v in values if type(v) is int]
    widths: list[int] = []
    for width, precision in _PERCENT_SPEC.findall(fmt):
        for part in (width, precision):
            if part == "*":
                widths.extend(from_args)
            elif part:
                widths.append(_number(part))
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        fields = []  # not a str.format template
    for _, name, spec, _ in fields:
        if name is None or not spec:
            continue
        if "{" in spec:  # a width from the arguments: ``{:{}}``
            widths.extend(from_args)
        widths.extend(_number(d) for d in _FORMAT_NUMBERS.findall(spec))
    return max(widths, default=0)


@pass_environment
def _sum_of_numbers(
    environment: Environment, iterable: Any, attribute: Any = None, start: Any = 0
) -> Any:
    """Jinja's ``sum`` for numbers only: summing lists or strings is one C call that the CPU
    budget cannot interrupt, and its cost grows with the square of the size."""
    if type(start) not in (int, float):
        raise TooLarge("sum adds numbers only")
    return do_sum(environment, iterable, attribute, start)


def _number(digits: str) -> int:
    return int(digits) if len(digits) < 10 else 1 << 40


_T = TypeVar("_T")
Scope = dict[str, Any]
Resolver = Callable[[Scope], Any]
"""A compiled input value: call it with a scope to get the resolved value."""


class _CodeGenerator(CodeGenerator):
    """Jinja's, with ``~`` going through ``environment.concat_checked`` (bounded)."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.concat_checked((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox: no attribute starting with ``_``, no mutation of lists or dicts, no huge
    products, powers or strings, and mapping keys before attributes. ``max_bytes`` bounds
    what one operation may produce: the amplifying filters, ``str`` methods and operators are
    refused by their arguments, before they allocate; ``budget`` is checked on every call
    outside the main thread (``budget.py``)."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})
    code_generator_class = _CodeGenerator

    def __init__(self, *, max_bytes: int, budget: Budget, **options: Any) -> None:
        super().__init__(**options)
        self.max_bytes = max_bytes
        self.budget = budget
        self.globals["range"] = budget.counted_range(safe_range)
        self.filters.update(
            center=self._bounded(do_center, lambda v, width=80: width),
            indent=self._bounded(do_indent, _indent_size),
            format=self._bounded(do_format, lambda v, *a, **k: _format_width(str(v), k or a)),
            replace=self._bounded_replace(),
            batch=self._bounded(do_batch, lambda v, n, fill=None: n if fill is not None else 0),
            tojson=self._bounded_tojson(),
            join=self._bounded_join(),
            sum=_sum_of_numbers,
        )

    def _bounded_join(self) -> Callable[..., Any]:
        @pass_eval_context
        def join(eval_ctx: EvalContext, value: Any, d: str = "", attribute: Any = None) -> Any:
            if isinstance(value, list | tuple):
                self.check_size(json_size_below(value, self.max_bytes + 1) + len(d) * len(value))
            return do_join(eval_ctx, value, d, attribute)

        bounded: Callable[..., Any] = join
        return bounded

    def _sequence_size(self, value: Any) -> int:
        """A lower bound of the bytes a string or list holds (what repeating it multiplies)."""
        if isinstance(value, str):
            return len(value)
        return json_size_below(value, self.max_bytes + 1)

    def check_size(self, size: int) -> None:
        if size > self.max_bytes:
            raise TooLarge(f"the result would exceed {self.max_bytes} bytes")

    def _bounded(self, apply: Callable[..., Any], size: Callable[..., int]) -> Callable[..., Any]:
        def bounded(value: Any, *args: Any, **kwargs: Any) -> Any:
            needed = size(value, *args, **kwargs)
            self.check_size(needed if isinstance(needed, int) else 0)
            return apply(value, *args, **kwargs)

        return bounded

    def _bounded_replace(self) -> Callable[..., Any]:
        from jinja2.utils import pass_eval_context

        @pass_eval_context
        def replace(eval_ctx: Any, s: Any, old: Any, new: Any, count: Any = None) -> Any:
            if isinstance(s, str) and isinstance(old, str) and isinstance(new, str):
                self.check_size(_amplified(s, "replace", (old, new, count or -1), {}))
            return do_replace(eval_ctx, s, old, new, count)

        return replace

    def _bounded_tojson(self) -> Callable[..., Any]:
        from jinja2.utils import pass_eval_context

        @pass_eval_context
        def tojson(eval_ctx: Any, value: Any, indent: Any = None) -> Any:
            if isinstance(indent, int) and indent > 64:
                raise TooLarge(f"tojson indent {indent} is too large")
            return do_tojson(eval_ctx, value, indent)

        return tojson

    def concat_checked(self, parts: tuple[Any, ...]) -> str:
        texts = [str(p) for p in parts]
        self.check_size(sum(len(t) for t in texts))
        return "".join(texts)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        __self.budget.checkpoint()
        target = getattr(__obj, "__wrapped__", __obj)
        owner = getattr(target, "__self__", None)
        if isinstance(owner, str):
            name = target.__name__
            if name in ("format", "format_map"):
                __self.check_size(_format_width(owner, args or tuple(kwargs.values())))
            else:
                __self.check_size(_amplified(owner, name, args, kwargs))
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        # the common cases (a dict, a node's read-only view) without the ABC's isinstance
        if type(obj) in _PLAIN_MAPPINGS or isinstance(obj, Mapping):
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)

    def call_binop(self, context: Context, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "+":
            if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
                self.check_size(self._sequence_size(left) + self._sequence_size(right))
        elif operator_ == "%":
            if isinstance(left, str):
                self.check_size(_format_width(left, right))
        elif type(left) is int and type(right) is int:
            _check_int_size(operator_, left, right)
        if operator_ == "**" and isinstance(right, int) and abs(right) > MAX_POWER_EXPONENT:
            raise TooLarge(f"exponent {right} is too large")
        if operator_ == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(count, int) and count > 0:
                    if len(seq) * count > MAX_SEQUENCE_PRODUCT:
                        raise TooLarge("the repeated sequence would be too long")
                    # in bytes too: a list of long strings repeated is as big as their text
                    self.check_size(min(self._sequence_size(seq), self.max_bytes + 1) * count)
        return super().call_binop(context, operator_, left, right)


def _check_int_size(operator_: str, left: int, right: int) -> None:
    """Refuse an integer ``**`` or ``*`` whose result would exceed ``MAX_INT_BITS``, judged
    from both operands (computing it is what costs)."""
    if operator_ == "**" and right > 0 and abs(left) > 1:
        bits = (abs(left).bit_length() - 1) * right  # (a lower bound of the result's size)
    elif operator_ == "*":
        bits = left.bit_length() + right.bit_length()
    else:
        return
    if bits > MAX_INT_BITS:
        raise TooLarge(f"the result would exceed {MAX_INT_BITS} bits")


def _indent_size(s: Any, width: Any = 4, first: bool = False, blank: bool = False) -> int:
    per_line = width if isinstance(width, int) else len(str(width))
    text = str(s)
    return len(text) + (text.count("\n") + 1) * per_line


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
_PLAIN_MAPPINGS = frozenset({dict, types.MappingProxyType})


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
    var_refs: frozenset[str] = frozenset()
    """The variables read by name (``vars.total``, ``vars['total']``)."""
    input_refs: frozenset[str] = frozenset()
    """The workflow inputs read by name (``inputs.total``, ``inputs['total']``)."""
    loop_names: frozenset[str] = frozenset()
    """``item`` or ``index`` where read: names only a loop body sees."""


_NAMED = ("nodes", "vars", "inputs")
"""The names whose members an analysis collects."""


@dataclass
class _RefCollector:
    """The members of ``nodes``, ``vars`` and ``inputs`` read by a constant name. ``nodes``
    itself, or a member chosen by a computed key, is ``dynamic`` (the validator cannot tell
    whether it is upstream); ``vars`` or ``inputs`` used whole, a computed key or a method
    call (``inputs.get('x')``) read nothing that can be checked and are left alone."""

    refs: dict[str, set[str]] = field(default_factory=lambda: {name: set() for name in _NAMED})
    dynamic: bool = False

    def visit(self, node: nodes.Node) -> None:
        if (
            isinstance(node, nodes.Call)
            and isinstance(node.node, nodes.Getattr)
            and _named(node.node.node) in ("vars", "inputs")
        ):
            for child in node.iter_child_nodes():
                if child is not node.node:
                    self.visit(child)
            return
        if isinstance(node, nodes.Getattr) and (root := _named(node.node)) is not None:
            self.refs[root].add(node.attr)
            return
        if isinstance(node, nodes.Getitem) and (root := _named(node.node)) is not None:
            if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                self.refs[root].add(node.arg.value)
            else:
                self.dynamic = self.dynamic or root == "nodes"
                self.visit(node.arg)
            return
        if _named(node) == "nodes":
            self.dynamic = True
            return
        for child in node.iter_child_nodes():
            self.visit(child)


def _named(node: nodes.Node) -> str | None:
    """``nodes``, ``vars`` or ``inputs`` when ``node`` reads that name, else None."""
    if isinstance(node, nodes.Name) and node.ctx == "load" and node.name in _NAMED:
        return node.name
    return None


class ExpressionEngine:
    """Compiles templates and expressions once (an LRU cache keyed by source) and evaluates them
    within a budget (SPEC section 8): ``timeout_ms`` of CPU per evaluation (None: no limit) and
    ``max_bytes`` per value produced. Past either, ``ExpressionLimitError``."""

    @classmethod
    def configured(cls, settings: Settings) -> ExpressionEngine:
        """The engine with the budget of ``settings`` (worker and API alike)."""
        return cls(
            timeout_ms=settings.expression_timeout_ms, max_bytes=settings.expression_max_bytes
        )

    def __init__(
        self,
        cache_size: int = 4096,
        *,
        timeout_ms: float | None = DEFAULT_TIMEOUT_MS,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.max_bytes = max_bytes
        self.budget = Budget(None if timeout_ms is None else timeout_ms / 1000)
        self.env = _Environment(
            undefined=StrictUndefined, autoescape=False, max_bytes=max_bytes, budget=self.budget
        )
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

        limit = self.max_bytes

        def evaluate(scope: Scope) -> str:
            # the pieces are counted as they come: joining 10^5 references to one 1 MB string
            # would allocate 100 GB at once
            pieces: list[str] = []
            size = 0
            for piece in render(new_context(scope)):
                size += len(piece)
                if size > limit:
                    raise TooLarge(f"the result would exceed {limit} bytes")
                pieces.append(piece)
            return "".join(pieces)

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
        check = self.check_size
        try:
            if _is_lone_expression(source):
                native = self.compile_expression(_lone_inner(source))

                def resolve_native(scope: Scope) -> Any:
                    try:
                        return check(to_plain(native(scope)))
                    except (Exception, OverBudget) as exc:
                        raise _failure(source, exc, path) from exc

                return resolve_native
            text = self.compile_template(source)
        except TemplateSyntaxError as exc:
            raise ExpressionError(source, f"syntax error: {exc.message}", path) from exc

        def resolve_text(scope: Scope) -> str:
            try:
                return check(text(scope))
            except (Exception, OverBudget) as exc:
                raise _failure(source, exc, path) from exc

        return resolve_text

    def check_size(self, value: _T) -> _T:
        """``value``, unless it is a string longer than ``max_bytes`` in UTF-8 (the backstop
        behind the checks of the amplifying operations)."""
        if (
            isinstance(value, str)
            and len(value) * 4 > self.max_bytes
            and len(value.encode("utf-8", "surrogatepass")) > self.max_bytes
        ) or (
            isinstance(value, dict | list | tuple)
            and json_size_below(value, self.max_bytes + 1) > self.max_bytes
        ):
            raise TooLarge(f"the result is larger than {self.max_bytes} bytes")
        return value

    def resolve(self, resolver: Resolver, scope: Scope, timeout: float | None = None) -> Any:
        """Run a compiled value (``compile_value``) as one evaluation: all its templates share
        one budget of at most ``timeout`` seconds (a node's inputs: the node's ``timeout``)."""
        token = self.budget.start(timeout)
        try:
            try:
                return resolver(scope)
            finally:
                self.budget.stop(token)
        except OverBudget as exc:  # (outside: the timer can fire until ``stop``)
            raise _failure("", exc, "") from exc

    def limit(self, timeout: float | None = None) -> contextlib.AbstractContextManager[None]:
        """Make the evaluations inside the block one evaluation, for the budget (a node that
        evaluates several expressions itself)."""
        return self.budget.limit(timeout)

    # -- evaluating bare expressions ------------------------------------------------------

    def evaluate(self, source: str, scope: Scope) -> Any:
        """Evaluate a bare expression (``when`` fields) and return plain data."""
        expression = unwrap_bare(source)
        token = self.budget.start()
        try:
            try:
                return self.check_size(to_plain(self.compile_expression(expression)(scope)))
            finally:
                self.budget.stop(token)
        except TemplateSyntaxError as exc:
            raise ExpressionError(source, f"syntax error: {exc.message}") from exc
        except (Exception, OverBudget) as exc:
            raise _failure(source, exc) from exc

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
        refs = collector.refs
        return Analysis(
            frozenset(refs["nodes"]),
            unknown,
            collector.dynamic,
            var_refs=frozenset(refs["vars"]),
            input_refs=frozenset(refs["inputs"]),
            loop_names=frozenset(names & LOOP_NAMES),
        )


def _failure(source: str, exc: BaseException, path: str = "") -> ExpressionError:
    """The error for an evaluation that raised ``exc``: ``ExpressionLimitError`` for a budget
    overrun, the error itself when it is one of ours already."""
    if isinstance(exc, ExpressionError):
        return exc
    if isinstance(exc, OverBudget):
        return ExpressionLimitError(source, "the expression used up its CPU budget", path)
    if isinstance(exc, TooLarge):
        return ExpressionLimitError(source, str(exc), path)
    return ExpressionError(source, _describe(exc), path)


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
