"""Cross-process DDS test harness: the node under test runs as its own process; this side publishes
real frames and collects what the node publishes.

Discovery takes 0.07-3 s and a publisher can see its subscriber before the subscriber sees it,
so ``wait_connected`` waits for matches on both sides before anything is sent.
"""
from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from sam_ovseg_ros.ros import compressed, topics

REPO = Path(__file__).resolve().parents[1]
OUTPUTS = topics.FRAME_OUTPUTS


def image_msg(arr: np.ndarray, encoding: str, stamp_ns: int, frame_id: str = "camera_color_optical_frame",
              step: int | None = None, bigendian: bool = False) -> Image:
    """An Image with optional row padding (step) and byte order, as a driver might send it."""
    h, w = arr.shape[:2]
    row = arr.reshape(h, -1)
    if bigendian:
        row = row.astype(row.dtype.newbyteorder(">"))
    raw = row.view(np.uint8).reshape(h, -1)
    step = step or raw.shape[1]
    buf = np.zeros((h, step), np.uint8)
    buf[:, : raw.shape[1]] = raw
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=int(bigendian), step=step, data=buf.tobytes())
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = frame_id
    return msg


def compressed_msg(fmt: str, data: bytes, stamp_ns: int, frame_id: str = "camera_color_optical_frame"):
    msg = CompressedImage(format=fmt, data=data)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = frame_id
    return msg


def info_msg(k: np.ndarray, w: int, h: int, stamp_ns: int, frame_id: str = "camera_color_optical_frame") -> CameraInfo:
    msg = CameraInfo(width=w, height=h, distortion_model="plumb_bob")
    msg.k = [float(v) for v in np.asarray(k, dtype=np.float64).ravel()]
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = frame_id
    return msg


