"""The rclpy node: messages in, pipeline on a worker thread, messages out.

Callbacks only pair stamps and hand the newest pair to the worker (a one-slot hand-over, so a
slow model drops old frames instead of queueing them). The worker decodes, runs the pipeline
and passes results to a publisher thread, so serialization overlaps the next inference. Bad
input is logged once per kind and period and skipped; the node keeps running.
"""
from __future__ import annotations

import copy
import re
import sys
import threading
import time
import traceback
from dataclasses import dataclass

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Transform
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from . import compressed, config as config_mod, depth as depth_mod, image_codec, kernels, messages, models, tf_listener, topics, vocabulary
from .cloud import Intrinsics
from .config import ConfigError, NodeConfig
from .frame import Frame, InputError
from .mapping.mapper import Mapper
from .pipeline import Outputs, Pipeline
from .registration import quat_to_matrix
from .stats import NodeStats, Throttle
from .sync import LatestSlot, PairSync, StampedLatest
from .tf_buffer import TransformError

_PARAM_TYPES = {bool: Parameter.Type.BOOL, int: Parameter.Type.INTEGER, float: Parameter.Type.DOUBLE,
                str: Parameter.Type.STRING}
FIRST_INFO_WAIT_S = 3.5
_LIST_TYPES = {"classes": Parameter.Type.STRING_ARRAY, "registration.depth_to_color": Parameter.Type.DOUBLE_ARRAY}


def stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


@dataclass
class Job:
    stamp_ns: int
    color: Image | CompressedImage
    depth: Image | CompressedImage


class SamOvsegNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("sam_ovseg", **kwargs)
        self.stats = NodeStats()
        self._throttle = Throttle(5.0)
        self._cfg_lock = threading.Lock()
        self._cfg = self._declare_parameters()
        cfg = self._cfg
        self.get_logger().info(f"profile={cfg.profile} device={cfg.device} sam.input={cfg.sam.input} "
                               f"fusion.mode={cfg.fusion.mode} qos.reliability={cfg.qos.reliability} "
                               f"sync.slop={cfg.sync.slop}s, {len(cfg.classes)} classes")
        if kernels.available:
            self.get_logger().info(f"compiled frame kernels: {kernels.where}")
        else:  # same results, a few ms more per frame
            self.get_logger().warning(f"compiled frame kernels {kernels.where}: instances, vote, segments and "
                                      "cloud run on the slower NumPy paths")
        self.models = models.build(cfg, log=self.get_logger().info)
        tc, mc = cfg.tracking, cfg.map
        self.mapper = Mapper(mc.voxel_size, mc.max_voxels, tc.iou_threshold, tc.max_age, tc.overlap_3d,
                             mc.min_object_voxels, mc.pixel_stride)
        self.pipeline = Pipeline(self.models, self.mapper, alloc=messages.message_array)
        self._tf = tf_listener.make(self) if mc.enabled else None
        depth_mod.colormap_lut(cfg.depth.colormap)  # matplotlib's import and the LUT, before the first frame

        self._sync: PairSync[Image] = PairSync(int(round(cfg.sync.slop * 1e9)), cfg.sync.queue_size,
                                               on_reset=self._on_time_reset)
        self._color_info: StampedLatest[CameraInfo] = StampedLatest(cfg.sync.queue_size)
        self._depth_info: StampedLatest[CameraInfo] = StampedLatest(cfg.sync.queue_size)
        self._extrinsic_msg: Transform | None = None
        self._info_per_frame = {"color": False, "depth": False}
        self._jobs: LatestSlot[Job] = LatestSlot()
        self._results: LatestSlot[tuple] = LatestSlot()

        qos_in = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=cfg.qos.depth, reliability=self._reliability(cfg))
        qos_out = qos_in
        # camera_info twice, into one stamp-deduplicated buffer. Best effort delivers at once: a reliable
        # low-rate topic next to MB-sized images can stall for Fast DDS's 3 s heartbeat repair after a
        # dropped datagram, holding back every later info (in-order delivery). Reliable (from reliable
        # publishers only) guarantees delivery: a best-effort sample that arrives before this reader has
        # matched the publisher is lost for good, and a bag may hold a single camera_info. A best-effort
        # publisher doesn't match the reliable reader; that is expected here, not an error.
        info_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=cfg.sync.queue_size,
                              reliability=ReliabilityPolicy.BEST_EFFORT)
        info_qos_reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=cfg.sync.queue_size,
                                       reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        if cfg.transport == "compressed":
            images = ((CompressedImage, topics.COLOR_COMPRESSED, self._on_color),
                      (CompressedImage, topics.DEPTH_COMPRESSED, self._on_depth))
        else:
            images = ((Image, topics.COLOR, self._on_color), (Image, topics.DEPTH, self._on_depth))
        for typ, name, cb in (*images,
                              (CameraInfo, topics.COLOR_INFO, self._on_color_info),
                              (CameraInfo, topics.DEPTH_INFO, self._on_depth_info),
                              (Transform, topics.DEPTH_TO_COLOR, self._on_extrinsic)):
            events = SubscriptionEventCallbacks(incompatible_qos=self._qos_mismatch(name))
            self.create_subscription(typ, name, cb, info_qos if typ is CameraInfo else qos_in, event_callbacks=events)
            quiet = SubscriptionEventCallbacks(incompatible_qos=lambda event: None)
            if typ is CameraInfo and cfg.qos.reliability == "reliable":
                # best_effort cameras get no reliable reader: their publishers would warn of it
                self.create_subscription(typ, name, cb, info_qos_reliable, event_callbacks=quiet)
            if typ is Transform:
                # the extrinsic is sent once: from a latched (transient-local) publisher this reader gets
                # it whenever it matches, even long after it was sent (the volatile one only if matched)
                self.create_subscription(typ, name, cb, latched, event_callbacks=quiet)
        self._last_pairs, self._last_arrived = 0, (0, 0)

        self.pub_depth = self.create_publisher(Image, "~/depth_colormap", qos_out)
        self.pub_instances = self.create_publisher(Image, "~/instances", qos_out)
        self.pub_semantic = self.create_publisher(Image, "~/semantic", qos_out)
        self.pub_overlay = self.create_publisher(Image, "~/overlay", qos_out)
        self.pub_points = self.create_publisher(PointCloud2, "~/points", qos_out)
        from .msg import SegmentArray, Vocabulary

        self.pub_segments = self.create_publisher(SegmentArray, "~/segments", qos_out)
        self.pub_vocab = self.create_publisher(Vocabulary, "~/vocabulary", latched)
        self.pub_markers = self.create_publisher(MarkerArray, "~/markers", qos_out)
        self._pool = messages.MessagePool()  # segments and markers, refilled by the publisher thread only
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._publish_vocabulary(cfg.classes)
        if cfg.map.enabled:
            from std_srvs.srv import Trigger

            from .msg import ObjectArray

            map_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)  # a late RViz gets the map at once
            self.pub_map_points = self.create_publisher(PointCloud2, "~/" + topics.MAP_OUTPUTS[0], map_qos)
            self.pub_map_objects = self.create_publisher(ObjectArray, "~/" + topics.MAP_OUTPUTS[1], map_qos)
            self.pub_map_markers = self.create_publisher(MarkerArray, "~/" + topics.MAP_OUTPUTS[2], map_qos)
            self.create_service(Trigger, "~/" + topics.MAP_SERVICES[0], self._on_map_clear)
            self.create_service(Trigger, "~/" + topics.MAP_SERVICES[1], self._on_map_save)
            self.create_timer(cfg.map.publish_period, self._publish_map)
            self._map_published_stamp = -1
            self.get_logger().info(f"map: {cfg.map.voxel_size} m voxels in '{cfg.map.frame}' (poses from "
                                   f"{self._tf.backend} TF)")

        self.add_pre_set_parameters_callback(self._with_file_classes)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)
        if cfg.diagnostics.period > 0:
            self.create_timer(cfg.diagnostics.period, self._report)

        self._running = True
        self._worker = threading.Thread(target=self._work, name="sam_ovseg_worker", daemon=True)
        self._publisher = threading.Thread(target=self._publish_loop, name="sam_ovseg_publisher", daemon=True)
        self._worker.start()
        self._publisher.start()
        self.get_logger().info("ready: waiting for color/image, depth/image and color/camera_info")

    # ---------------------------------------------------------------- parameters
    def _declare_parameters(self) -> NodeConfig:
        cfg = NodeConfig()
        for name, default in config_mod.iter_leaves(cfg):
            desc = ParameterDescriptor(description=config_mod.describe(name),
                                       additional_constraints=_constraints(name),
                                       read_only=name in config_mod.STARTUP_ONLY)
            if isinstance(default, list):
                ptype = _LIST_TYPES[name]
                value = default if default else ptype  # an empty list has no type of its own
                param = self.declare_parameter(name, value, desc)
            else:
                param = self.declare_parameter(name, default, desc)
            value = param.value
            if value is None:
                continue
            try:
                config_mod.set_leaf(cfg, name, value)
            except ConfigError as exc:
                raise ConfigError(f"parameter {exc}") from None
        try:
            self._apply_vocabulary_file(cfg)
            config_mod.validate(cfg)
        except ConfigError as exc:
            raise ConfigError(f"invalid parameters: {exc}") from None
        if cfg.vocabulary_file:  # `classes` shows the vocabulary in use (callbacks are not registered yet)
            self.set_parameters([Parameter("classes", Parameter.Type.STRING_ARRAY, cfg.classes)])
        return cfg

    def _with_file_classes(self, params: list[Parameter]) -> list[Parameter]:
        """Pre-set hook: a new vocabulary_file also sets `classes` to its names, so the parameter
        always reflects the vocabulary in use (a bad file is left for the validation to reject)."""
        names = {p.name for p in params}
        for p in params:
            if p.name == "vocabulary_file" and p.value and "classes" not in names:
                try:
                    classes = vocabulary.load(p.value)
                except (OSError, ValueError):
                    break
                return [*params, Parameter("classes", Parameter.Type.STRING_ARRAY, classes)]
        return params

    @staticmethod
    def _apply_vocabulary_file(cfg: NodeConfig) -> None:
        if cfg.vocabulary_file:
            try:
                cfg.classes = vocabulary.load(cfg.vocabulary_file)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"vocabulary_file: {exc}") from None

    def _candidate(self, params: list[Parameter]) -> NodeConfig:
        with self._cfg_lock:
            cfg = copy.deepcopy(self._cfg)
        for p in params:
            if p.name in config_mod.STARTUP_ONLY:
                raise ConfigError(f"{p.name} only takes effect at start-up; restart the node to change it")
            if p.name in ("use_sim_time",) or not _is_config_param(p.name):
                continue
            config_mod.set_leaf(cfg, p.name, p.value if p.value is not None else [])
            if p.name == "vocabulary_file":
                self._apply_vocabulary_file(cfg)
        config_mod.validate(cfg)
        return cfg

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        try:
            self._candidate(params)
        except ConfigError as exc:
            self.get_logger().warning(f"rejected parameter change: {exc}")
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _after_set_parameters(self, params: list[Parameter]) -> None:
        cfg = self._candidate(params)
        with self._cfg_lock:
            old = self._cfg
            self._cfg = cfg
        if cfg.classes != old.classes:
            self.get_logger().info(f"vocabulary changed: {len(cfg.classes)} classes; applies from the next frame")
            self._publish_vocabulary(cfg.classes)
        if cfg.sync.slop != old.sync.slop:
            self._sync.slop_ns = int(round(cfg.sync.slop * 1e9))

    def config(self) -> NodeConfig:
        with self._cfg_lock:
            return self._cfg

    @staticmethod
    def _reliability(cfg: NodeConfig) -> ReliabilityPolicy:
        return ReliabilityPolicy.RELIABLE if cfg.qos.reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT

    def _publish_vocabulary(self, names: list[str]) -> None:
        header = messages.Header(stamp=self.get_clock().now().to_msg())
        self.pub_vocab.publish(messages.vocabulary(names, header))

    # ---------------------------------------------------------------- inputs
    def _on_color(self, msg: Image) -> None:
        dups = self._sync.stats.duplicates
        self._offer(self._sync.add_color(stamp_ns(msg.header), msg))
        if self._sync.stats.duplicates != dups:
            self._warn("duplicate_stamp", f"color/image stamp {stamp_ns(msg.header) / 1e9:.6f} s was seen before; "
                                          "dropped (a driver re-sending, or two cameras on one topic?)")

    def _on_depth(self, msg: Image) -> None:
        self._offer(self._sync.add_depth(stamp_ns(msg.header), msg))

    def _offer(self, pair) -> None:
        if pair is None:
            return
        self.stats.count("pairs")
        stamp, color, depth = pair
        if self._jobs.put(Job(stamp, color, depth)):
            self.stats.count("dropped")

    def _on_color_info(self, msg: CameraInfo) -> None:
        self._color_info.add(stamp_ns(msg.header), msg)

    def _on_depth_info(self, msg: CameraInfo) -> None:
        self._depth_info.add(stamp_ns(msg.header), msg)

    def _on_extrinsic(self, msg: Transform) -> None:
        self._extrinsic_msg = msg

    def _qos_mismatch(self, topic: str):
        def cb(event) -> None:
            self.get_logger().error(
                f"{topic}: a publisher's QoS is incompatible with this subscription (policy "
                f"{event.last_policy_kind}); nothing will arrive. The node subscribes with qos.reliability="
                f"{self.config().qos.reliability}: set qos.reliability:=best_effort for best-effort cameras")
        return cb

    def _on_time_reset(self, from_ns: int, to_ns: int) -> None:
        self.get_logger().warning(f"input stamps jumped back from {from_ns / 1e9:.3f} s to {to_ns / 1e9:.3f} s "
                               "(bag loop or clock reset): sync and track buffers reset, processing continues")
        self.stats.count("time_resets")
        self.mapper.reset_time()  # TF links reset themselves when their own stamps jump back

    # ---------------------------------------------------------------- map
    def _pose(self, frame: Frame, frame_id: str, cfg: NodeConfig) -> None:
        """frame.pose = map.frame <- colour frame at the image stamp, or a throttled warning naming what is
        missing (the frame is still processed and published; only the map skips it)."""
        if self._tf is None:
            return
        if not frame_id:
            reason = "the colour image has an empty frame_id"
        else:
            try:
                frame.pose = self._tf.lookup(cfg.map.frame, frame_id, frame.stamp_ns, cfg.map.tf_timeout)
                return
            except TransformError as exc:
                reason = str(exc)
        self.stats.count("map_skipped")
        if self._once_per_period("map_tf", reason):
            self.get_logger().warning(f"map: no transform {cfg.map.frame} <- '{frame_id}' at "
                                      f"{frame.stamp_ns / 1e9:.3f} s: {reason}. The frame is published; the map "
                                      "skips it (repeats throttled to one per 5 s)")

    def _publish_map(self) -> None:
        """Timer callback: an error here must not stop the executor (it is logged, throttled)."""
        try:
            self._publish_map_now()
        except Exception as exc:
            if self._running and self._throttle.ok("map_publish"):
                self.get_logger().error(f"publishing the map failed: {exc}\n{traceback.format_exc()}")

    def _publish_map_now(self) -> None:
        if self.mapper.stamp_ns == self._map_published_stamp:
            return  # nothing integrated since the last publication: no snapshot either
        cfg = self.config()
        snap = self.mapper.snapshot(cfg.classes)
        self._map_published_stamp = snap.stamp_ns
        header = messages.Header(frame_id=cfg.map.frame)
        header.stamp.sec, header.stamp.nanosec = divmod(snap.stamp_ns, 1_000_000_000)
        self.pub_map_points.publish(messages.map_points(snap, header))
        self.pub_map_objects.publish(messages.map_objects(snap, header))
        self.pub_map_markers.publish(messages.map_markers(snap, header, self.get_name() + "/map",
                                                          cfg.markers.text_size))

    def _on_map_clear(self, request, response):
        self.mapper.clear()
        self._map_published_stamp = -1
        response.success, response.message = True, "map cleared"
        return response

    def _on_map_save(self, request, response):
        from pathlib import Path

        cfg = self.config()
        try:
            ply, js = self.mapper.save(Path(cfg.map.save_dir).expanduser(), cfg.classes)
        except OSError as exc:
            response.success, response.message = False, f"cannot save the map: {exc}"
            return response
        response.success, response.message = True, f"{ply} {js}"
        self.get_logger().info(f"map saved: {ply}, {js}")
        return response

    # ---------------------------------------------------------------- worker
    def _warn(self, kind: str, message: str) -> None:
        """Count and log a skipped frame; each distinct problem (numbers aside) at most once per 5 s."""
        self.stats.bad_input(kind)
        if self._once_per_period(kind, message):
            self.get_logger().warning(f"skipping frame [{kind}]: {message} (repeats of this are throttled to one per 5 s)")

    def _once_per_period(self, kind: str, message: str) -> bool:
        """True at most once per throttle period for each distinct problem (numbers in it aside)."""
        return self._throttle.ok(kind + re.sub(r"[-+]?\d[\d.e+-]*", "#", message))

    def _decode(self, job: Job, cfg: NodeConfig) -> Frame:
        px = cfg.max_image_pixels
        try:
            if isinstance(job.color, CompressedImage):
                color = compressed.decode_color(job.color.format, job.color.data, px)
            else:
                color = image_codec.decode_color(image_codec.RawImage.from_msg(job.color), px)
        except image_codec.ImageDecodeError as exc:
            raise InputError("color_image", f"color/image: {exc}") from None
        try:
            if isinstance(job.depth, CompressedImage):
                depth = compressed.decode_depth(job.depth.format, job.depth.data, px)
            else:
                depth = image_codec.decode_depth(image_codec.RawImage.from_msg(job.depth), px)
        except image_codec.ImageDecodeError as exc:
            raise InputError("depth_image", f"depth/image: {exc}") from None
        slop = int(round(cfg.sync.slop * 1e9))
        info = self._pick_info(self._color_info, "color", job.stamp_ns, slop)
        if info is None:
            raise InputError("camera_info_missing", "no message on color/camera_info yet")
        k = Intrinsics.from_k(info.k, info.width, info.height)
        frame = Frame(color=color, depth=depth, k=k, stamp_ns=job.stamp_ns)
        self._set_registration(frame, cfg, slop)
        return frame

    def _pick_info(self, infos: StampedLatest, which: str, stamp: int, slop: int):
        """camera_info for this stamp. A camera that stamps one info per frame (RealSense) may deliver it
        just after the images (DDS orders per topic only): wait up to 0.2 s for it. Unstamped/static
        infos (bags with one info) then use the newest. While no color info has ever arrived, wait
        up to FIRST_INFO_WAIT_S: a best-effort copy lost in the first burst of images comes by the
        reliable route only after Fast DDS's next heartbeat (3 s), and a bag may hold one info."""
        info, matched = infos.pick(stamp, slop)
        required_and_absent = info is None and which == "color"  # depth/camera_info is optional
        if not matched and (self._info_per_frame[which] or required_and_absent):
            t0 = time.monotonic()
            deadline = t0 + (FIRST_INFO_WAIT_S if required_and_absent else 0.2)
            while not matched and time.monotonic() < deadline and self._running:
                time.sleep(0.005)
                info, matched = infos.pick(stamp, slop)
                if required_and_absent and info is not None:
                    self.get_logger().info(f"first {which}/camera_info arrived {time.monotonic() - t0:.2f} s "
                                           "after the first frame")
                    break
        if matched:
            self._info_per_frame[which] = True
        return info

    def _set_registration(self, frame: Frame, cfg: NodeConfig, slop: int) -> None:
        mode = cfg.registration.mode
        if mode == "off":
            return
        dinfo = self._pick_info(self._depth_info, "depth", frame.stamp_ns, slop)
        if dinfo is None:
            if mode == "on":
                raise InputError("camera_info_missing", "registration.mode is 'on' but no depth/camera_info received")
            return
        dk = Intrinsics.from_k(dinfo.k, dinfo.width, dinfo.height)
        if mode == "auto" and dk == frame.k:
            return  # already aligned
        frame.depth_k = dk
        frame.depth_to_color = self._extrinsic(cfg)

    def _extrinsic(self, cfg: NodeConfig) -> tuple[np.ndarray, np.ndarray]:
        vals = cfg.registration.depth_to_color
        if len(vals) == 7:
            tx, ty, tz, qx, qy, qz, qw = vals
        elif self._extrinsic_msg is not None:
            t, q = self._extrinsic_msg.translation, self._extrinsic_msg.rotation
            tx, ty, tz, qx, qy, qz, qw = t.x, t.y, t.z, q.x, q.y, q.z, q.w
        else:
            if self._throttle.ok("identity_extrinsic"):
                self.get_logger().warning("registering depth to color with an identity extrinsic: set "
                                       "registration.depth_to_color or publish depth_to_color")
            return np.eye(3), np.zeros(3)
        try:
            return quat_to_matrix(qx, qy, qz, qw), np.array([tx, ty, tz], dtype=np.float64)
        except ValueError as exc:
            raise InputError("extrinsic", str(exc)) from None

    def _work(self) -> None:
        while self._running:
            job = self._jobs.get(timeout=0.2)
            if job is None:
                continue
            cfg = self.config()
            t0 = time.perf_counter()
            try:
                frame = self._decode(job, cfg)
                decode_s = time.perf_counter() - t0
                self._pose(frame, job.color.header.frame_id, cfg)
                want = Outputs(points=self.pub_points.get_subscription_count() > 0,
                               overlay=self.pub_overlay.get_subscription_count() > 0)
                result = self.pipeline.process(frame, cfg, want)
            except InputError as exc:
                self._warn(exc.kind, str(exc))
                continue
            except models.FrameFailure as exc:  # e.g. CUDA out of memory on this frame
                self._warn(exc.kind, str(exc))
                continue
            except Exception as exc:  # keep the node alive; the trace goes to the log once per period
                if self._throttle.ok("internal"):
                    self.get_logger().error(f"frame failed: {exc}\n{traceback.format_exc()}")
                self.stats.bad_input("internal")
                continue
            result.timings = {"decode": decode_s, **result.timings}
            self.stats.count("processed")
            if self._results.put((job, result, cfg)):
                self.stats.count("publish_dropped")

    def _publish_loop(self) -> None:
        while self._running:
            item = self._results.get(timeout=0.2)
            if item is None:
                continue
            job, result, cfg = item
            t0 = time.perf_counter()
            try:
                self._publish(job.color.header, result, cfg)
            except Exception as exc:  # a context shut down mid-publish, or a message build bug
                if self._running and self._throttle.ok("publish"):
                    self.get_logger().error(f"publishing failed: {exc}\n{traceback.format_exc()}")
                continue
            result.timings["publish"] = time.perf_counter() - t0
            self.stats.add_timings(result.timings)
            now = self.get_clock().now().nanoseconds
            self.stats.add_age((now - job.stamp_ns) / 1e9)

    def _publish(self, header, r, cfg: NodeConfig) -> None:
        self.pub_depth.publish(messages.image(r.depth_colormap, "rgb8", header))
        self.pub_instances.publish(messages.image(r.instances, "16UC1", header))
        self.pub_semantic.publish(messages.image(r.semantic, "16UC1", header))
        if r.overlay is not None:
            self.pub_overlay.publish(messages.image(r.overlay, "rgb8", header))
        if r.points is not None:
            self.pub_points.publish(messages.point_cloud(r.points, header, r.points_dense))
        self.pub_segments.publish(self._pool.segment_array(r.segments, header))
        if self.pub_markers.get_subscription_count():  # built only when someone looks, like the overlay
            self.pub_markers.publish(self._pool.markers(r.segments, header, cfg.markers.lifetime,
                                                        cfg.markers.text_size, self.get_name()))

    # ---------------------------------------------------------------- diagnostics
    def _report(self) -> None:
        st = self._sync.stats
        arrived = (st.color_msgs, st.depth_msgs)
        if (st.pairs == self._last_pairs and arrived[0] > self._last_arrived[0]
                and arrived[1] > self._last_arrived[1]):
            self.get_logger().warning(
                f"color and depth arrive but never pair: latest stamps differ by "
                f"{abs(st.last_color_ns - st.last_depth_ns) / 1e6:.1f} ms > sync.slop "
                f"{self.config().sync.slop * 1e3:.1f} ms; raise sync.slop or use aligned, synchronised streams")
        self._last_pairs, self._last_arrived = st.pairs, arrived
        snap = self.stats.snapshot()
        snap["counts"]["dropped"] = self._jobs.dropped
        self.get_logger().info("status: " + NodeStats.format(snap))
        values = [KeyValue(key=f"count.{k}", value=str(v)) for k, v in sorted(snap["counts"].items())]
        values += [KeyValue(key=f"bad_input.{k}", value=str(v)) for k, v in sorted(snap["bad_input"].items())]
        values += [KeyValue(key=f"median_ms.{k}", value=f"{v:.2f}") for k, v in snap["stage_median_ms"].items()]
        if snap["output_age_median_ms"] is not None:
            values.append(KeyValue(key="output_age_median_ms", value=f"{snap['output_age_median_ms']:.1f}"))
        level = DiagnosticStatus.WARN if snap["bad_input"] else DiagnosticStatus.OK
        status = DiagnosticStatus(level=level, name=f"{self.get_name()}: pipeline", hardware_id="sam_ovseg_ros",
                                  message=NodeStats.format(snap)[:200], values=values)
        self.pub_diag.publish(DiagnosticArray(header=messages.Header(stamp=self.get_clock().now().to_msg()),
                                              status=[status]))

    def shutdown(self) -> None:
        self._running = False
        self._jobs.close()
        self._results.close()
        self._worker.join(timeout=10)
        self._publisher.join(timeout=5)


def _constraints(name: str) -> str:
    return f"one of: {', '.join(config_mod.CHOICES[name])}" if name in config_mod.CHOICES else ""


def _is_config_param(name: str) -> bool:
    try:
        config_mod.get_leaf(NodeConfig(), name)
        return True
    except AttributeError:
        return False


def main(args=None) -> int:
    rclpy.init(args=args)
    node = None
    try:
        node = SamOvsegNode()
    except (ConfigError, models.WeightsError) as exc:
        rclpy.logging.get_logger("sam_ovseg").fatal(str(exc))
        rclpy.try_shutdown()
        return 1
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
