"""Stamp matching of color and depth, and the latest-frame hand-over to the worker (ROS-free).

``PairSync`` pairs each color message with the depth message nearest in stamp within ``slop``
(0 = equal stamps) from bounded buffers; everything older than a pair is dropped. Stamps that
go backwards (a bag loop restarting) reset the buffers; a color stamp seen before is dropped
as a duplicate. ``LatestSlot`` holds one item: a newer frame replaces an unprocessed one, which
is counted as dropped, so the worker always takes the newest frame and nothing queues up.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")

# A jump back by more than this resets the buffers (bag loop); smaller reorderings just pair.
BACKWARD_RESET_NS = 500_000_000


@dataclass
class SyncStats:
    pairs: int = 0
    resets: int = 0
    duplicates: int = 0
    unmatched: int = 0
    last_color_ns: int = -1
    last_depth_ns: int = -1
    color_msgs: int = 0
    depth_msgs: int = 0


@dataclass
class PairSync(Generic[T]):
    slop_ns: int
    queue_size: int
    on_reset: Callable[[int, int], None] | None = None  # (from_ns, to_ns)
    stats: SyncStats = field(default_factory=SyncStats)

    def __post_init__(self) -> None:
        self._color: deque[tuple[int, T]] = deque(maxlen=self.queue_size)
        self._depth: deque[tuple[int, T]] = deque(maxlen=self.queue_size)
        self._newest = {"color": -1, "depth": -1}
        self._last_pair_color = -1
        self._lock = threading.Lock()

    def add_color(self, stamp_ns: int, item: T) -> tuple[int, T, T] | None:
        with self._lock:
            if stamp_ns == self._last_pair_color or any(s == stamp_ns for s, _ in self._color):
                self.stats.duplicates += 1
                return None
            self._check_time("color", stamp_ns)
            self.stats.last_color_ns = stamp_ns
            self.stats.color_msgs += 1
            self._push(self._color, stamp_ns, item)
            return self._match()

    def add_depth(self, stamp_ns: int, item: T) -> tuple[int, T, T] | None:
        with self._lock:
            self._check_time("depth", stamp_ns)
            self.stats.last_depth_ns = stamp_ns
            self.stats.depth_msgs += 1
            self._push(self._depth, stamp_ns, item)
            return self._match()

    def _push(self, buf: deque, stamp_ns: int, item: T) -> None:
        if len(buf) == buf.maxlen:
            self.stats.unmatched += 1
        buf.append((stamp_ns, item))

    def _check_time(self, stream: str, stamp_ns: int) -> None:
        """A stream going back in time (per stream: topics interleave freely) resets both buffers."""
        newest = self._newest[stream]
        if newest >= 0 and stamp_ns < newest - BACKWARD_RESET_NS:
            self._color.clear()
            self._depth.clear()
            self._last_pair_color = -1
            self._newest = {"color": -1, "depth": -1}
            self.stats.resets += 1
            if self.on_reset:
                self.on_reset(newest, stamp_ns)
        self._newest[stream] = max(self._newest[stream], stamp_ns)

    def _match(self) -> tuple[int, T, T] | None:
        """The newest color that has a depth within slop, paired with its nearest depth."""
        for ci in range(len(self._color) - 1, -1, -1):
            cs, color = self._color[ci]
            near = [(abs(ds - cs), di) for di, (ds, _) in enumerate(self._depth) if abs(ds - cs) <= self.slop_ns]
            if not near:
                continue
            _, di = min(near)
            depth = self._depth[di][1]
            self.stats.unmatched += ci + di  # older messages that will never pair now
            for _ in range(ci + 1):
                self._color.popleft()
            for _ in range(di + 1):
                self._depth.popleft()
            self._last_pair_color = cs
            self.stats.pairs += 1
            return cs, color, depth
        return None


class StampedLatest(Generic[T]):
    """Keeps recent stamped items (camera_info); ``pick`` the one matching a stamp, else the newest."""

    def __init__(self, size: int = 10) -> None:
        self._items: deque[tuple[int, T]] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, stamp_ns: int, item: T) -> None:
        """Keep ``item`` as the newest; it replaces an item of the same stamp (the same message by another
        route, or an unstamped info whose K changed), so each stamp is held once."""
        with self._lock:
            for i, (s, _) in enumerate(self._items):
                if s == stamp_ns:
                    del self._items[i]
                    break
            self._items.append((stamp_ns, item))

    def pick(self, stamp_ns: int, slop_ns: int, fits: Callable[[T], bool] | None = None) -> tuple[T | None, bool]:
        """(item, matched): the nearest within slop if any, else the last to arrive (intrinsics are static;
        arrival order, not stamp order, so that a bag loop's earlier stamps take over). With ``fits`` (e.g.
        the image's size) only fitting items are candidates; when none fits, the last to arrive is returned
        unmatched, for the caller to report."""
        with self._lock:
            if not self._items:
                return None, False
            items = [si for si in self._items if fits is None or fits(si[1])]
            if not items:
                return self._items[-1][1], False
            near = min(items, key=lambda si: abs(si[0] - stamp_ns))
            if abs(near[0] - stamp_ns) <= slop_ns:
                return near[1], True
            return items[-1][1], False


class LatestSlot(Generic[T]):
    """A one-item hand-over between threads; putting over an unread item drops the older one."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._has = False
        self._closed = False
        self.dropped = 0

    def put(self, item: T) -> bool:
        """True when an unprocessed older item was replaced (dropped)."""
        with self._cond:
            replaced = self._has
            if replaced:
                self.dropped += 1
            self._item, self._has = item, True
            self._cond.notify()
            return replaced

    def get(self, timeout: float | None = None) -> T | None:
        """The newest item, or None on timeout/close."""
        with self._cond:
            if not self._has and not self._closed:
                self._cond.wait(timeout)
            if not self._has:
                return None
            item, self._item, self._has = self._item, None, False
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
