"""Wall-clock timing of short calls (the run estimate's machine rates and the bench's ratios) and the
process's peak memory."""
from __future__ import annotations

import math
import time
from typing import Any, Callable


def best_of(fn: Callable[[], Any], repeats: int = 3) -> float:
    """Shortest of ``repeats`` timed calls of ``fn`` in seconds, after one untimed warm-up call (lazy
    library set-up, caches); at least 1 ns so that rates derived from it stay finite."""
    fn()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return max(best, 1e-9)


def fastest_of(candidates: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """Each candidate's shortest of ``rounds`` timed calls in seconds, the candidates called in turn
    within every round (interleaved: a machine that slows down mid-way slows all of them alike). No
    warm-up call: the first round's calls pay for it, and the minimum skips them."""
    best = dict.fromkeys(candidates, math.inf)
    for _ in range(rounds):
        for name, fn in candidates.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far (MiB); None where the platform does not say (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    import sys
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024      # bytes on macOS, KiB on Linux
