"""Bad input over DDS: for each case the node stays alive, logs one clear (throttled) line, publishes
nothing for the bad frame, and processes the next good frame correctly."""
import time

import numpy as np
import pytest
from rosharness import image_msg, img, info_msg, node_rig, set_params, stamp_of
from scannet import load
from sensor_msgs.msg import Image

from sam_ovseg_ros.core import depth
from sam_ovseg_ros.core.config import DEFAULT_CLASSES

pytestmark = pytest.mark.dds

NS = "t_bad"
S = 1_000_000_000


@pytest.fixture(scope="module")
def rig(rclpy_context, tmp_path_factory):
    with node_rig(NS, {"sync.slop": 0.0, "max_image_pixels": 1_000_000}, tmp_path_factory) as r:
        yield r


@pytest.fixture(scope="module")
def frame():
    return load("1660")


def send(h, color: Image, depth_msg: Image, k=None, info=True):
    """One frame, paced like a camera: a burst of MB-sized images makes Fast DDS delay the small
    camera_info samples by seconds (heartbeat repair), which no real camera stream does."""
    time.sleep(0.15)
    if info:  # camera_info is best effort at the node: send it twice, ahead of the images
        w, hh = (color.width, color.height)
        for _ in range(2):
            h.pub_info.publish(info_msg(k, w, hh, stamp_of(color)))
        time.sleep(0.05)
    h.pub_depth.publish(depth_msg)
    h.pub_color.publish(color)


def good_frame_follows(node, h, frame, stamp):
    """The next good frame is processed: outputs with its stamp, depth image exactly the original rendering."""
    rgb, d, k = frame
    # a camera keeps sending its (valid) camera_info; if the frame's own info is late the node falls
    # back to the newest one, which must not be a bad one from the previous case
    h.pub_info.publish(info_msg(k, rgb.shape[1], rgb.shape[0], stamp - S))
    time.sleep(0.5)
    h.publish(rgb, d, k, stamp)
    out = h.wait_stamp(stamp, timeout=90)
    assert np.array_equal(img(out["depth_colormap"]),
                          depth.render(d, depth.to_metres(d, 0.001), "original", "inferno", 0.001, 0.3, 5.0))
    assert node.alive()


def expect_skipped(node, h, kind, text, stamp, since):
    """No output for the bad stamp; exactly one log line for the repeated problem since ``since``."""
    assert node.wait_log(text, 30), node.log()[since:][-2000:]
    lines = [ln for ln in node.log()[since:].splitlines() if f"[{kind}]" in ln]
    assert len(lines) == 1, lines  # the repeats within the throttle period are counted, not logged
    assert text in lines[0]
    assert h.by_stamp("depth_colormap", stamp) is None and h.by_stamp("points", stamp) is None


@pytest.fixture
def fresh_rig(rclpy_context, tmp_path_factory):
    """A node that has never seen a camera_info (the rig's node may have, from another test)."""
    with node_rig(NS + "_fresh", {"sync.slop": 0.0}, tmp_path_factory) as r:
        yield r


def test_missing_camera_info_first(fresh_rig, frame):
    node, h = fresh_rig
    rgb, d, k = frame
    since = len(node.log())
    for i in range(3):
        time.sleep(0.15)
        h.publish(rgb, d, k, (100 + i) * S, info=False)
    expect_skipped(node, h, "camera_info_missing", "no message on color/camera_info", 100 * S, since)
    good_frame_follows(node, h, frame, 110 * S)


