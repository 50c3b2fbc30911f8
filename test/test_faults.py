"""Faults that happen on robots, over DDS with the node as its own process: the camera changes resolution
mid-stream and back (each frame at its own size, no stale rays or track images), camera_info changes K,
the input publisher dies and another comes back, the clock jumps forward an hour (TF, tracking and the map
keep working)."""
import time

import cv2
import pytest
import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosharness import Harness, check_frame, node_rig
from scannet import load
from test_map_node import tf_message
from tf2_msgs.msg import TFMessage

from sam_ovseg_ros.core.config import DEFAULT_CLASSES
from sam_ovseg_ros.tools import samplebag

pytestmark = pytest.mark.dds

NS = "t_faults"
S = 1_000_000_000


@pytest.fixture(scope="module")
def rig(rclpy_context, tmp_path_factory):
    with node_rig(NS, {"sync.slop": 0.0, "map.tf_timeout": 0.5, "map.publish_period": 0.5,
                       "map.save_dir": str(tmp_path_factory.mktemp("map"))}, tmp_path_factory) as r:
        yield r


def scaled(rgb, d, k, w, h):
    """The frame as a camera in another mode would give it: resized, K scaled to match."""
    sx, sy = w / rgb.shape[1], h / rgb.shape[0]
    k2 = k.copy()
    k2[0] *= sx
    k2[1] *= sy
    return (cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA),
            cv2.resize(d, (w, h), interpolation=cv2.INTER_NEAREST), k2)


def test_resolution_changes_mid_stream_and_back(rig):
    node, h = rig
    rgb, d, k = load("1660")
    for i, (w, hh) in enumerate([(640, 480), (1280, 720), (1280, 720), (640, 480), (320, 240)]):
        r, dd, kk = scaled(rgb, d, k, w, hh)
        stamp = (100 + i) * S
        h.publish(r, dd, kk, stamp)
        out = h.wait_stamp(stamp, timeout=120)
        check_frame(out, r, dd, kk, stamp, DEFAULT_CLASSES)  # cloud = this frame's back-projection with its K
    assert node.alive() and "frame failed" not in node.log()


def test_an_old_size_camera_info_is_never_paired_with_a_new_frame(rig):
    """An 848x480 frame (a size not seen before) whose camera_info has not arrived yet: skipped with the reason
    (the 640x480 info of the frame before is not used), and the next frame with its info is processed. (An
    info of the frame's size that came earlier, from the same mode, would be used.)"""
    node, h = rig
    rgb, d, k = load("5560")
    h.publish(rgb, d, k, 200 * S)
    h.wait_stamp(200 * S, timeout=120)
    r, dd, kk = scaled(rgb, d, k, 848, 480)
    h.publish(r, dd, kk, 201 * S, info=False)
    assert node.wait_log("camera_info is 640x480 but the color image is 848x480", 30)
    h.publish(r, dd, kk, 202 * S)
    check_frame(h.wait_stamp(202 * S, timeout=120), r, dd, kk, 202 * S, DEFAULT_CLASSES)
    assert h.by_stamp("points", 201 * S) is None


def test_camera_info_changing_k_is_used_from_its_frame_on(rig):
    node, h = rig
    rgb, d, k = load("2760")
    for i, f in enumerate([1.0, 1.2, 1.0]):
        kk = k.copy()
        kk[0, 0] *= f
        kk[1, 1] *= f
        kk[0, 2] += 10 * i
        stamp = (300 + i) * S
        h.publish(rgb, d, kk, stamp)
        check_frame(h.wait_stamp(stamp, timeout=120), rgb, d, kk, stamp, DEFAULT_CLASSES)


def test_the_input_publisher_dies_and_comes_back(rig):
    node, h = rig
    rgb, d, k = load("1660")
    other = Harness(NS)  # another participant: its publishers go away with it
    try:
        other.wait_connected(60)
        other.publish(rgb, d, k, 400 * S)
        other.wait_stamp(400 * S, timeout=120)
    finally:
        other.close()
    time.sleep(1.0)
    again = Harness(NS)  # the camera driver restarted: a new participant on the same topics
    try:
        again.wait_connected(60)
        again.publish(rgb, d, k, 401 * S)
        check_frame(again.wait_stamp(401 * S, timeout=120), rgb, d, k, 401 * S, DEFAULT_CLASSES)
    finally:
        again.close()
    assert node.alive()


def test_the_clock_jumps_forward_an_hour(rig):
    """Posed frames, then the same scene an hour later (stamps and TF): the map integrates both, tracks go on."""
    node, h = rig
    tf = h.node.create_publisher(TFMessage, "/tf", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    static = h.node.create_publisher(TFMessage, "/tf_static", QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    frames = samplebag.load_posed_frames()[:2]
    _, st = samplebag.tf_links(frames[0][4])
    static.publish(tf_message(st, 0))
    since = len(node.log())
    tracks = []
    for base in (500, 500 + 3600):
        for i, (_, rgb, depth, k, pose) in enumerate(frames):
            stamp = (base + i) * S
            dyn, _ = samplebag.tf_links(pose)
            tf.publish(tf_message(dyn, stamp))
            time.sleep(0.05)
            h.publish(rgb, depth, k, stamp)
            tracks.append({s.track_id for s in h.wait_stamp(stamp, names=("segments",), timeout=120)["segments"].segments})
    log = node.log()[since:]
    assert "map: no transform" not in log and "jumped back" not in log
    assert tracks[2] & tracks[1]  # the same view an hour later keeps its objects' tracks
    assert rclpy.ok() and node.alive()
