"""Wall-clock timing of short calls (the run estimate's machine rates and the bench's ratios)."""
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
