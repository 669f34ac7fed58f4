"""What one code run may use (SPEC section 9), shared by every language's pool."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workflow_engine.config import Settings

MAX_OUTPUT_BYTES = 1024 * 1024
MAX_LOG_BYTES = 64 * 1024
DEFAULT_POOL_SIZE = 4


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    timeout_s: float = 10.0
    """CPU seconds one run may use."""
    memory_mb: int = 256
    max_output_bytes: int = MAX_OUTPUT_BYTES
    max_log_bytes: int = MAX_LOG_BYTES
    pool_size: int = DEFAULT_POOL_SIZE
    """Sandbox processes per language: at most this many runs of a language at once."""

    @property
    def wall_s(self) -> float:
        """Wall-clock seconds one run may take: a run that sleeps or blocks uses no CPU, and
        would hold its process for ever without this."""
        return 2 * self.timeout_s + 1

    @property
    def memory_bytes(self) -> int:
        return self.memory_mb * 1024 * 1024

    @classmethod
    def configured(cls, settings: Settings) -> SandboxLimits:
        return cls(
            timeout_s=settings.code_timeout_s,
            memory_mb=settings.code_memory_mb,
            pool_size=settings.code_pool_size,
        )
