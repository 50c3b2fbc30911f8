"""Back-projection and the PointCloud2 layout, exact on real ScanNet depth."""
import numpy as np
import pytest
from scannet import FRAMES, load

from sam_ovseg_ros.core import cloud, depth
from sam_ovseg_ros.core.cloud import POINT_DTYPE, Intrinsics
from sam_ovseg_ros.core.instances import measure


@pytest.mark.parametrize("frame", FRAMES)
def test_points_are_the_back_projection(frame, backend):
    rgb, d, k = load(frame)
    kk = Intrinsics.from_k(k, 640, 480)
    pts = cloud.build_points(cloud.Backprojector(), depth.to_metres(d, 0.001), rgb, kk)
    assert pts.shape == (480, 640) and pts.dtype == POINT_DTYPE and pts.dtype.itemsize == 24
    v, u = np.mgrid[0:480, 0:640]
    z = d.astype(np.float64) / 1000.0
    valid = d > 0
    assert np.array_equal(np.isnan(pts["z"]), ~valid)
    assert np.isnan(pts["x"][~valid]).all() and np.isnan(pts["y"][~valid]).all()
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    assert np.abs(pts["z"][valid] - z[valid]).max() < 1e-6
    assert np.abs(pts["x"][valid] - ((u - cx) * z / fx)[valid]).max() < 1e-6
    assert np.abs(pts["y"][valid] - ((v - cy) * z / fy)[valid]).max() < 1e-6
    assert np.array_equal(cloud.unpack_rgb(pts["rgb"]), rgb)
    assert (pts["label"] == 0).all() and (pts["instance"] == 0).all()


def test_original_sample_point():
    """SegmentAnyRGBD run_on_pcd back-projection, frame 1660, pixel (320, 240): Z 2.316 m, camera (0.004, -0.011, 2.316)."""
    rgb, d, k = load("1660")
    pts = cloud.build_points(cloud.Backprojector(), depth.to_metres(d, 0.001), rgb, Intrinsics.from_k(k, 640, 480))
    p = pts[240, 320]
    assert (round(float(p["x"]), 3), round(float(p["y"]), 3), round(float(p["z"]), 3)) == (0.004, -0.011, 2.316)


def test_rgb_packing_is_0x00rrggbb():
    rgb = np.array([[[0x12, 0x34, 0x56], [255, 0, 1]]], np.uint8)
    bits = cloud.pack_rgb(rgb).view(np.uint32)
    assert bits.tolist() == [[0x123456, 0xFF0001]]


def test_dense_keeps_only_valid_points_in_order():
    """cloud.organized: false -- the valid points in image order, in memory a message owns as it is, and
    flagged is_dense; the pipeline builds the organized cloud it selects from in reused memory."""
    from std_msgs.msg import Header

    from sam_ovseg_ros.core.config import NodeConfig
    from sam_ovseg_ros.core.frame_pipeline import Pipeline
    from sam_ovseg_ros.core.frame_types import Frame
    from sam_ovseg_ros.ros import messages

    rgb, d, k = load("2760")
    pts = cloud.build_points(cloud.Backprojector(), depth.to_metres(d, 0.001), rgb, Intrinsics.from_k(k, 640, 480))
    dense = cloud.dense_points(pts, messages.message_array)
    assert dense.shape == (1, int((d > 0).sum())) and 0 < dense.shape[1] < d.size
    assert np.array_equal(dense[0], pts[d > 0])
    msg = messages.point_cloud(dense, Header(frame_id="cam"), dense=True)
    assert (msg.height, msg.width, msg.is_dense) == (1, dense.shape[1], True)
    assert messages.buffer(dense) is msg.data  # no copy on the way into the message
    cfg = NodeConfig()
    cfg.cloud.organized = False
    pipe = Pipeline(alloc=messages.message_array)
    frame = Frame(rgb, d, Intrinsics.from_k(k, 640, 480))
    first, second = pipe.process(frame, cfg), pipe.process(frame, cfg)
    assert first.points_dense and first.points.tobytes() == dense.tobytes()
    assert second.points.tobytes() == dense.tobytes() and not np.shares_memory(first.points, second.points)
    assert not Pipeline().process(frame, NodeConfig()).points_dense


def test_centroids_are_means_of_valid_points(backend):
    rgb, d, k = load("5560")
    inst = np.zeros((480, 640), np.uint16)
    inst[100:200, 100:300] = 1
    inst[300:, :] = 2
    inst[0:5, 0:5] = 3
    d = d.copy()
    d[0:5, 0:5] = 0  # instance 3 has no valid depth
    bp, kk, dm = cloud.Backprojector(), Intrinsics.from_k(k, 640, 480), depth.to_metres(d, 0.001)
    pts = cloud.build_points(bp, dm, rgb, kk)
    m = measure(inst, 3, depth_m=dm, rays=bp.rays(kk))
    cents, counts = m.centroids, m.valid_points
    for i in (1, 2):
        sel = (inst == i) & (d > 0)
        assert counts[i - 1] == sel.sum()
        for j, f in enumerate("xyz"):
            assert abs(cents[i - 1, j] - pts[f][sel].astype(np.float64).mean()) < 1e-9
    assert counts[2] == 0 and np.isnan(cents[2]).all()


