"""The node's inputs: subscriptions, colour/depth pairing, and a job turned into a frame.

Callbacks only pair stamps and hand the newest pair to the worker through a one-slot hand-over
(``jobs``), so a slow model drops old frames instead of queueing them. The worker then calls
``frame(job)``: decode (raw or compressed), pick the camera_info of the stamp, and set up depth
registration when depth is not aligned to colour.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from geometry_msgs.msg import Transform
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from sam_ovseg_ros.core.cloud import Intrinsics
from sam_ovseg_ros.core.config import NodeConfig
from sam_ovseg_ros.core.frame_types import Frame, InputError
from sam_ovseg_ros.core.registration import quat_to_matrix
from sam_ovseg_ros.ros import compressed, image_codec, topics
from sam_ovseg_ros.ros.sync import LatestSlot, PairSync, StampedLatest

FIRST_INFO_WAIT_S = 3.5
EXTRINSIC_WAIT_S = 10.0  # while a publisher of depth_to_color is matched and its sample is not here yet


def stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def reliability(cfg: NodeConfig) -> ReliabilityPolicy:
    return ReliabilityPolicy.RELIABLE if cfg.qos.reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT


LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


@dataclass
class Job:
    stamp_ns: int
    color: Image | CompressedImage
    depth: Image | CompressedImage


class FrameInputs:
    def __init__(self, node, cfg: NodeConfig, stats, problems, on_time_reset: Callable[[int, int], None],
                 running: Callable[[], bool]) -> None:
        self.node, self.stats, self.problems, self.running = node, stats, problems, running
        self.sync: PairSync[Image] = PairSync(int(round(cfg.sync.slop * 1e9)), cfg.sync.queue_size,
                                              on_reset=on_time_reset)
        self._color_info: StampedLatest[CameraInfo] = StampedLatest(cfg.sync.queue_size)
        self._depth_info: StampedLatest[CameraInfo] = StampedLatest(cfg.sync.queue_size)
        self._extrinsic_msg: Transform | None = None
        self._extrinsic_subs: list = []
        self._extrinsic_waited = False
        self._info_per_frame = {"color": False, "depth": False}
        self.jobs: LatestSlot[Job] = LatestSlot()
        self._subscribe(cfg)

    def _subscribe(self, cfg: NodeConfig) -> None:
        node = self.node
        images = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=cfg.qos.depth, reliability=reliability(cfg))
        # camera_info twice, into one stamp-deduplicated buffer. Best effort delivers at once: a reliable
        # low-rate topic next to MB-sized images can stall for Fast DDS's 3 s heartbeat repair after a
        # dropped datagram, holding back every later info (in-order delivery). Reliable (from reliable
        # publishers only) guarantees delivery: a best-effort sample that arrives before this reader has
        # matched the publisher is lost for good, and a bag may hold a single camera_info. A best-effort
        # publisher doesn't match the reliable reader; that is expected here, not an error.
        info = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=cfg.sync.queue_size,
                          reliability=ReliabilityPolicy.BEST_EFFORT)
        info_reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=cfg.sync.queue_size,
                                   reliability=ReliabilityPolicy.RELIABLE)
        if cfg.transport == "compressed":
            streams = ((CompressedImage, topics.COLOR_COMPRESSED, self._on_color),
                       (CompressedImage, topics.DEPTH_COMPRESSED, self._on_depth))
        else:
            streams = ((Image, topics.COLOR, self._on_color), (Image, topics.DEPTH, self._on_depth))
        quiet = SubscriptionEventCallbacks(incompatible_qos=lambda event: None)
        for typ, name, cb in (*streams, (CameraInfo, topics.COLOR_INFO, self._on_color_info),
                              (CameraInfo, topics.DEPTH_INFO, self._on_depth_info),
                              (Transform, topics.DEPTH_TO_COLOR, self._on_extrinsic)):
            events = SubscriptionEventCallbacks(incompatible_qos=self._qos_mismatch(name))
            sub = node.create_subscription(typ, name, cb, info if typ is CameraInfo else images, event_callbacks=events)
            if typ is CameraInfo and cfg.qos.reliability == "reliable":
                # best_effort cameras get no reliable reader: their publishers would warn of it
                node.create_subscription(typ, name, cb, info_reliable, event_callbacks=quiet)
            if typ is Transform:
                # the extrinsic is sent once: from a latched (transient-local) publisher this reader gets
                # it whenever it matches, even long after it was sent (the volatile one only if matched)
                self._extrinsic_subs = [sub, node.create_subscription(typ, name, cb, LATCHED, event_callbacks=quiet)]

    # ---------------------------------------------------------------- callbacks (executor thread)
    def _on_color(self, msg: Image) -> None:
        dups = self.sync.stats.duplicates
        self._offer(self.sync.add_color(stamp_ns(msg.header), msg))
        if self.sync.stats.duplicates != dups:
            self.problems.skip_frame("duplicate_stamp", f"color/image stamp {stamp_ns(msg.header) / 1e9:.6f} s was "
                                     "seen before; dropped (a driver re-sending, or two cameras on one topic?)")

    def _on_depth(self, msg: Image) -> None:
        self._offer(self.sync.add_depth(stamp_ns(msg.header), msg))

    def _offer(self, pair) -> None:
        if pair is None:
            return
        self.stats.count("pairs")
        if self.jobs.put(Job(*pair)):
            self.stats.count("dropped")

    def _on_color_info(self, msg: CameraInfo) -> None:
        self._color_info.add(stamp_ns(msg.header), msg)

    def _on_depth_info(self, msg: CameraInfo) -> None:
        self._depth_info.add(stamp_ns(msg.header), msg)

    def _on_extrinsic(self, msg: Transform) -> None:
        self._extrinsic_msg = msg

    def _qos_mismatch(self, topic: str):
        def cb(event) -> None:
            self.node.get_logger().error(
                f"{topic}: a publisher's QoS is incompatible with this subscription (policy "
                f"{event.last_policy_kind}); nothing will arrive. The node subscribes with qos.reliability="
                f"{self.node.config().qos.reliability}: set qos.reliability:=best_effort for best-effort cameras")
        return cb

    # ---------------------------------------------------------------- job -> frame (worker thread)
    def frame(self, job: Job, cfg: NodeConfig) -> Frame:
        """Decoded images, intrinsics of the stamp, registration set up; InputError names what is wrong."""
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
        info = self._pick_info(self._color_info, "color", job.stamp_ns, slop, color.shape[:2])
        if info is None:
            raise InputError("camera_info_missing", "no message on color/camera_info yet")
        frame = Frame(color=color, depth=depth, k=Intrinsics.from_k(info.k, info.width, info.height),
                      stamp_ns=job.stamp_ns)
        self._set_registration(frame, cfg, slop)
        return frame

    def _pick_info(self, infos: StampedLatest, which: str, stamp: int, slop: int, hw: tuple[int, int]):
        """camera_info for this stamp. A camera that stamps one info per frame (RealSense) may deliver it
        just after the images (DDS orders per topic only): wait up to 0.2 s for it. Unstamped/static
        infos (bags with one info) then use the newest. While no color info has ever arrived, wait
        up to FIRST_INFO_WAIT_S: a best-effort copy lost in the first burst of images comes by the
        reliable route only after Fast DDS's next heartbeat (3 s), and a bag may hold one info. Only infos of
        the image's size ``hw`` are candidates: after a camera changes resolution, one of the old size is
        never paired with a new frame (the frame is skipped, saying so, until one of its size arrives)."""
        def fits(i) -> bool:
            return (i.height, i.width) == tuple(hw)

        info, matched = infos.pick(stamp, slop, fits)
        required_and_absent = info is None and which == "color"  # depth/camera_info is optional
        if not matched and (self._info_per_frame[which] or required_and_absent):
            t0 = time.monotonic()
            deadline = t0 + (FIRST_INFO_WAIT_S if required_and_absent else 0.2)
            while not matched and time.monotonic() < deadline and self.running():
                time.sleep(0.005)
                info, matched = infos.pick(stamp, slop, fits)
                if required_and_absent and info is not None:
                    self.node.get_logger().info(f"first {which}/camera_info arrived {time.monotonic() - t0:.2f} s "
                                                "after the first frame")
                    break
        if matched:
            self._info_per_frame[which] = True
        return info

    def _set_registration(self, frame: Frame, cfg: NodeConfig, slop: int) -> None:
        mode = cfg.registration.mode
        if mode == "off":
            return
        dinfo = self._pick_info(self._depth_info, "depth", frame.stamp_ns, slop, frame.depth.shape[:2])
        if dinfo is None:
            if mode == "on":
                raise InputError("camera_info_missing", "registration.mode is 'on' but no depth/camera_info received")
            return
        dk = Intrinsics.from_k(dinfo.k, dinfo.width, dinfo.height)
        if mode == "auto" and dk == frame.k:
            return  # already aligned
        frame.depth_k = dk
        frame.depth_to_color = self._extrinsic(cfg)

    def _wait_for_extrinsic(self) -> Transform | None:
        """The depth_to_color message; the first frame that needs one waits for it: a camera or bag sends it
        once, and the first images may overtake it (a lost datagram is repaired only at the writer's next
        heartbeat). Up to FIRST_INFO_WAIT_S, or EXTRINSIC_WAIT_S while a publisher of it is matched; after
        that (or once it came) later frames never wait."""
        if self._extrinsic_msg is not None or self._extrinsic_waited:
            return self._extrinsic_msg
        t0 = time.monotonic()
        while self._extrinsic_msg is None and self.running():
            waited = time.monotonic() - t0
            published = any(s.get_publisher_count() > 0 for s in self._extrinsic_subs)
            if waited >= (EXTRINSIC_WAIT_S if published else FIRST_INFO_WAIT_S):
                break
            time.sleep(0.005)
        self._extrinsic_waited = True
        if self._extrinsic_msg is not None and time.monotonic() - t0 > 0.01:
            self.node.get_logger().info(f"depth_to_color arrived {time.monotonic() - t0:.2f} s after the first "
                                        "frame that needed it")
        return self._extrinsic_msg

    def _extrinsic(self, cfg: NodeConfig) -> tuple[np.ndarray, np.ndarray]:
        vals = cfg.registration.depth_to_color
        if len(vals) == 7:
            tx, ty, tz, qx, qy, qz, qw = vals
        elif (msg := self._wait_for_extrinsic()) is not None:
            t, q = msg.translation, msg.rotation
            tx, ty, tz, qx, qy, qz, qw = t.x, t.y, t.z, q.x, q.y, q.z, q.w
        else:
            if self.problems.throttle.ok("identity_extrinsic"):
                self.node.get_logger().warning("registering depth to color with an identity extrinsic: set "
                                               "registration.depth_to_color or publish depth_to_color")
            return np.eye(3), np.zeros(3)
        try:
            return quat_to_matrix(qx, qy, qz, qw), np.array([tx, ty, tz], dtype=np.float64)
        except ValueError as exc:
            raise InputError("extrinsic", str(exc)) from None