@pytest.mark.parametrize("case,kind,text", [
    ("color_encoding", "color_image", "unsupported encoding 'yuv422'"),
    ("depth_encoding", "depth_image", "unsupported encoding 'rgb8'"),
    ("step", "color_image", "step 100 < 1920"),
    ("truncated", "depth_image", "data has 1000 bytes"),
    ("zero_size", "color_image", "empty image 0x0"),
    ("huge", "color_image", "exceeds max_image_pixels=1000000; refused"),
    ("size_mismatch", "size_mismatch", "depth 320x240 and color 640x480 differ"),
    ("all_invalid", "depth_invalid", "no valid pixel"),
    ("zero_k", "camera_info", "fx=0.0"),
    ("nan_k", "camera_info", "non-finite"),
])
def test_bad_frame_is_skipped_and_the_next_is_processed(rig, frame, case, kind, text):
    node, h = rig
    rgb, d, k = frame
    base = {"color_encoding": 200, "depth_encoding": 210, "step": 220, "truncated": 230, "zero_size": 240,
            "huge": 250, "size_mismatch": 260, "all_invalid": 270, "zero_k": 280, "nan_k": 290}[case] * S
    since = len(node.log())
    for i in range(3):
        st = base + i * S
        color, dep, kk = image_msg(rgb, "rgb8", st), image_msg(d, "16UC1", st), k
        if case == "color_encoding":
            color.encoding = "yuv422"
        elif case == "depth_encoding":
            dep = image_msg(rgb, "rgb8", st)
        elif case == "step":
            color.step = 100
        elif case == "truncated":
            dep.data = bytes(dep.data)[:1000]
        elif case == "zero_size":
            color = Image(encoding="rgb8", height=0, width=0, step=0)
            color.header = dep.header
        elif case == "huge":
            color = Image(encoding="rgb8", height=8000, width=8000, step=24000, data=bytes(64))
            color.header = dep.header
        elif case == "size_mismatch":
            dep = image_msg(np.ascontiguousarray(d[::2, ::2]), "16UC1", st)
        elif case == "all_invalid":
            dep = image_msg(np.zeros_like(d), "16UC1", st)
        elif case == "zero_k":
            kk = np.zeros((3, 3))
        elif case == "nan_k":
            kk = k.copy()
            kk[0, 0] = np.nan
        send(h, color, dep, kk)
    expect_skipped(node, h, kind, text, base, since)
    good_frame_follows(node, h, frame, base + 5 * S)


def test_nan_inf_negative_depth_are_invalid_pixels(rig, frame):
    """32FC1 with NaN, +-inf and negative values: processed, those pixels are holes (NaN points, black)."""
    node, h = rig
    rgb, d, k = frame
    m = d.astype(np.float32) / 1000.0
    m[d == 0] = np.nan
    m[0:10, :] = np.inf
    m[10:20, :] = -np.inf
    m[20:30, :] = -1.5
    h.publish(rgb, m, k, 300 * S)
    out = h.wait_stamp(300 * S, timeout=90)
    pts = np.frombuffer(bytes(out["points"].data), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                                           ("rgb", "<f4"), ("l", "<u4"), ("i", "<u4")]).reshape(480, 640)
    bad = ~(np.isfinite(m) & (m > 0))
    assert np.array_equal(np.isnan(pts["z"]), bad)
    assert (img(out["depth_colormap"])[0:30] == depth.colormap_lut("inferno")[0]).all()


def test_stamps_going_backwards_reset_and_continue(rig, frame):
    node, h = rig
    rgb, d, k = frame
    for st in (400 * S, 401 * S):
        h.publish(rgb, d, k, st)
        h.wait_stamp(st, names=("overlay",), timeout=90)
    h.publish(rgb, d, k, 50 * S)  # the bag looped
    h.wait_stamp(50 * S, names=("overlay", "points"), timeout=90)
    assert node.wait_log("stamps jumped back from 401.000 s to 50.000 s", 10)


def test_duplicate_stamps_are_dropped(rig, frame):
    node, h = rig
    rgb, d, k = frame
    h.publish(rgb, d, k, 500 * S)
    h.wait_stamp(500 * S, names=("overlay",), timeout=90)
    since = len(node.log())
    for _ in range(3):
        time.sleep(0.15)
        h.publish(rgb, d, k, 500 * S)
    expect_skipped(node, h, "duplicate_stamp", "stamp 500.000000 s was seen before", -1, since)
    assert sum(stamp_of(m) == 500 * S for m in h.received["overlay"]) == 1
    good_frame_follows(node, h, frame, 505 * S)


def test_empty_or_duplicate_classes_are_rejected_and_unknown_names_work(rig, frame):
    node, h = rig
    for bad, reason in (([""], "empty names"), (["a", "a"], "duplicate"), ([" "], "empty names")):
        res = set_params(h, {"classes": bad})
        assert not res[0].successful and reason in res[0].reason
    res = set_params(h, {"vocabulary_list": "no_such_list"})
    assert not res[0].successful and "vocabulary_list must be one of" in res[0].reason
    # names no dataset has are fine for an open vocabulary
    assert set_params(h, {"classes": ["zorblax", "flumph gadget"]})[0].successful
    try:
        rgb, d, k = frame
        h.publish(rgb, d, k, 600 * S)
        out = h.wait_stamp(600 * S, timeout=90)
        assert {s.class_name for s in out["segments"].segments} <= {"zorblax", "flumph gadget", ""}
        assert img(out["semantic"]).max() <= 2
        assert node.alive()
    finally:
        assert set_params(h, {"classes": DEFAULT_CLASSES})[0].successful
