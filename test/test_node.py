"""sam_ovseg_node as a separate process, real ScanNet frames over DDS on loopback (tiny models on CPU).

Checks that every output agrees exactly with the inputs and with each other: the depth image is
SegmentAnyRGBD's rendering, cloud points are the back-projection, cloud label/instance fields are the
images at the same pixel, segments describe the instance image, semantic is the instance's class.
"""

import numpy as np
import pytest
from rosharness import check_frame, cloud_array, describe_params, get_params, img, node_rig, set_params
from scannet import load

from sam_ovseg_ros.core import config as config_mod
from sam_ovseg_ros.core import depth, vocabulary
from sam_ovseg_ros.core.config import DEFAULT_CLASSES

pytestmark = pytest.mark.dds

NS = "t_node"


@pytest.fixture(scope="module")
def rig(rclpy_context, tmp_path_factory):
    with node_rig(NS, {"sync.slop": 0.0, "diagnostics.period": 2.0}, tmp_path_factory) as r:
        yield r


# the run-time parameters tests change, at their start-up values: every test leaves the node as it found it
DEFAULTS = {"classes": DEFAULT_CLASSES, "vocabulary_list": "", "sam.input": "depth", "fusion.mode": "vote",
            "cloud.organized": True}


@pytest.fixture(autouse=True)
def restore_parameters(rig):
    yield
    assert all(r.successful for r in set_params(rig[1], DEFAULTS))


def frame_outputs(h, rgb, d, k, stamp, **kw):
    h.publish(rgb, d, k, stamp, **kw)
    return h.wait_stamp(stamp, timeout=90)


def test_scannet_frame_end_to_end(rig):
    node, h = rig
    rgb, d, k = load("1660")
    out = frame_outputs(h, rgb, d, k, 1_000_000_000)
    dc, inst, sem, segs = check_frame(out, rgb, d, k, 1_000_000_000, DEFAULT_CLASSES)
    assert np.array_equal(dc, depth.render(d, depth.to_metres(d, 0.001), "original", "inferno", 0.001, 0.3, 5.0))
    assert len(segs) >= 2  # the tiny SAM gives several instances on a real frame
    assert 0.01 < (inst > 0).mean() < 1.0
    assert h.wait_for("vocabulary", lambda m: list(m.class_names) == DEFAULT_CLASSES, timeout=10)
    assert list(h.received["vocabulary"][-1].class_names) == DEFAULT_CLASSES


def test_other_encodings_give_the_same_outputs(rig):
    """bgr8 with row padding and 32FC1 metres (NaN holes) reproduce the 16UC1/rgb8 frame's outputs."""
    node, h = rig
    rgb, d, k = load("1660")
    ref = frame_outputs(h, rgb, d, k, 2_000_000_000)
    m = d.astype(np.float32) / 1000.0
    m[d == 0] = np.nan
    from rosharness import image_msg, info_msg

    h.pub_info.publish(info_msg(k, 640, 480, 3_000_000_000))
    h.pub_depth.publish(image_msg(m, "32FC1", 3_000_000_000, step=640 * 4 + 16))
    h.pub_color.publish(image_msg(np.ascontiguousarray(rgb[..., ::-1]), "bgr8", 3_000_000_000, step=640 * 3 + 64))
    out = h.wait_stamp(3_000_000_000, timeout=90)
    check_frame(out, rgb, m, k, 3_000_000_000, DEFAULT_CLASSES)
    for name in ("depth_colormap", "instances", "semantic", "overlay"):
        assert np.array_equal(img(out[name]), img(ref[name])), name
    a, b = cloud_array(out["points"]), cloud_array(ref["points"])
    assert np.array_equal(a["instance"], b["instance"]) and np.array_equal(a["label"], b["label"])
    assert np.allclose(a["z"], b["z"], atol=1e-6, equal_nan=True)


def test_sam_on_rgb_and_mask_clip_fusion(rig):
    node, h = rig
    rgb, d, k = load("5560")
    depth_mode = frame_outputs(h, rgb, d, k, 4_000_000_000)
    assert all(r.successful for r in set_params(h, {"sam.input": "rgb", "fusion.mode": "mask_clip"}))
    rgb_mode = frame_outputs(h, rgb, d, k, 5_000_000_000)
    _, inst, sem, segs = check_frame(rgb_mode, rgb, d, k, 5_000_000_000, DEFAULT_CLASSES)
    assert not np.array_equal(inst, img(depth_mode["instances"]))  # SAM saw a different image
    assert np.array_equal(img(rgb_mode["depth_colormap"]), img(depth_mode["depth_colormap"]))
    assert all(0.0 < s.class_score <= 1.0 for s in segs if s.class_id)  # CLIP probabilities


def test_vocabulary_change_applies_to_the_next_frame(rig):
    node, h = rig
    rgb, d, k = load("2760")
    before = h.count("vocabulary")
    bad = set_params(h, {"classes": ["chair", "table", "chair"]})
    assert not bad[0].successful and "duplicate" in bad[0].reason
    assert all(r.successful for r in set_params(h, {"classes": ["chair", "table"]}))
    vocab = h.wait_for("vocabulary", lambda m: list(m.class_names) == ["chair", "table"], timeout=10, since=before)
    assert vocab is not None
    out = frame_outputs(h, rgb, d, k, 6_000_000_000)
    _, inst, sem, segs = check_frame(out, rgb, d, k, 6_000_000_000, ["chair", "table"])
    assert set(np.unique(sem)) <= {0, 1, 2} and any(s.class_id for s in segs)
    assert {s.class_name for s in segs} <= {"chair", "table", ""}
    assert "vocabulary changed: 2 classes" in node.log()