def test_bad_intrinsics_are_reported():
    assert Intrinsics(0, 1, 1, 1, 4, 4).problem()
    assert Intrinsics(np.nan, 1, 1, 1, 4, 4).problem()
    assert Intrinsics(1, 1, 1, 1, 0, 4).problem()
    assert Intrinsics(500, 500, 320, 240, 640, 480).problem() is None


def test_pointcloud2_message_layout():
    from std_msgs.msg import Header

    from sam_ovseg_ros.ros import messages

    rgb, d, k = load("1660")
    pts = cloud.build_points(cloud.Backprojector(), depth.to_metres(d, 0.001), rgb, Intrinsics.from_k(k, 640, 480))
    msg = messages.point_cloud(pts, Header(frame_id="cam"))
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (480, 640, 24, 24 * 640)
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("rgb", 12, 7, 1), ("label", 16, 6, 1), ("instance", 20, 6, 1)]
    assert msg.is_dense is False and msg.is_bigendian is False
    back = np.frombuffer(bytes(msg.data), POINT_DTYPE).reshape(480, 640)
    assert back.tobytes() == pts.tobytes()


def test_decimated_cloud_is_every_nth_point_of_the_full_one(backend):
    """cloud.decimation n: rows and columns 0, n, 2n... of the organized cloud, a quarter of the bytes at 2."""
    from sam_ovseg_ros.core.config import NodeConfig
    from sam_ovseg_ros.core.frame_pipeline import Pipeline
    from sam_ovseg_ros.core.frame_types import Frame

    rgb, d, k = load("2760")
    frame = Frame(rgb, d, Intrinsics.from_k(k, 640, 480))
    cfg = NodeConfig()
    full = Pipeline().process(frame, cfg).points
    for n, shape in ((2, (240, 320)), (3, (160, 214))):
        cfg.cloud.decimation = n
        dec = Pipeline().process(frame, cfg).points
        assert dec.shape == shape and dec.nbytes * n * n <= full.nbytes * 1.01
        ref = full[::n, ::n]
        assert np.array_equal(np.isnan(dec["z"]), np.isnan(ref["z"]))
        for f in ("x", "y", "z"):
            np.testing.assert_allclose(dec[f], ref[f], atol=1e-6, equal_nan=True)
        for f in ("rgb", "label", "instance"):
            assert np.array_equal(dec[f].view(np.uint32), ref[f].view(np.uint32))


def test_empty_and_structured_buffers_build_messages():
    """An empty map (width 0) and structured point arrays go into messages with one copy, byte for byte."""
    from std_msgs.msg import Header

    from sam_ovseg_ros.ros import messages
    from sam_ovseg_ros.ros.messages import MAP_POINT_DTYPE

    empty = messages.point_cloud(np.zeros((1, 0), MAP_POINT_DTYPE), Header())
    assert empty.width == 0 and len(empty.data) == 0
    pts = np.zeros((3, 4), MAP_POINT_DTYPE)
    pts["x"] = np.arange(12).reshape(3, 4)
    msg = messages.point_cloud(pts, Header())
    assert bytes(msg.data) == pts.tobytes() and msg.row_step == 4 * MAP_POINT_DTYPE.itemsize


def test_message_keeps_the_one_copy_of_its_buffer_and_markers_refill():
    """The buffer made from the array is the message's own (no second copy in the setter); refilled markers
    equal new ones frame after frame, a shorter frame carries no marker of the longer one before it."""
    import array

    from std_msgs.msg import Header

    from sam_ovseg_ros.core.frame_types import Segment
    from sam_ovseg_ros.ros import messages

    img = messages.image(np.arange(12, dtype=np.uint16).reshape(3, 4), "16UC1", Header())
    assert isinstance(img.data, array.array) and bytes(img.data) == np.arange(12, dtype="<u2").tobytes()
    rgb, d, k = load("1660")  # a cloud made in message memory becomes the message's data as it is
    pts = cloud.build_points(cloud.Backprojector(), depth.to_metres(d, 0.001), rgb, Intrinsics.from_k(k, 640, 480),
                             alloc=messages.message_array)
    msg = messages.point_cloud(pts, Header())
    assert msg.data is messages.buffer(pts) and bytes(msg.data) == pts.tobytes()
    assert messages.buffer(pts[::2]) is not msg.data  # a view of part of it is copied

    def segs(n, name):
        return [Segment(id=i + 1, area=10, bbox=(0, 0, 1, 1), score=1.0, class_name=f"{name}{i}",
                        centroid=(float(i), 2.0, float("nan") if i == 1 else 3.0), track_id=7 + i) for i in range(n)]

    pool = messages.MessagePool()
    for n, name in ((5, "a"), (2, "b"), (6, "c")):
        got = pool.markers(segs(n, name), Header(frame_id=name), 1.5, 0.1, "ns").markers
        fresh = messages.markers(segs(n, name), Header(frame_id=name), 1.5, 0.1, "ns").markers
        assert [str(m) for m in got] == [str(m) for m in fresh]
        assert [m.text for m in got[1:]] == [f"{name}{i}" for i in range(n) if i != 1]  # NaN centroid: none
        assert got[0].action == 3 and all(m.header.frame_id == name for m in got)
        sa, fresh_sa = pool.segment_array(segs(n, name), Header()), messages.segment_array(segs(n, name), Header())
        assert str(sa) == str(fresh_sa) and [m.class_name for m in sa.segments] == [f"{name}{i}" for i in range(n)]
