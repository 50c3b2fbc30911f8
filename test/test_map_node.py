"""The node over DDS with a robot's TF tree: real 7-Scenes frames, poses on /tf as
map -> odom -> base_link (dynamic) -> camera_color_optical_frame (static) -> ~/map/*, track ids."""
import json
import time

import numpy as np
import pytest
from geometry_msgs.msg import TransformStamped
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosharness import call_service, node_rig
from sensor_msgs.msg import PointCloud2
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage

from sam_ovseg_ros.msg import ObjectArray
from sam_ovseg_ros.ros.messages import MAP_POINT_DTYPE
from sam_ovseg_ros.tools import samplebag

pytestmark = pytest.mark.dds

NS = "t_map"
S = 1_000_000_000
VOXEL = 0.05


@pytest.fixture(scope="module")
def rig(rclpy_context, tmp_path_factory):
    save = tmp_path_factory.mktemp("map")
    with node_rig(NS, {"sync.slop": 0.0, "map.publish_period": 0.5, "map.save_dir": str(save),
                       "map.tf_timeout": 0.5, "map.pixel_stride": 1}, tmp_path_factory) as (node, h):
        got = {"points": [], "objects": []}
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        h.node.create_subscription(PointCloud2, f"/{NS}/sam_ovseg/map/points", got["points"].append, latched)
        h.node.create_subscription(ObjectArray, f"/{NS}/sam_ovseg/map/objects", got["objects"].append, latched)
        tf = h.node.create_publisher(TFMessage, "/tf", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        static = h.node.create_publisher(TFMessage, "/tf_static", QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        yield node, h, tf, static, got, save


def tf_message(links, stamp):
    msg = TFMessage()
    for parent, child, m in links:
        t, q = samplebag.matrix_to_tq(m)
        tr = TransformStamped(child_frame_id=child)
        tr.header.frame_id = parent
        tr.header.stamp.sec, tr.header.stamp.nanosec = divmod(stamp, S)
        tr.transform.translation.x, tr.transform.translation.y, tr.transform.translation.z = map(float, t)
        (tr.transform.rotation.x, tr.transform.rotation.y, tr.transform.rotation.z,
         tr.transform.rotation.w) = map(float, q)
        msg.transforms.append(tr)
    return msg


def voxels_of(depth, k, pose):
    v, u = np.nonzero(depth)
    z = depth[v, u] / 1000.0
    cam = np.stack([(u - k[0, 2]) * z / k[0, 0], (v - k[1, 2]) * z / k[1, 1], z], -1)
    return np.unique(np.floor((cam @ pose[:3, :3].T + pose[:3, 3]) / VOXEL).astype(np.int64), axis=0)


def test_posed_frames_build_the_map_and_keep_track_ids(rig):
    node, h, tf, static, got, save = rig
    since = len(node.log())
    frames = samplebag.load_posed_frames()[:4]
    _, st = samplebag.tf_links(frames[0][4])
    static.publish(tf_message(st, 0))
    segs = []
    for i, (_, rgb, depth, k, pose) in enumerate(frames + frames[:1]):  # the first frame again at the end
        stamp = (10 + i) * S
        dyn, _ = samplebag.tf_links(pose)
        tf.publish(tf_message(dyn, stamp))
        h.publish(rgb, depth, k, stamp)
        segs.append(h.wait_stamp(stamp, names=("segments",), timeout=90)["segments"].segments)
    assert "map: no transform" not in node.log()[since:]
    ids = [[s.track_id for s in f] for f in segs]
    assert all(t > 0 for f in ids for t in f) and all(len(set(f)) == len(f) for f in ids)
    assert set(ids[1]) & set(ids[0])  # small camera motion: objects keep their tracks
    # the map: voxel centres on the back-projected surfaces of the posed frames (independent arithmetic)
    cloud = None
    end = time.monotonic() + 20
    while time.monotonic() < end:
        if got["points"] and got["points"][-1].header.stamp.sec == 14:
            cloud = got["points"][-1]
            break
        time.sleep(0.1)
    assert cloud is not None and cloud.header.frame_id == "map" and cloud.height == 1
    pts = np.frombuffer(bytes(cloud.data), MAP_POINT_DTYPE)
    expected = np.unique(np.concatenate([voxels_of(d, k, p) for _, _, d, k, p in frames]), axis=0)
    mapped = np.floor(np.stack([pts["x"], pts["y"], pts["z"]], -1) / VOXEL).astype(np.int64)
    assert len(mapped) > 5000
    exp = {tuple(v) for v in expected.tolist()}
    on_surface = np.array([tuple(v) in exp for v in mapped.tolist()])
    # float32 points and a pose through a TF chain move a few points across voxel faces: the map lies
    # on the surfaces and covers them, each within one voxel
    from scipy.spatial import cKDTree
    assert on_surface.mean() > 0.98
    assert cKDTree(expected).query(mapped[~on_surface], p=np.inf)[0].max(initial=0) <= 1
    assert cKDTree(mapped).query(expected, p=np.inf)[0].max() <= 1
    objects = got["objects"][-1]
    assert objects.header.frame_id == "map" and len(objects.objects) >= 1
    assert {o.id for o in objects.objects} <= set(np.unique(pts["object"]).tolist())
    for o in objects.objects:
        mine = pts[pts["object"] == o.id]
        assert o.voxels == len(mine) and o.views >= 1
        assert abs(o.centroid.x - mine["x"].astype(np.float64).mean()) < 1e-4
        assert o.bbox_min.x <= mine["x"].min() and o.bbox_max.z >= mine["z"].max()
    # save and clear through the services
    res = call_service(h, Trigger, f"/{NS}/sam_ovseg/map/save", Trigger.Request())
    assert res.success and (save / "map.ply").is_file()
    saved = json.loads((save / "objects.json").read_text())
    assert {o["id"] for o in saved["objects"]} == {o.id for o in objects.objects}
    head = (save / "map.ply").read_bytes().split(b"end_header\n")[0].decode()
    assert f"element vertex {len(pts)}" in head and "property uint object" in head
    assert call_service(h, Trigger, f"/{NS}/sam_ovseg/map/clear", Trigger.Request()).success
    end = time.monotonic() + 10
    while time.monotonic() < end and got["points"][-1].width != 0:
        time.sleep(0.1)
    assert got["points"][-1].width == 0


def test_a_missing_link_skips_the_map_only(rig):
    """A second camera whose TF tree never reaches the map: its frames are processed and published, the
    map skips them with a warning naming where each frame's chain ends."""
    node, h, tf, static, got, save = rig
    _, rgb, depth, k, _ = samplebag.load_posed_frames()[0]
    tf.publish(tf_message([("rig_base", "camera2_optical_frame", np.eye(4))], 30 * S))
    h.publish(rgb, depth, k, 30 * S, frame_id="camera2_optical_frame")
    out = h.wait_stamp(30 * S, timeout=90)  # every per-frame output is still published
    assert out["segments"].segments and all(s.track_id for s in out["segments"].segments)
    assert node.wait_log("map: no transform map <- 'camera2_optical_frame'", 10)
    line = next(ln for ln in node.log().splitlines() if "map: no transform map <- 'camera2" in ln)
    assert "'rig_base'" in line and "not connected" in line
