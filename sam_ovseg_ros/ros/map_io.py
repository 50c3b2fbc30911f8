"""The semantic map beside the frame flow: the frame's pose from TF, the latched map topics on a timer,
the map services, and the map's file.

A frame without a pose is still published; only the map skips it, with a throttled warning naming
the missing link. ``~/map/points``, ``~/map/objects`` and ``~/map/markers`` are transient-local, so a
late RViz gets the map at once; they are rebuilt only when the map changed. The map is loaded from
``map.save_dir`` at start-up (and published at once), saved there every ``map.autosave_period`` from a
snapshot on a writer thread, and once more at a clean stop; ``~/map/clear`` removes the file too.

``~/map/query`` answers a text with the objects on ``~/map/objects`` whose CLIP embeddings
(mapping/embeddings.py) are most similar to it, and shows them on ``~/map/query_markers``. It is
answered on a thread of its own (service_thread.py), so encoding a new text never holds up the input
callbacks.
"""
from __future__ import annotations

import time
import traceback
from pathlib import Path

import numpy as np
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from sam_ovseg_ros.core.config import NodeConfig
from sam_ovseg_ros.core.frame_types import Frame
from sam_ovseg_ros.core.vocabulary import query_problem
from sam_ovseg_ros.mapping.persistence import MapStore
from sam_ovseg_ros.msg import ObjectArray
from sam_ovseg_ros.ros import messages, tf_listener, topics
from sam_ovseg_ros.ros.service_thread import ServiceThread
from sam_ovseg_ros.ros.tf_buffer import TransformError
from sam_ovseg_ros.srv import QueryObjects

MAX_TOP_K = 1000


