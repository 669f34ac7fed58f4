"""Summaries shared by the benchmarks."""

from __future__ import annotations

import statistics


def percentiles(samples: list[float]) -> tuple[float, float]:
    """(p50, p99) of a list of measurements."""
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[max(0, int(len(ordered) * 0.99) - 1)]
