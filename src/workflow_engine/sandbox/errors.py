"""How a code run fails. The node turns these into ``NodeError`` with the same type."""

from __future__ import annotations

from workflow_engine.errors import WorkflowEngineError

CODE_ERROR = "code_error"
"""The code itself failed: a syntax error, an exception, no ``main``, a non-JSON result."""
SANDBOX = "sandbox"
"""The code did something the sandbox forbids, or went past a limit (memory, output)."""
TIMEOUT = "timeout"
ERROR_TYPES = frozenset({CODE_ERROR, SANDBOX, TIMEOUT})


class CodeRunError(WorkflowEngineError):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type if error_type in ERROR_TYPES else SANDBOX


class SandboxUnavailable(CodeRunError):
    """The sandbox cannot start on this machine (a runtime or library is missing)."""

    def __init__(self, message: str) -> None:
        super().__init__(SANDBOX, message)
