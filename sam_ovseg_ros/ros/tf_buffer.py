"""A small TF buffer (ROS-free): static and time-stamped transforms, chained and interpolated.

The node feeds it ``/tf`` and ``/tf_static`` and asks for ``map.frame`` <- camera at the image stamp.
It follows tf2's rules: each child frame has one parent; a lookup walks both frames up to their
common ancestor and composes the links; a dynamic link is interpolated between the two samples
around the stamp (linear translation, spherical rotation), never extrapolated; static links hold at
every time. On a ROS install the node uses ``tf2_ros`` instead (same questions, same answers).
"""
from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

import numpy as np

from sam_ovseg_ros.core.registration import quat_to_matrix

JUMP_BACK_NS = 1_000_000_000  # a link's samples this much older than its newest mean time was reset


class TransformError(LookupError):
    """No transform for the asked frames and time; the message names the missing link."""


def slerp(q0: np.ndarray, q1: np.ndarray, a: float) -> np.ndarray:
    q0, q1 = q0 / np.linalg.norm(q0), q1 / np.linalg.norm(q1)
    dot = float(q0 @ q1)
    if dot < 0:  # the short way round
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + a * (q1 - q0)
        return q / np.linalg.norm(q)
    th = np.arccos(dot)
    return (np.sin((1 - a) * th) * q0 + np.sin(a * th) * q1) / np.sin(th)


def matrix(t: np.ndarray, q: np.ndarray) -> np.ndarray:
    """4x4 homogeneous transform p_parent = R p_child + t."""
    m = np.eye(4)
    m[:3, :3] = quat_to_matrix(*q)
    m[:3, 3] = t
    return m


@dataclass
class _Link:
    parent: str
    static: bool
    stamps: list[int] = field(default_factory=list)  # sorted, ns
    poses: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (t, q) per stamp


class TfBuffer:
    """Thread-safe; ``cache_s`` seconds of dynamic samples are kept per link."""

    def __init__(self, cache_s: float = 10.0) -> None:
        self.cache_ns = int(cache_s * 1e9)
        self._links: dict[str, _Link] = {}
        self._lock = threading.Lock()

    def add(self, parent: str, child: str, stamp_ns: int, t, q, static: bool = False) -> None:
        parent, child = parent.lstrip("/"), child.lstrip("/")
        t, q = np.asarray(t, np.float64), np.asarray(q, np.float64)
        with self._lock:
            link = self._links.get(child)
            if link is None or link.parent != parent or link.static != static:
                link = self._links[child] = _Link(parent, static)
            if static:
                link.stamps, link.poses = [0], [(t, q)]
                return
            if link.stamps and stamp_ns < link.stamps[-1] - JUMP_BACK_NS:
                link.stamps.clear()  # time went back (a bag loop): the old samples are another run
                link.poses.clear()
            i = bisect.bisect_left(link.stamps, stamp_ns)
            if i < len(link.stamps) and link.stamps[i] == stamp_ns:
                link.poses[i] = (t, q)
            else:
                link.stamps.insert(i, stamp_ns)
                link.poses.insert(i, (t, q))
            cut = bisect.bisect_left(link.stamps, link.stamps[-1] - self.cache_ns)
            if cut:
                del link.stamps[:cut], link.poses[:cut]

    def reset(self) -> None:
        """Forget dynamic samples (time jumped back); static links stay, as tf2 keeps /tf_static."""
        with self._lock:
            self._links = {c: lk for c, lk in self._links.items() if lk.static}

    def _chain(self, frame: str) -> list[str]:
        chain = [frame]
        while chain[-1] in self._links and len(chain) < 100:
            chain.append(self._links[chain[-1]].parent)
        return chain

    def _at(self, child: str, stamp_ns: int) -> np.ndarray:
        link = self._links[child]
        if link.static:
            return matrix(*link.poses[0])
        s = link.stamps
        if not s:
            raise TransformError(f"no transform {link.parent} -> {child} received yet")
        i = bisect.bisect_left(s, stamp_ns)
        if i < len(s) and s[i] == stamp_ns:
            return matrix(*link.poses[i])
        if i == 0 or i == len(s):
            raise TransformError(
                f"transform {link.parent} -> {child} is known from {s[0] / 1e9:.3f} s to {s[-1] / 1e9:.3f} s, "
                f"not at {stamp_ns / 1e9:.3f} s (no extrapolation)")
        (t0, q0), (t1, q1) = link.poses[i - 1], link.poses[i]
        a = (stamp_ns - s[i - 1]) / (s[i] - s[i - 1])
        return matrix(t0 + a * (t1 - t0), slerp(q0, q1, a))

    def lookup(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        """4x4 T with p_target = T p_source at ``stamp_ns``; TransformError names what is missing."""
        target, source = target.lstrip("/"), source.lstrip("/")
        with self._lock:
            up_s, up_t = self._chain(source), self._chain(target)
            common = next((f for f in up_s if f in up_t), None)
            if common is None:
                raise TransformError(f"'{target}' and '{source}' are not connected: '{source}' goes up to "
                                     f"'{up_s[-1]}', '{target}' to '{up_t[-1]}' (missing link to one of them)")
            t_src = np.eye(4)  # common <- source
            for f in up_s[:up_s.index(common)]:
                t_src = self._at(f, stamp_ns) @ t_src
            t_tgt = np.eye(4)  # common <- target
            for f in up_t[:up_t.index(common)]:
                t_tgt = self._at(f, stamp_ns) @ t_tgt
        return np.linalg.inv(t_tgt) @ t_src

    def frames(self) -> list[str]:
        with self._lock:
            return sorted(set(self._links) | {lk.parent for lk in self._links.values()})
