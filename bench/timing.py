"""Wall-clock timing of repeated calls: best and median of several, after warm-up.

A shared 2-core machine is noisy (other processes steal cycles), so every figure is quoted as
the median of the repeats and the best of them: the best is closest to what the code can do, the
median to what a user sees on a busy machine.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    """Seconds taken by each timed repeat of a call."""

    times: tuple[float, ...]

    @property
    def best(self) -> float:
        """Fastest repeat (s)."""
        return min(self.times)

    @property
    def median(self) -> float:
        """Median repeat (s)."""
        return statistics.median(self.times)


def time_call(fn: Callable[[], object], warmup: int = 2, repeats: int = 7) -> Timing:
    """Call ``fn`` ``warmup`` times untimed (kernel selection, allocations), then time ``repeats`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return Timing(tuple(times))


def time_round_robin(
    fns: dict[str, Callable[[], object]], warmup: int = 2, repeats: int = 7
) -> dict[str, Timing]:
    """Time several calls in turns (one call of each per round), so that a load change on a shared
    machine hits them all alike; returns each call's :class:`Timing`."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: Timing(tuple(t)) for name, t in times.items()}
