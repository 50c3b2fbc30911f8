"""What the node reports about itself: counters and stage-time medians (``NodeStats``), problems logged
at most once per period (``Problems``), and the periodic status line and ``/diagnostics`` message.

Bad input is counted, logged once per kind and period and skipped; the node keeps running, so an
operator sees what is wrong without a flood of identical lines.
"""
from __future__ import annotations

import re
import statistics
import threading
import time
from collections import defaultdict, deque

from sam_ovseg_ros.ros.memory import process_memory


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


class Problems:
    """Throttled logging: each distinct problem (numbers in it aside) at most once per ``period``."""

    def __init__(self, logger, stats: NodeStats, period: float = 5.0) -> None:
        self.logger, self.stats = logger, stats
        self.throttle = Throttle(period)

    def once_per_period(self, kind: str, message: str) -> bool:
        return self.throttle.ok(kind + re.sub(r"[-+]?\d[\d.e+-]*", "#", message))

    def skip_frame(self, kind: str, message: str) -> None:
        """Count and log a skipped frame."""
        self.stats.bad_input(kind)
        if self.once_per_period(kind, message):
            self.logger.warning(f"skipping frame [{kind}]: {message} (repeats of this are throttled to one per "
                                f"{self.throttle.period:.0f} s)")


class Diagnostics:
    """Every ``period`` seconds: a status line in the log and a ``diagnostic_msgs/DiagnosticArray`` on
    ``/diagnostics``; warns when colour and depth arrive but never pair (stamps further apart than the slop)."""

    def __init__(self, node, stats: NodeStats, inputs, period: float) -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        self.node, self.stats, self.inputs = node, stats, inputs
        self.pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._last_pairs, self._last_arrived = 0, (0, 0)
        if period > 0:
            node.create_timer(period, self.report)

    def report(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
        from std_msgs.msg import Header

        st = self.inputs.sync.stats
        arrived = (st.color_msgs, st.depth_msgs)
        if (st.pairs == self._last_pairs and arrived[0] > self._last_arrived[0]
                and arrived[1] > self._last_arrived[1]):
            self.node.get_logger().warning(
                f"color and depth arrive but never pair: latest stamps differ by "
                f"{abs(st.last_color_ns - st.last_depth_ns) / 1e6:.1f} ms > sync.slop "
                f"{self.node.config().sync.slop * 1e3:.1f} ms; raise sync.slop or use aligned, synchronised streams")
        self._last_pairs, self._last_arrived = st.pairs, arrived
        snap = self.stats.snapshot()
        snap["counts"]["dropped"] = self.inputs.jobs.dropped
        snap["counts"]["color_msgs"], snap["counts"]["depth_msgs"] = arrived  # what reached the callbacks
        self.node.get_logger().info("status: " + NodeStats.format(snap))
        values = [KeyValue(key=f"count.{k}", value=str(v)) for k, v in sorted(snap["counts"].items())]
        values += [KeyValue(key=f"bad_input.{k}", value=str(v)) for k, v in sorted(snap["bad_input"].items())]
        values += [KeyValue(key=f"median_ms.{k}", value=f"{v:.2f}") for k, v in snap["stage_median_ms"].items()]
        values += [KeyValue(key=f"memory_mb.{k}", value=f"{v:.1f}") for k, v in process_memory().items()]
        if snap["output_age_median_ms"] is not None:
            values.append(KeyValue(key="output_age_median_ms", value=f"{snap['output_age_median_ms']:.1f}"))
        level = DiagnosticStatus.WARN if snap["bad_input"] else DiagnosticStatus.OK
        status = DiagnosticStatus(level=level, name=f"{self.node.get_name()}: pipeline", hardware_id="sam_ovseg_ros",
                                  message=NodeStats.format(snap)[:200], values=values)
        self.pub.publish(DiagnosticArray(header=Header(stamp=self.node.get_clock().now().to_msg()), status=[status]))
