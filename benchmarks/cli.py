"""Start-up time of the command line: what a user waits for before ``wfe`` answers.

    python -m benchmarks.cli [--runs 10] [--warmup 2]

Times ``wfe --help``, ``wfe validate examples/diamond.json`` and ``wfe run examples/diamond.json
--input numbers=[5,1,9]``, each run as a fresh process (the whole start: interpreter, imports,
the command), ``runs`` times after ``warmup`` untimed runs, and prints the median and best wall
time and the median CPU time (user + system) of each. On a busy machine the wall time moves
with the load while the CPU time barely does; the load average is printed with the table.

Nothing is asserted here: ``tests/test_cli_imports.py`` checks what the CLI imports, not how fast.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WFE = str(Path(sys.executable).with_name("wfe"))

COMMANDS = (
    ("--help",),
    ("validate", "examples/diamond.json"),
    ("run", "examples/diamond.json", "--input", "numbers=[5,1,9]"),
)


@dataclass(frozen=True, slots=True)
class Timing:
    wall_s: float
    cpu_s: float


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(args: tuple[str, ...]) -> Timing:
    """One start of ``wfe args`` from the repository root; the command must succeed."""
    cpu = _children_cpu()
    t0 = time.perf_counter()
    done = subprocess.run([WFE, *args], cwd=ROOT, capture_output=True, timeout=60)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(
            f"wfe {' '.join(args)} exited {done.returncode}:\n{done.stderr.decode()[-2000:]}"
        )
    return Timing(wall, _children_cpu() - cpu)


def measure(args: tuple[str, ...], runs: int, warmup: int) -> list[Timing]:
    for _ in range(warmup):
        run_once(args)
    return [run_once(args) for _ in range(runs)]


def main(runs: int, warmup: int) -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"start-up of the command line, {runs} runs each after {warmup} warm-up "
        f"(Python {platform.python_version()}, {os.cpu_count()} cores, load average {load})"
    )
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        print("note: PYTHONDONTWRITEBYTECODE is set: our own modules are compiled at every start")
    names = ["wfe " + " ".join(args) for args in COMMANDS]
    width = max(map(len, names))
    print(f"{'command':<{width}} {'median ms':>10} {'best ms':>8} {'cpu ms':>7}")
    for name, args in zip(names, COMMANDS, strict=True):
        timings = measure(args, runs, warmup)
        wall = [t.wall_s * 1000 for t in timings]
        cpu = [t.cpu_s * 1000 for t in timings]
        print(
            f"{name:<{width}} {statistics.median(wall):10.0f} {min(wall):8.0f} "
            f"{statistics.median(cpu):7.0f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    main(args.runs, args.warmup)
