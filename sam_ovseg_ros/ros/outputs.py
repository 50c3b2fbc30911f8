"""The node's per-frame outputs: publishers, message building and the publisher thread.

The worker hands each result over through a one-slot queue; this thread builds the messages and
publishes them, so serialization overlaps the next inference. Every output copies the colour
image's header. The overlay, cloud and markers are built only while someone subscribes.
"""
from __future__ import annotations

import threading
import time
import traceback

from rclpy.qos import HistoryPolicy, QoSProfile
from sensor_msgs.msg import Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from sam_ovseg_ros.core.config import NodeConfig
from sam_ovseg_ros.core.frame_pipeline import Outputs
from sam_ovseg_ros.msg import SegmentArray, Vocabulary
from sam_ovseg_ros.ros import messages
from sam_ovseg_ros.ros.inputs import LATCHED, reliability
from sam_ovseg_ros.ros.sync import LatestSlot


class FrameOutputs:
    def __init__(self, node, cfg: NodeConfig, stats, problems) -> None:
        self.node, self.stats, self.problems = node, stats, problems
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=cfg.qos.depth, reliability=reliability(cfg))
        self.depth = node.create_publisher(Image, "~/depth_colormap", qos)
        self.instances = node.create_publisher(Image, "~/instances", qos)
        self.semantic = node.create_publisher(Image, "~/semantic", qos)
        self.overlay = node.create_publisher(Image, "~/overlay", qos)
        self.points = node.create_publisher(PointCloud2, "~/points", qos)
        self.segments = node.create_publisher(SegmentArray, "~/segments", qos)
        self.vocabulary = node.create_publisher(Vocabulary, "~/vocabulary", LATCHED)
        self.markers = node.create_publisher(MarkerArray, "~/markers", qos)
        self._pool = messages.MessagePool()  # segments and markers, refilled by the publisher thread only
        self._results: LatestSlot[tuple] = LatestSlot()
        self._running = True
        self.publish_vocabulary(cfg.classes)
        self._thread = threading.Thread(target=self._loop, name="sam_ovseg_publisher", daemon=True)
        self._thread.start()

    def wanted(self) -> Outputs:
        """The lazy outputs somebody subscribes to."""
        return Outputs(points=self.points.get_subscription_count() > 0,
                       overlay=self.overlay.get_subscription_count() > 0)

    def put(self, header, stamp_ns: int, result, cfg: NodeConfig) -> None:
        """Hand a result to the publisher thread (a newer one replaces it if it has not started)."""
        if self._results.put((header, stamp_ns, result, cfg)):
            self.stats.count("publish_dropped")

    def publish_vocabulary(self, names: list[str]) -> None:
        header = messages.Header(stamp=self.node.get_clock().now().to_msg())
        self.vocabulary.publish(messages.vocabulary(names, header))

    def _loop(self) -> None:
        while self._running:
            item = self._results.get(timeout=0.2)
            if item is None:
                continue
            header, stamp_ns, result, cfg = item
            t0 = time.perf_counter()
            try:
                self.publish(header, result, cfg)
            except Exception as exc:  # a context shut down mid-publish, or a message build bug
                stopping = not self.node.context.ok()  # Ctrl-C / SIGTERM: rclpy shut down before this thread
                if self._running and not stopping and self.problems.throttle.ok("publish"):
                    self.node.get_logger().error(f"publishing failed: {exc}\n{traceback.format_exc()}")
                continue
            result.timings["publish"] = time.perf_counter() - t0
            self.stats.add_timings(result.timings)
            self.stats.add_age((self.node.get_clock().now().nanoseconds - stamp_ns) / 1e9)

    def publish(self, header, r, cfg: NodeConfig) -> None:
        self.depth.publish(messages.image(r.depth_colormap, "rgb8", header))
        self.instances.publish(messages.image(r.instances, "16UC1", header))
        self.semantic.publish(messages.image(r.semantic, "16UC1", header))
        if r.overlay is not None:
            self.overlay.publish(messages.image(r.overlay, "rgb8", header))
        if r.points is not None:
            self.points.publish(messages.point_cloud(r.points, header, r.points_dense))
        self.segments.publish(self._pool.segment_array(r.segments, header))
        if self.markers.get_subscription_count():  # built only when someone looks, like the overlay
            self.markers.publish(self._pool.markers(r.segments, header, cfg.markers.lifetime,
                                                    cfg.markers.text_size, self.node.get_name()))

    def stop(self) -> None:
        self._running = False
        self._results.close()
        self._thread.join(timeout=5)