class MapInterface:
    def __init__(self, node, mapper, cfg: NodeConfig, stats, problems, encode_text=None,
                 no_query_reason: str = "", embedding_model: str = "") -> None:
        """``encode_text``: text -> unit CLIP embedding (None: queries are answered with ``no_query_reason``);
        ``embedding_model``: which CLIP that is (a saved map's embeddings of another are not loaded)."""
        self.node, self.mapper, self.stats, self.problems = node, mapper, stats, problems
        self.encode_text, self.no_query_reason = encode_text, no_query_reason
        self.tf = tf_listener.make(node)
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_points = node.create_publisher(PointCloud2, "~/" + topics.MAP_OUTPUTS[0], latched)
        self.pub_objects = node.create_publisher(ObjectArray, "~/" + topics.MAP_OUTPUTS[1], latched)
        self.pub_markers = node.create_publisher(MarkerArray, "~/" + topics.MAP_OUTPUTS[2], latched)
        node.create_service(Trigger, "~/" + topics.MAP_SERVICES[0], self._on_clear)
        node.create_service(Trigger, "~/" + topics.MAP_SERVICES[1], self._on_save)
        self.pub_query = node.create_publisher(MarkerArray, "~/" + topics.MAP_QUERY_MARKERS, latched)
        self.query_service = ServiceThread(node, QueryObjects, "~/" + topics.MAP_QUERY, self._on_query, "query")
        self._listed: dict = {}  # id -> ObjectStats of the objects last published on ~/map/objects
        node.create_timer(cfg.map.publish_period, self._publish)
        self._published_revision = -1
        log = node.get_logger()
        log.info(f"map: {cfg.map.voxel_size} m voxels in '{cfg.map.frame}' (poses from {self.tf.backend} TF)")
        self.store = MapStore(Path(cfg.map.save_dir).expanduser(), cfg.map.frame, cfg.map.voxel_size,
                              log=log.info, warn=log.warning, embedding_model=embedding_model)
        if cfg.map.load_on_start and self.store.load(mapper):
            self.publish_now()  # the saved map is on the latched topics before the first frame
        if cfg.map.autosave_period > 0:
            node.create_timer(cfg.map.autosave_period, self._autosave)

    def pose(self, frame: Frame, frame_id: str, cfg: NodeConfig) -> None:
        """frame.pose = map.frame <- colour frame at the image stamp, or a throttled warning naming what is
        missing (the frame is still processed and published; only the map skips it)."""
        if not frame_id:
            reason = "the colour image has an empty frame_id"
        else:
            try:
                frame.pose = self.tf.lookup(cfg.map.frame, frame_id, frame.stamp_ns, cfg.map.tf_timeout)
                return
            except TransformError as exc:
                reason = str(exc)
        self.stats.count("map_skipped")
        if self.problems.once_per_period("map_tf", reason):
            self.node.get_logger().warning(
                f"map: no transform {cfg.map.frame} <- '{frame_id}' at {frame.stamp_ns / 1e9:.3f} s: {reason}. The "
                "frame is published; the map skips it (repeats throttled to one per 5 s)")

    def _publish(self) -> None:
        """Timer callback: an error here must not stop the executor (it is logged, throttled)."""
        try:
            self.publish_now()
        except Exception as exc:
            if self.problems.throttle.ok("map_publish"):
                self.node.get_logger().error(f"publishing the map failed: {exc}\n{traceback.format_exc()}")

    def publish_now(self) -> None:
        revision = self.mapper.revision
        if revision == self._published_revision:
            return  # nothing changed since the last publication: no snapshot either
        cfg = self.node.config()
        snap = self.mapper.snapshot(cfg.classes)
        self._published_revision = revision
        self._listed = {o.id: o for o in snap.objects}
        header = messages.Header(frame_id=cfg.map.frame)
        header.stamp.sec, header.stamp.nanosec = divmod(snap.stamp_ns, 1_000_000_000)
        self.pub_points.publish(messages.map_points(snap, header))
        self.pub_objects.publish(messages.map_objects(snap, header))
        self.pub_markers.publish(messages.map_markers(snap, header, self.node.get_name() + "/map",
                                                      cfg.markers.text_size))

    def _autosave(self) -> None:
        """Timer: copy the map (the worker waits only for the copy) and write it on the writer thread."""
        try:
            self.store.save(self.mapper, block=False)
        except Exception as exc:
            if self.problems.throttle.ok("map_save"):
                self.node.get_logger().error(f"saving the map failed: {exc}\n{traceback.format_exc()}")

    def shutdown(self) -> None:
        """A clean stop: the map as it is now goes to its file."""
        self.query_service.close()
        self.store.wait()
        saved = self.store.save(self.mapper, block=True) is not None
        if self.store.path.exists() and self.store.saved_revision == self.mapper.revision:
            self.node.get_logger().info(f"map: {self.store.path} holds the map at this stop"
                                        + ("" if saved else " (saved before, unchanged since)"))

    def _on_clear(self, request, response):
        self.mapper.clear()
        self.store.remove()
        response.success, response.message = True, f"map cleared (and {self.store.path})"
        return response

    def _on_save(self, request, response):
        cfg = self.node.config()
        try:
            ply, js = self.mapper.save(Path(cfg.map.save_dir).expanduser(), cfg.classes)
        except OSError as exc:
            response.success, response.message = False, f"cannot save the map: {exc}"
            return response
        response.success, response.message = True, f"{ply} {js}"
        self.node.get_logger().info(f"map saved: {ply}, {js}")
        return response

    def _on_query(self, request, response):
        """~/map/query: the ``top_k`` objects on ~/map/objects most similar to the text, best first."""
        t0 = time.perf_counter()
        problem = query_problem(request.text) or (None if self.encode_text else self.no_query_reason)
        if problem:
            response.success, response.message = False, problem
            return response
        top_k = min(request.top_k or 10, MAX_TOP_K)
        try:
            text = self.encode_text(request.text.strip())
        except Exception as exc:  # a model error answers this request; the node keeps serving
            response.success, response.message = False, f"encoding the text failed: {type(exc).__name__}: {exc}"
            return response
        t1 = time.perf_counter()
        listed = self._listed
        ids, scores, embedded = self.mapper.query(text, top_k, listed)
        hits = [listed[i] for i in ids.tolist()]
        response.ids = ids.astype(np.uint32).tolist()
        response.scores = scores.tolist()
        response.class_names = [o.class_name for o in hits]
        response.centroids = [messages.point(o.centroid) for o in hits]
        response.success = True
        response.message = (f"{len(hits)} hits among {embedded} objects with an embedding ({len(listed)} on "
                            f"~/map/objects); text {1e3 * (t1 - t0):.1f} ms, search {1e3 * (time.perf_counter() - t1):.1f} ms")
        cfg = self.node.config()
        header = messages.Header(frame_id=cfg.map.frame, stamp=self.node.get_clock().now().to_msg())
        self.pub_query.publish(messages.query_markers(hits, response.scores, request.text.strip(), header,
                                                      self.node.get_name() + "/query", cfg.markers.text_size))
        return response