def test_one_name_vocabulary_keeps_others_out_of_the_class(rig):
    """classes [C] (OVSeg appends "others", which votes) against [C, "others"] on the same frame:
    the same instances; C exactly where C is; unlabelled exactly where the other says "others"."""
    node, h = rig
    rgb, d, k = load("1660")
    assert all(r.successful for r in set_params(h, {"sam.input": "rgb", "classes": ["wall"]}))
    one = frame_outputs(h, rgb, d, k, 7_000_000_000)
    assert all(r.successful for r in set_params(h, {"classes": ["wall", "others"]}))
    two = frame_outputs(h, rgb, d, k, 8_000_000_000)
    check_frame(one, rgb, d, k, 7_000_000_000, ["wall"])
    check_frame(two, rgb, d, k, 8_000_000_000, ["wall", "others"])
    assert np.array_equal(img(one["instances"]), img(two["instances"]))
    s1, s2 = img(one["semantic"]), img(two["semantic"])
    assert (s2 == 1).any() and (s2 == 2).any()  # the frame really has both: the comparison is not vacuous
    assert np.array_equal(s1 == 1, s2 == 1)
    assert np.array_equal(s1 == 0, (s2 == 0) | (s2 == 2))
    c1 = [s.class_id for s in one["segments"].segments]
    c2 = [s.class_id for s in two["segments"].segments]
    assert c1 == [c if c == 1 else 0 for c in c2]


def test_parameters_describe_themselves(rig):
    """`ros2 param describe`: every parameter has its meaning (with choices, units); start-up ones are read-only."""
    node, h = rig
    names = [n for n, _ in config_mod.iter_leaves(config_mod.NodeConfig())]
    descs = describe_params(h, names)
    assert [d.name for d in descs] == names
    for d in descs:
        assert len(d.description) > 25 and "config.py" not in d.description, d.name
        assert d.read_only == (d.name in config_mod.STARTUP_ONLY), d.name
        if d.read_only:
            assert "Read-only" in d.description, d.name
        if d.name in config_mod.CHOICES:
            assert all(c in d.additional_constraints for c in config_mod.CHOICES[d.name]), d.name
    by_name = {d.name: d for d in descs}
    assert "0 switches the filter off" in by_name["sam.pred_iou_thresh"].description
    assert "metres" in by_name["depth.min_m"].description
    refused = set_params(h, {"profile": "default"})
    assert not refused[0].successful


def test_classes_show_the_bundled_list_in_use(rig):
    """At run time the vocabulary changes through classes or a bundled list; files are the operator's choice at
    start-up: anyone on the graph setting vocabulary_file or map.save_dir is refused, nothing is read."""
    node, h = rig
    for name, value in (("vocabulary_file", "/etc/passwd"), ("map.save_dir", "/tmp/elsewhere"),
                        ("weights_dir", "/tmp"), ("ovseg.checkpoint", "/etc/shadow")):
        res = set_params(h, {name: value})[0]
        assert not res.successful and "read-only" in res.reason, name  # declared read-only: rclpy refuses
    assert list(get_params(h, ["classes"])[0].string_array_value) == DEFAULT_CLASSES
    before = h.count("vocabulary")
    assert all(r.successful for r in set_params(h, {"vocabulary_list": "ade20k_150"}))
    ade = vocabulary.load("ade20k_150")
    assert list(get_params(h, ["classes"])[0].string_array_value) == ade
    assert h.wait_for("vocabulary", lambda m: list(m.class_names) == ade, timeout=10, since=before)
    rgb, d, k = load("2760")
    out = frame_outputs(h, rgb, d, k, 9_000_000_000)
    check_frame(out, rgb, d, k, 9_000_000_000, ade)
    assert all(r.successful for r in set_params(h, {"classes": DEFAULT_CLASSES}))  # classes alone: the list is cleared
    assert get_params(h, ["vocabulary_list"])[0].string_value == ""


def test_dense_cloud_is_the_valid_points_of_the_organized_one(rig):
    """cloud.organized: false at run time -- one row of exactly the organized cloud's valid points, in
    image order and byte for byte, flagged is_dense; the other outputs do not change."""
    node, h = rig
    rgb, d, k = load("5560")
    organized = frame_outputs(h, rgb, d, k, 10_000_000_000)
    assert all(r.successful for r in set_params(h, {"cloud.organized": False}))
    dense = frame_outputs(h, rgb, d, k, 11_000_000_000)
    pc = dense["points"]
    full = cloud_array(organized["points"])
    valid = d > 0
    assert (pc.height, pc.width, pc.is_dense, pc.row_step) == (1, int(valid.sum()), True, 24 * int(valid.sum()))
    assert organized["points"].is_dense is False
    assert bytes(pc.data) == full[valid].tobytes()
    for name in ("instances", "semantic", "depth_colormap"):
        assert np.array_equal(img(dense[name]), img(organized[name])), name
