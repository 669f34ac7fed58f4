"""The exception tree. One root; each subsystem has a base; the class says whether to retry."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a definition or with inputs, located by a JSON path."""

    path: str
    message: str
    code: str = "invalid"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class WorkflowEngineError(Exception):
    """Root of every error this package raises on purpose."""


class ProblemsError(WorkflowEngineError):
    """Raised with every problem found at once."""

    def __init__(self, summary: str, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(f"{summary}: " + "; ".join(str(p) for p in problems))


class DefinitionError(ProblemsError):
    """The workflow definition is invalid."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"invalid workflow definition ({len(problems)} problems)", problems)


class InputValidationError(ProblemsError):
    """The workflow inputs do not match the definition's ``input_schema``."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"invalid workflow inputs ({len(problems)} problems)", problems)


class InvalidRequest(ProblemsError):
    """A request is well-formed JSON but asks for something impossible (listed by path)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"invalid request ({len(problems)} problems)", problems)


class AnswerValidationError(ProblemsError):
    """An answer delivered to a ``wait_input`` node breaks the node's ``schema``."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"invalid answer ({len(problems)} problems)", problems)


class ExpressionError(WorkflowEngineError):
    """A template or expression could not be evaluated."""

    error_type = "expression"

    def __init__(self, expression: str, message: str, path: str = "") -> None:
        self.expression = expression
        self.path = path
        self.reason = message
        where = f"input '{path}': " if path else ""
        super().__init__(f"{where}expression {expression!r} failed: {message}")


class ExpressionLimitError(ExpressionError):
    """An evaluation went past its budget (CPU time or size, SPEC section 8)."""

    error_type = "expression_limit"


class NodeError(WorkflowEngineError):
    """A node failed. ``retryable`` says whether another attempt could succeed; ``retry_after``
    (seconds), that it should not come sooner (a server's ``Retry-After``): the retry waits
    for the longer of it and the node's backoff."""

    error_type = "node_error"
    retryable = True
    retry_after: float | None = None
    output: Any = None
    """What the node outputs although it failed (a FastGPT node's error outputs, which the
    nodes on its catch edge read); None: nothing."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool | None = None,
        error_type: str | None = None,
        retry_after: float | None = None,
        output: Any = None,
    ) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable
        if error_type is not None:
            self.error_type = error_type
        if retry_after is not None:
            self.retry_after = retry_after
        if output is not None:
            self.output = output

    def to_dict(self) -> dict[str, Any]:
        return {"message": str(self), "type": self.error_type}


class NodeInputError(NodeError):
    """The node's resolved inputs are invalid; running it again gives the same answer."""

    error_type = "invalid_input"
    retryable = False


class NodeTimeoutError(NodeError):
    """One attempt of the node ran longer than its ``timeout``."""

    error_type = "timeout"
