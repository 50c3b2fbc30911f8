"""Counters, per-stage timing medians and log throttling for the node (ROS-free)."""
from __future__ import annotations

import statistics
import threading
import time
from collections import defaultdict, deque


class Throttle:
    """``ok(key)`` is True at most once per ``period`` seconds for each key."""

    def __init__(self, period: float = 5.0, clock=time.monotonic) -> None:
        self.period = period
        self._clock = clock
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def ok(self, key: str) -> bool:
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.period:
                return False
            self._last[key] = now
            return True


class NodeStats:
    """Thread-safe counters and a rolling window of stage times (seconds) for diagnostics."""

    def __init__(self, window: int = 100) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, int] = defaultdict(int)
        self.bad: dict[str, int] = defaultdict(int)
        self._stages: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=window))
        self._ages: deque[float] = deque(maxlen=window)

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] += n

    def bad_input(self, kind: str) -> None:
        with self._lock:
            self.bad[kind] += 1

    def add_timings(self, timings: dict[str, float]) -> None:
        with self._lock:
            for stage, sec in timings.items():
                self._stages[stage].append(sec)
            self._stages["total"].append(sum(timings.values()))

    def add_age(self, seconds: float) -> None:
        with self._lock:
            self._ages.append(seconds)

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "counts": dict(self.counts),
                "bad_input": dict(self.bad),
                "stage_median_ms": {k: 1000 * statistics.median(v) for k, v in self._stages.items() if v},
                "output_age_median_ms": 1000 * statistics.median(self._ages) if self._ages else None,
            }

    @staticmethod
    def format(snap: dict) -> str:
        c = snap["counts"]
        parts = [f"frames in {c.get('pairs', 0)}, processed {c.get('processed', 0)}, "
                 f"dropped {c.get('dropped', 0)}, bad {sum(snap['bad_input'].values())}"]
        if snap["stage_median_ms"]:
            parts.append("median ms: " + ", ".join(f"{k} {v:.1f}" for k, v in snap["stage_median_ms"].items()))
        age = snap["output_age_median_ms"]
        if age is not None and abs(age) < 3_600_000:  # stamps of another clock (an old bag): not an age
            parts.append(f"output age {age:.0f} ms")
        if snap["bad_input"]:
            parts.append("bad input: " + ", ".join(f"{k} {v}" for k, v in sorted(snap["bad_input"].items())))
        return "; ".join(parts)
