"""The CPU budget of one expression evaluation (SPEC section 8).

Templates render synchronously on the event loop, which cannot pre-empt them; something must
interrupt Python bytecode. In the main thread (every worker and ``wfe run``) that is a CPU timer:
``ITIMER_PROF`` armed around the evaluation, whose ``SIGPROF`` handler raises ``OverBudget``
between two bytecodes once the evaluation's own thread has used its budget (the timer counts
the whole process's CPU, so a handler that finds time left sets the timer for the rest). The
handler is installed once, on the first evaluation, and hands a signal that arrives outside an
evaluation to the handler it replaced; the timer another user had armed is re-armed afterwards.
Arming and disarming cost ~0.6 µs (two ``setitimer`` calls); swapping the handler every time
would cost ~5 µs, more than a whole expression.

Signals reach Python handlers only in the main thread. Elsewhere the budget is a deadline on
``time.thread_time()`` that the sandbox checks on every call it makes and every 1,024 steps of
a ``range`` (``checkpoint``/``counted_range``): a loop without either (a ``for`` over a long
string) is not interrupted there.

Neither can stop one long C-level operation (``'x' * n``, ``str.center(n)``); the sandbox
refuses those by their size before they run (``expressions.py``).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any


class OverBudget(BaseException):
    """An evaluation ran out of CPU time. A ``BaseException`` so that no ``except Exception``
    inside Jinja or a filter swallows it; ``Budget.limit`` turns it into the error."""


_RANGE_CHECK_EVERY = 1024
_RESOLUTION_S = 0.001
"""An evaluation within this of its budget is over it (no timer for a few microseconds)."""
_HAS_TIMER = hasattr(signal, "setitimer")
_UNLIMITED = object()
_THREAD = object()


class Budget:
    """Bounds the CPU time of an evaluation: ``with budget.limit(seconds): ...``. Re-entrant:
    an evaluation inside one already limited counts against the outer limit."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self._active = False  # (main thread only)
        self._allowed = 0.0
        self._started_cpu = 0.0
        self._previous: Any = None
        self._installed = False
        self._local = threading.local()
        self._main = threading.main_thread().ident

    def start(self, seconds: float | None = None) -> object:
        """Begin limiting this thread's evaluation to ``min(self.seconds, seconds)`` of CPU
        (None: no limit); past it, ``OverBudget`` is raised inside it. Pass what this returns
        to ``stop``. An evaluation started inside one already limited counts against it.
        (A pair of calls rather than a context manager: this is on every node's path.)"""
        allowed = _smaller(self.seconds, seconds)
        if allowed is None:
            return _UNLIMITED
        if threading.get_ident() == self._main and _HAS_TIMER:
            if self._active:
                return _UNLIMITED
            if not self._installed:
                self._previous = signal.signal(signal.SIGPROF, self._on_signal)
                self._installed = True
            self._active = True
            self._allowed = allowed
            self._started_cpu = time.thread_time()
            return signal.setitimer(signal.ITIMER_PROF, max(allowed, 1e-6))
        if getattr(self._local, "deadline", None) is not None:
            return _UNLIMITED
        self._local.deadline = time.thread_time() + allowed
        return _THREAD

    def stop(self, token: object) -> None:
        if token is _UNLIMITED:
            return
        if token is _THREAD:
            self._local.deadline = None
            return
        # a signal landing after this line is handed on or ignored (``_on_signal``)
        self._active = False
        assert isinstance(token, tuple)
        signal.setitimer(signal.ITIMER_PROF, *token)  # (another user's timer, if it had one)

    @contextmanager
    def limit(self, seconds: float | None = None) -> Iterator[None]:
        """``start``/``stop`` around a block (``OverBudget`` can come out of the block's end
        too: catch it around the ``with``)."""
        token = self.start(seconds)
        try:
            yield
        finally:
            self.stop(token)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._active:
            # ITIMER_PROF counts the whole process's CPU: other threads (the store's write
            # thread, a driver's) may have used some of it. The evaluation is charged for its
            # own thread's time only; short of the budget, the timer is set for the rest.
            left = self._allowed - (time.thread_time() - self._started_cpu)
            if left > _RESOLUTION_S:
                signal.setitimer(signal.ITIMER_PROF, left)
                return
            self._active = False
            raise OverBudget
        previous = self._previous
        if callable(previous):
            previous(signum, frame)

    # -- the fallback outside the main thread -----------------------------------------------

    def checkpoint(self) -> None:
        """Raise ``OverBudget`` when this thread's evaluation is past its deadline (no-op in the
        main thread, where the timer does it)."""
        deadline: float | None = getattr(self._local, "deadline", None)
        if deadline is not None and time.thread_time() > deadline:
            raise OverBudget

    def counted_range(self, make_range: Callable[..., range]) -> Callable[..., Any]:
        """``range`` for the sandbox: the plain one, or one that checks the deadline as it goes
        when this thread has a deadline."""

        def sandbox_range(*args: int) -> Any:
            numbers = make_range(*args)
            if getattr(self._local, "deadline", None) is None:
                return numbers
            return self._counting(numbers)

        return sandbox_range

    def _counting(self, numbers: range) -> Iterator[int]:
        for i, n in enumerate(numbers):
            if i % _RANGE_CHECK_EVERY == 0:
                self.checkpoint()
            yield n


def _smaller(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