class NodeProcess:
    """``sam_ovseg_node`` as a separate process with parameters, in its own namespace."""

    def __init__(self, namespace: str, params: dict | None = None, log_dir: Path | None = None,
                 remaps: dict | None = None, env: dict | None = None, main: list[str] | None = None) -> None:
        """``env``: extra environment; ``main``: what runs instead of ``-m sam_ovseg_ros.ros.node`` (a profiler)."""
        self.namespace = namespace
        log_dir = log_dir or Path(tempfile.mkdtemp(prefix="sam_ovseg_node_"))
        args = [sys.executable, *(main or ["-m", "sam_ovseg_ros.ros.node"]), "--ros-args", "-r", f"__ns:=/{namespace}"]
        # the map's file goes to the test's own folder, never the user's ~/.ros (nor from one test to another)
        defaults = {"profile": "tiny", "device": "cpu", "map.save_dir": str(log_dir / f"map_{namespace}")}
        for k, v in {**defaults, **(params or {})}.items():
            args += ["-p", f"{k}:={_param_text(v)}"]
        for k, v in (remaps or {}).items():
            args += ["-r", f"{k}:={v}"]
        self.log_path = log_dir / f"node_{namespace}.log"
        self._log = open(self.log_path, "w")
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO, env=env)

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_log(self, text: str, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.log():
                return True
            if not self.alive():
                return False
            time.sleep(0.1)
        return False

    def stop(self, sig: int = signal.SIGINT) -> int:
        """SIGINT (Ctrl-C) or SIGTERM (a launch or systemd stop) for a clean stop; SIGKILL for a crash."""
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def _param_text(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(f'"{x}"' if isinstance(x, str) else repr(x) for x in v) + "]"
    return str(v)


class Harness:
    """Publishes inputs into ``/<ns>/...`` and records every output of ``/<ns>/sam_ovseg/...``.

    ``record=False`` keeps only the counts: a long run (the soak) would otherwise hold every cloud
    it was sent (~11 MB per frame)."""

    def __init__(self, namespace: str, reliability: str = "reliable", transport: str = "raw",
                 record: bool = True, inputs: dict[str, str] | None = None, outputs=None) -> None:
        """``inputs`` names other topics for the node's inputs (``{"color/image": "/camera/..."}``), as a launch
        file remaps them; ``outputs``: the per-frame outputs to subscribe to (default all; fewer keep a
        best-effort receiver from losing samples while it takes megabytes of clouds it does not read)."""
        self.ns = namespace
        self.record = record
        self.transport = transport
        self.color_codec = "jpeg"  # for transport "compressed"
        self.node = Node(f"harness_{namespace}")
        rel = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
        qos = QoSProfile(depth=10, reliability=rel)
        inputs = inputs or {}

        def topic(name: str) -> str:
            return inputs.get(name, f"/{namespace}/{name}")

        if transport == "compressed":
            self.pub_color = self.node.create_publisher(CompressedImage, topic(topics.COLOR_COMPRESSED), qos)
            self.pub_depth = self.node.create_publisher(CompressedImage, topic(topics.DEPTH_COMPRESSED), qos)
        else:
            self.pub_color = self.node.create_publisher(Image, topic(topics.COLOR), qos)
            self.pub_depth = self.node.create_publisher(Image, topic(topics.DEPTH), qos)
        self.pub_info = self.node.create_publisher(CameraInfo, topic(topics.COLOR_INFO), qos)
        self.received: dict[str, list] = defaultdict(list)
        self.arrival: dict[str, list] = defaultdict(list)
        self.counts: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        from visualization_msgs.msg import MarkerArray

        from sam_ovseg_ros.msg import SegmentArray, Vocabulary

        types = {"depth_colormap": Image, "instances": Image, "semantic": Image, "overlay": Image,
                 "points": PointCloud2, "segments": SegmentArray, "markers": MarkerArray}
        out_qos = QoSProfile(depth=50, reliability=rel)
        self.subs = {}
        self.outputs = tuple(outputs or types)
        for name, typ in ((n, types[n]) for n in self.outputs):
            self.subs[name] = self.node.create_subscription(typ, f"/{namespace}/sam_ovseg/{name}",
                                                            self._recorder(name), out_qos)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.subs["vocabulary"] = self.node.create_subscription(
            Vocabulary, f"/{namespace}/sam_ovseg/vocabulary", self._recorder("vocabulary"), latched)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._spin = threading.Thread(target=self._spin_loop, daemon=True)
        self._running = True
        self._spin.start()

    def _spin_loop(self) -> None:
        while self._running and rclpy.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def _recorder(self, name: str):
        def cb(msg):
            with self._lock:
                self.counts[name] += 1
                if self.record:
                    self.received[name].append(msg)
                    self.arrival[name].append(time.monotonic())
        return cb

    def wait_connected(self, timeout: float = 30.0, outputs=None) -> None:
        """Until the node subscribes to our inputs and publishes to our output subscriptions."""
        outputs = [o for o in (outputs or OUTPUTS) if o in self.subs]
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            ins = all(p.get_subscription_count() > 0 for p in (self.pub_color, self.pub_depth, self.pub_info))
            outs = all(self.subs[o].get_publisher_count() > 0 for o in outputs)
            if ins and outs:
                return
            time.sleep(0.05)
        raise TimeoutError(f"node in /{self.ns} did not connect within {timeout} s")

    def publish(self, rgb, depth, k, stamp_ns: int, color_encoding="rgb8", depth_encoding=None,
                frame_id="camera_color_optical_frame", info=True) -> None:
        h, w = rgb.shape[:2]
        if info:  # the node takes camera_info best effort: send it twice, a moment ahead of the images
            for _ in range(2):
                self.pub_info.publish(info_msg(k, w, h, stamp_ns, frame_id))
            time.sleep(0.02)
        if self.transport == "compressed":
            self.pub_depth.publish(compressed_msg(*compressed.encode_depth(depth), stamp_ns, frame_id))
            self.pub_color.publish(compressed_msg(*compressed.encode_color(rgb, self.color_codec), stamp_ns, frame_id))
            return
        enc = depth_encoding or ("16UC1" if depth.dtype == np.uint16 else "32FC1")
        self.pub_depth.publish(image_msg(depth, enc, stamp_ns, frame_id))
        self.pub_color.publish(image_msg(rgb, color_encoding, stamp_ns, frame_id))

    def count(self, name: str) -> int:
        with self._lock:
            return self.counts[name]

    def wait_for(self, name: str, pred=lambda m: True, timeout: float = 60.0, since: int = 0):
        """First message on output ``name`` (index >= since) satisfying ``pred``."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                msgs = list(self.received[name][since:])
            for m in msgs:
                if pred(m):
                    return m
            time.sleep(0.05)
        raise TimeoutError(f"no matching message on {name} within {timeout} s")

    def by_stamp(self, name: str, stamp_ns: int):
        with self._lock:
            for m in self.received[name]:
                if m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec == stamp_ns:
                    return m
        return None

    def wait_stamp(self, stamp_ns: int, names=OUTPUTS, timeout: float = 60.0) -> dict:
        """Every output of one input frame, matched by header stamp."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            got = {n: self.by_stamp(n, stamp_ns) for n in names if n != "markers"}
            if "markers" in names:
                got["markers"] = self._markers_of(stamp_ns)
            if all(v is not None for v in got.values()):
                return got
            time.sleep(0.05)
        missing = [n for n, v in got.items() if v is None]
        raise TimeoutError(f"outputs {missing} of stamp {stamp_ns} not received within {timeout} s")

    def _markers_of(self, stamp_ns: int):
        with self._lock:
            for m in self.received["markers"]:
                if m.markers and (m.markers[0].header.stamp.sec * 1_000_000_000
                                  + m.markers[0].header.stamp.nanosec) == stamp_ns:
                    return m
        return None

    def close(self) -> None:
        self._running = False
        self._spin.join(timeout=2)
        self.executor.remove_node(self.node)
        self.node.destroy_node()


def call_service(harness: Harness, srv_type, name: str, request, timeout: float = 10.0):
    """Call a service of the node under test from the harness node; returns the response."""
    cli = harness.node.create_client(srv_type, name)
    try:
        if not cli.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {name} not available")
        fut = cli.call_async(request)
        end = time.monotonic() + timeout
        while not fut.done() and time.monotonic() < end:
            time.sleep(0.02)
        if not fut.done():
            raise TimeoutError(f"{name} did not answer")
        return fut.result()
    finally:
        harness.node.destroy_client(cli)


def set_params(harness: Harness, values: dict, timeout: float = 10.0) -> list:
    """Set parameters of /<ns>/sam_ovseg through its set_parameters service; returns the results."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    req = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
    return list(call_service(harness, SetParameters, f"/{harness.ns}/sam_ovseg/set_parameters", req, timeout).results)


def get_params(harness: Harness, names: list[str], timeout: float = 10.0) -> list:
    """Current values (rcl_interfaces ParameterValue) of parameters of /<ns>/sam_ovseg."""
    from rcl_interfaces.srv import GetParameters

    req = GetParameters.Request(names=names)
    return list(call_service(harness, GetParameters, f"/{harness.ns}/sam_ovseg/get_parameters", req, timeout).values)


def describe_params(harness: Harness, names: list[str], timeout: float = 10.0) -> list:
    """ParameterDescriptors of /<ns>/sam_ovseg, as `ros2 param describe` shows them."""
    from rcl_interfaces.srv import DescribeParameters

    req = DescribeParameters.Request(names=names)
    return list(call_service(harness, DescribeParameters, f"/{harness.ns}/sam_ovseg/describe_parameters", req,
                             timeout).descriptors)


def check_frame(out, rgb, d, k, stamp, class_names):
    """Every cross-output invariant of one processed frame."""
    for name, msg in out.items():
        header = msg.markers[0].header if name == "markers" else msg.header
        assert stamp_of(type("m", (), {"header": header})) == stamp, name
        assert header.frame_id == "camera_color_optical_frame", name
    h, w = d.shape
    dc = img(out["depth_colormap"])
    assert out["depth_colormap"].encoding == "rgb8" and dc.shape == (h, w, 3)
    inst, sem = img(out["instances"]), img(out["semantic"])
    assert out["instances"].encoding == out["semantic"].encoding == "16UC1"
    pc = out["points"]
    assert (pc.height, pc.width, pc.point_step, pc.is_dense) == (h, w, 24, False)
    pts = cloud_array(pc)
    # cloud = back-projection of the input depth, colours of the input image
    v, u = np.mgrid[0:h, 0:w]
    z = d.astype(np.float64) / 1000.0 if d.dtype == np.uint16 else d.astype(np.float64)
    valid = np.isfinite(z) & (z > 0)
    assert np.array_equal(np.isnan(pts["z"]), ~valid)
    assert np.abs(pts["z"][valid] - z[valid]).max() < 1e-6
    assert np.abs(pts["x"][valid] - ((u - k[0, 2]) * z / k[0, 0])[valid]).max() < 1e-6
    assert np.abs(pts["y"][valid] - ((v - k[1, 2]) * z / k[1, 1])[valid]).max() < 1e-6
    bits = pts["rgb"].view(np.uint32)
    assert np.array_equal(np.stack([(bits >> 16) & 255, (bits >> 8) & 255, bits & 255], -1).astype(np.uint8), rgb)
    # the cloud's label/instance fields are the images at the same (row, col)
    assert np.array_equal(pts["instance"], inst) and np.array_equal(pts["label"], sem)
    # segments describe the instance image exactly
    segs = out["segments"].segments
    n = int(inst.max())
    assert [s.id for s in segs] == list(range(1, n + 1))
    for s in segs:
        sel = inst == s.id
        ys, xs = np.nonzero(sel)
        assert s.area == sel.sum() > 0
        assert (s.bbox.x_offset, s.bbox.y_offset, s.bbox.width, s.bbox.height) == (
            xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        ok = sel & valid
        assert s.valid_points == ok.sum()
        c = (s.centroid.x, s.centroid.y, s.centroid.z)
        if ok.any():
            mean = [pts[f][ok].astype(np.float64).mean() for f in "xyz"]
            assert np.allclose(c, mean, atol=1e-5)
        else:
            assert all(math.isnan(x) for x in c)
        # every instance maps to exactly one class; semantic carries it on every pixel of the instance
        assert (sem[sel] == s.class_id).all()
        assert s.class_name == (class_names[s.class_id - 1] if s.class_id else "")
    assert (sem <= len(class_names)).all()
    # markers: one text per segment with a finite centroid, at that centroid, in the cloud frame
    texts = [m for m in out["markers"].markers if m.action == 0]
    assert out["markers"].markers[0].action == 3  # DELETEALL first
    # markers and overlay colours follow track ids: unique per frame, never 0
    by_track = {s.track_id: s for s in segs}
    assert len(by_track) == len(segs) and 0 not in by_track
    assert {m.id for m in texts} == {s.track_id for s in segs if s.valid_points > 0}
    for m in texts:
        s = by_track[m.id]
        assert m.header.frame_id == pc.header.frame_id and m.text == (s.class_name or f"#{s.id}")
        assert (m.pose.position.x, m.pose.position.y, m.pose.position.z) == (s.centroid.x, s.centroid.y, s.centroid.z)
        assert m.lifetime.sec + m.lifetime.nanosec > 0
    ov = img(out["overlay"])
    assert out["overlay"].encoding == "rgb8" and ov.shape == rgb.shape
    assert not np.array_equal(ov[inst > 0], rgb[inst > 0])
    return dc, inst, sem, segs


def img(msg) -> np.ndarray:
    """Decoded array of a received Image (rgb8 or 16UC1)."""
    from sam_ovseg_ros.ros.image_codec import ENCODINGS, RawImage, decode

    return np.array(decode(RawImage.from_msg(msg), tuple(ENCODINGS), 1 << 30))


def cloud_array(msg) -> np.ndarray:
    from sam_ovseg_ros.core.cloud import POINT_DTYPE

    return np.frombuffer(bytes(msg.data), POINT_DTYPE).reshape(msg.height, msg.width)


def stamp_of(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


@contextlib.contextmanager
def node_rig(namespace: str, params: dict, tmp_path_factory, reliability: str = "reliable", outputs=None):
    """A tiny-profile node process in ``namespace`` and a connected harness (subscribed to ``outputs``,
    default all); the node must exit cleanly."""
    node = NodeProcess(namespace, {"weights_dir": str(tmp_path_factory.mktemp("w")), **params},
                       log_dir=tmp_path_factory.mktemp("logs"))
    h = Harness(namespace, reliability, params.get("transport", "raw"), outputs=outputs)
    try:
        h.wait_connected(90)
        yield node, h
    finally:
        h.close()
        code = node.stop()
        sys.stdout.write(node.log()[-3000:])
        assert code == 0, "node did not exit cleanly"


def d435_data(data):
    """Color frame, the depth frame the node pairs with it (100 ms later), both camera_infos, extrinsic."""
    from rosbags.highlevel import AnyReader

    p = data / "d435" / "single_depth_color_640x480_ros2"
    msgs = {}
    with AnyReader([p]) as r:
        for c, t, raw in r.messages():
            msgs.setdefault(c.topic, []).append(r.deserialize(raw, c.msgtype))
    color = msgs["/device_0/sensor_1/Color_0/image/data"][0]
    depth_msg = msgs["/device_0/sensor_0/Depth_0/image/data"][0]
    return color, depth_msg, msgs["/device_0/sensor_1/Color_0/info/camera_info"][0], \
        msgs["/device_0/sensor_0/Depth_0/info/camera_info"][0], msgs["/device_0/sensor_1/Color_0/tf/0"][0]


def d435_registered_z(depth_msg, color_info, depth_info, tf) -> np.ndarray:
    """z of the D435 depth registered into the colour camera with the recording's extrinsic (what the cloud holds)."""
    from sam_ovseg_ros.core import depth, registration
    from sam_ovseg_ros.core.cloud import Intrinsics

    d = np.frombuffer(depth_msg.data.tobytes(), np.uint16).reshape(480, 640)
    rot = registration.quat_to_matrix(tf.rotation.x, tf.rotation.y, tf.rotation.z, tf.rotation.w)
    t = np.array([tf.translation.x, tf.translation.y, tf.translation.z])
    assert not np.allclose(rot, np.eye(3)) or np.abs(t).max() > 0.01  # the recording's extrinsic is not identity
    return registration.register(depth.to_metres(d, 0.001), Intrinsics.from_k(depth_info.k, 640, 480),
                                 Intrinsics.from_k(color_info.k, 640, 480), rot, t)
