"""Where the node gets ``map.frame`` <- camera transforms: tf2_ros on a ROS install, else our buffer.

Both subscribe ``/tf`` and ``/tf_static`` (transient-local) as tf2's listener does and answer
``lookup(target, source, stamp_ns, timeout_s)`` with a 4x4 matrix or a TransformError naming what
is missing. In the pip path tf2_msgs is built into the venv; tf2_ros is not available there.
"""
from __future__ import annotations

import time

import numpy as np
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from sam_ovseg_ros.ros.tf_buffer import TfBuffer, TransformError, matrix

DYNAMIC_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)
STATIC_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)


class BufferListener:
    """/tf and /tf_static into a :class:`TfBuffer`."""

    backend = "builtin"

    def __init__(self, node) -> None:
        from tf2_msgs.msg import TFMessage

        self.buffer = TfBuffer()
        node.create_subscription(TFMessage, "/tf", lambda m: self._add(m, False), DYNAMIC_QOS)
        node.create_subscription(TFMessage, "/tf_static", lambda m: self._add(m, True), STATIC_QOS)

    def _add(self, msg, static: bool) -> None:
        for tr in msg.transforms:
            t, q = tr.transform.translation, tr.transform.rotation
            stamp = tr.header.stamp.sec * 1_000_000_000 + tr.header.stamp.nanosec
            self.buffer.add(tr.header.frame_id, tr.child_frame_id, stamp, (t.x, t.y, t.z), (q.x, q.y, q.z, q.w), static)

    def lookup(self, target: str, source: str, stamp_ns: int, timeout_s: float) -> np.ndarray:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self.buffer.lookup(target, source, stamp_ns)
            except TransformError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.005)


class Tf2RosListener:
    """tf2_ros's Buffer and TransformListener (a ROS install)."""

    backend = "tf2_ros"

    def __init__(self, node) -> None:
        import tf2_ros

        self._tf2 = tf2_ros
        self.buffer = tf2_ros.Buffer(node=node)
        self._listener = tf2_ros.TransformListener(self.buffer, node, spin_thread=False)

    def lookup(self, target: str, source: str, stamp_ns: int, timeout_s: float) -> np.ndarray:
        from rclpy.duration import Duration
        from rclpy.time import Time

        try:
            tr = self.buffer.lookup_transform(target, source, Time(nanoseconds=stamp_ns),
                                              timeout=Duration(nanoseconds=int(timeout_s * 1e9)))
        except self._tf2.TransformException as exc:
            raise TransformError(str(exc)) from None
        t, q = tr.transform.translation, tr.transform.rotation
        return matrix(np.array([t.x, t.y, t.z]), np.array([q.x, q.y, q.z, q.w]))


def make(node):
    try:
        import tf2_ros  # noqa: F401
    except ImportError:
        return BufferListener(node)
    return Tf2RosListener(node)
