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

A raise can be swallowed: Python ignores (and prints) an exception that escapes a garbage
collector callback, a ``__del__`` or a weakref callback, and the evaluation goes on. So once
over its budget the handler re-arms the timer for ``_RESOLUTION_S`` and raises again until
``stop``; it raises only in a frame below the one that started the evaluation and outside
``stop`` and ``_Limit.__exit__``, so that the unwinding of a first raise always reaches
``stop`` (which disarms the timer) before a second can land.

The garbage collector's own time is not the evaluation's: a full collection of a big worker's
heap can take longer than a whole budget in the middle of a one-line template (seen: a
`{{ nodes.root.output.step }}` failed). A ``gc.callbacks`` entry, installed once, times the
collections that run during an evaluation in the main thread, and the budget is extended by
that time, up to ``_GC_CREDIT_MAX`` times itself (so a template cannot buy unbounded time by
making garbage).

Signals reach Python handlers only in the main thread. Elsewhere the budget is a deadline on
``time.thread_time()`` that the sandbox checks on every call it makes and every 1,024 steps of
a ``range`` (``checkpoint``/``counted_range``): a loop without either (a ``for`` over a long
string) is not interrupted there.

Neither can stop one long C-level operation (``'x' * n``, ``str.center(n)``); the sandbox
refuses those by their size before they run (``expressions.py``).
"""

from __future__ import annotations

import gc
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import CodeType, FrameType, TracebackType
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
_GC_CREDIT_MAX = 4.0
"""The collector's time an evaluation is not charged for, at most, in multiples of its budget."""


class _Collections:
    """Time the garbage collector spent during the main thread's current evaluation."""

    active = False
    started: float | None = None
    spent = 0.0

    @classmethod
    def begin(cls) -> None:
        cls.active, cls.started, cls.spent = True, None, 0.0

    @classmethod
    def end(cls) -> None:
        cls.active = False

    @classmethod
    def so_far(cls) -> float:
        """Spent so far, with a collection in progress (a signal during it) counted."""
        started = cls.started
        return cls.spent + (time.thread_time() - started if started is not None else 0.0)

    @classmethod
    def on_gc(cls, phase: str, _info: dict[str, Any]) -> None:
        if not cls.active or threading.get_ident() != _MAIN:
            return
        if phase == "start":
            cls.started = time.thread_time()
        elif cls.started is not None:
            cls.spent += time.thread_time() - cls.started
            cls.started = None


_MAIN = threading.main_thread().ident
_DEEPEST = 1000
"""Frames the handler walks up looking for the evaluation's starter (deeper: it is not raised)."""


class Budget:
    """Bounds the CPU time of an evaluation: ``with budget.limit(seconds): ...``. Re-entrant:
    an evaluation inside one already limited counts against the outer limit."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self._active = False  # (main thread only)
        self._allowed = 0.0
        self._started_cpu = 0.0
        self._previous: Any = None
        self._starter: FrameType | None = None  # (the frame the evaluation runs under)
        self._installed = False
        self._local = threading.local()
        self._main = threading.main_thread().ident

    def start(self, seconds: float | None = None, starter: FrameType | None = None) -> object:
        """Begin limiting this thread's evaluation to ``min(self.seconds, seconds)`` of CPU
        (None: no limit); past it, ``OverBudget`` is raised inside it. Pass what this returns
        to ``stop``. An evaluation started inside one already limited counts against it.
        (A pair of calls rather than a context manager: this is on every node's path.)
        ``starter``: the frame that calls ``stop`` (default: the caller's); the evaluation
        is what runs below it."""
        allowed = _smaller(self.seconds, seconds)
        if allowed is None:
            return _UNLIMITED
        if threading.get_ident() == self._main and _HAS_TIMER:
            if self._active:
                return _UNLIMITED
            if not self._installed:
                self._previous = signal.signal(signal.SIGPROF, self._on_signal)
                self._installed = True
                if _Collections.on_gc not in gc.callbacks:
                    gc.callbacks.append(_Collections.on_gc)
            self._active = True
            self._starter = starter or sys._getframe(1)
            self._allowed = allowed
            self._started_cpu = time.thread_time()
            _Collections.begin()
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
        self._starter = None
        _Collections.end()
        assert isinstance(token, tuple)
        signal.setitimer(signal.ITIMER_PROF, *token)  # (another user's timer, if it had one)

    def limit(self, seconds: float | None = None) -> _Limit:
        """``start``/``stop`` around a block (``OverBudget`` can come out of the block's end
        too: catch it around the ``with``)."""
        return _Limit(self, seconds)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._active:
            # ITIMER_PROF counts the whole process's CPU: other threads (the store's write
            # thread, a driver's) may have used some of it. The evaluation is charged for its
            # own thread's time only; short of the budget, the timer is set for the rest.
            credit = min(_Collections.so_far(), _GC_CREDIT_MAX * self._allowed)
            left = self._allowed + credit - (time.thread_time() - self._started_cpu)
            if left > _RESOLUTION_S:
                signal.setitimer(signal.ITIMER_PROF, left)
                return
            # again soon, until ``stop``: this raise may be swallowed (a GC callback's)
            signal.setitimer(signal.ITIMER_PROF, _RESOLUTION_S)
            if _inside(frame, self._starter):
                raise OverBudget
            return
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


class _Limit:
    """``Budget.limit``'s context manager (a class, so that ``_on_signal`` knows its exit)."""

    __slots__ = ("budget", "seconds", "token")

    def __init__(self, budget: Budget, seconds: float | None) -> None:
        self.budget = budget
        self.seconds = seconds
        self.token: object = _UNLIMITED

    def __enter__(self) -> None:
        self.token = self.budget.start(self.seconds, sys._getframe(1))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.budget.stop(self.token)


_STOPPING: frozenset[CodeType] = frozenset({Budget.stop.__code__, _Limit.__exit__.__code__})


def _inside(frame: FrameType | None, starter: FrameType | None) -> bool:
    """Whether ``frame`` runs below ``starter`` (the evaluation's own frames), and not on the
    way to ``stop``: the only place an ``OverBudget`` may be raised."""
    if frame is None or starter is None or frame is starter:
        return False
    current: FrameType | None = frame
    for _ in range(_DEEPEST):
        if current is None or current.f_code in _STOPPING:
            return False
        current = current.f_back
        if current is starter:
            return True
    return False


def _smaller(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
