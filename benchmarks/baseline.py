"""The figures ``python -m benchmarks`` prints beside its own: an earlier run's ``results.json``
(``--baseline FILE``; by default ``benchmarks/previous_round.json``, the previous round's run 2
of 2026-11-28 with the few figures of that round measured by hand under ``by_hand``).

An earlier run is of the same machine kind, not of the same minute: compare ratios (share of
raw bullmq, engine ÷ Celery) across runs rather than absolute rates, which move with the VM."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PREVIOUS_ROUND = Path(__file__).with_name("previous_round.json")

STORES = ("sqlite", "postgres", "mongodb")


class Baseline:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    @classmethod
    def load(cls, path: Path | None) -> Baseline:
        """``path``'s figures; none (an empty baseline) for None."""
        if path is None:
            return cls({})
        loaded: dict[str, Any] = json.loads(path.read_text())
        return cls(loaded)

    @property
    def heading(self) -> str:
        when = str(self.data.get("when", ""))[:10]
        return f"before ({when})" if when else ""

    def get(self, *keys: str) -> Any:
        """The value at ``keys``, or None when this baseline has no such figure."""
        found: Any = self.data
        for key in keys:
            if not isinstance(found, dict) or key not in found:
                return None
            found = found[key]
        return found

    def one(self, keys: Sequence[str], form: str) -> str:
        value = self.get(*keys)
        return form.format(value) if isinstance(value, int | float) else ""

    def pair(
        self, keys: Sequence[str], form: str | tuple[str, str], names: Sequence[str] = ("1", "2")
    ) -> str:
        """Two figures under ``keys`` (1 and 2 workers, or p50 and p99) as ``a / b``; ``form``
        for both, or one each."""
        values = [self.get(*keys, name) for name in names]
        if not all(isinstance(v, int | float) for v in values):
            return ""
        forms = (form, form) if isinstance(form, str) else form
        return " / ".join(f.format(v) for f, v in zip(forms, values, strict=True))

    def share(self, store: str) -> str:
        """The store's executions/s as a share of raw bullmq's jobs/s, 1 / 2 workers."""
        shares = []
        for workers in ("1", "2"):
            engine = self.get(store, "executions_per_s", workers)
            raw = self.get("raw_bullmq", "jobs_per_s", workers)
            if not engine or not raw:
                return ""
            shares.append(f"{engine / raw:.0%}")
        return " / ".join(shares)

    def scaling(self, store: str) -> str:
        one, two = (self.get(store, "executions_per_s", w) for w in ("1", "2"))
        return f"{two / one:.2f}x" if one and two else ""

    def over_celery(self) -> str:
        chains = self.get("celery", "chains_per_s")
        rates = [self.get(s, "executions_per_s", "1") for s in STORES]
        best = max((r for r in rates if r), default=None)
        return f"{best / chains:.1f}x" if best and chains else ""

    def by_hand_dbos(self) -> list[str]:
        dbos = self.get("by_hand", "dbos")
        if not dbos:
            return []
        rate, p50, forty = (
            "-".join(str(v) for v in dbos[k])
            for k in ("workflows_per_s", "latency_p50_ms", "forty_steps_ms")
        )
        return [
            f"   {self.heading}, by hand: DBOS {rate} workflows/s, p50 {p50} ms, "
            f"40 steps {forty} ms"
        ]

    def parked(self) -> str:
        found = self.get("by_hand", "parked")
        if not found:
            return ""
        count, rss = found["count"], found["parked_peak_rss_mb"]
        return f"{self.heading}: {count:,} parked, peak RSS {rss} MB"

    def stats_by_group(self) -> str:
        found = self.get("by_hand", "stats_group_by_ms")
        if not found:
            return ""
        sizes = ", ".join(f"{ms} ms at {int(size):,}" for size, ms in found.items())
        return f"{self.heading}: /stats by GROUP BY over every execution (SQLite): {sizes}"
