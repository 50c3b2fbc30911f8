"""Semantic voxel map: geometry against independent arithmetic on real posed frames (7-Scenes), a moved
fixed frame, multi-view class votes, object merging and the memory bound."""
import numpy as np
import pytest
from scipy.spatial import cKDTree

from sam_ovseg_ros.mapping import VoxelMap, unpack
from sam_ovseg_ros.tools.samplebag import load_posed_frames

VOXEL = 0.05


@pytest.fixture(scope="module")
def frames():
    return load_posed_frames()


def world_points(depth, k, pose, dtype=np.float64):
    """Back-projection by hand: pixel (u, v) with depth d mm -> pose @ (d (u - cx) / fx, d (v - cy) / fy, d)."""
    v, u = np.nonzero(depth)
    z = depth[v, u] / 1000.0
    cam = np.stack([(u - k[0, 2]) * z / k[0, 0], (v - k[1, 2]) * z / k[1, 1], z], -1)
    return (cam @ pose[:3, :3].T + pose[:3, 3]).astype(dtype)


def integrate_all(frames, transform=np.eye(4), vmap=None):
    vmap = vmap or VoxelMap(VOXEL, max_voxels=10**7)
    for _, _, depth, k, pose in frames:
        pose = transform @ pose
        pts = world_points(depth, k, pose, np.float32)
        n = len(pts)
        fv = vmap.voxelize(pts, np.zeros(n, np.int64), 0)
        vmap.integrate(fv, np.zeros(n, np.uint32), np.zeros(n, np.int64), ["wall"], np.zeros(0, np.int64),
                       np.zeros(0, np.uint32), pose[:3, 3])
    return vmap


def test_map_lies_on_and_covers_the_back_projected_surfaces(frames):
    vmap = integrate_all(frames)
    expected = set()
    for _, _, depth, k, pose in frames:
        expected.update(map(tuple, np.unique(np.floor(world_points(depth, k, pose) / VOXEL).astype(np.int64), axis=0)))
    got = set(map(tuple, unpack(vmap.keys)))
    assert len(got) == len(vmap) > 10_000
    diff = got ^ expected
    assert len(diff) < 0.002 * len(expected)  # only float32 rounding at voxel faces differs
    exp = np.array(sorted(expected))
    dist, _ = cKDTree(exp).query(np.array(sorted(diff)) if diff else np.zeros((0, 3)))
    assert (dist <= 1.0 + 1e-9).all()  # and those are face neighbours: within one voxel
    # every map voxel holds the evidence of its points: one "wall" vote per point that fell in it
    assert vmap.counts[:, 0].astype(np.int64).sum() == sum(int((d > 0).sum()) for _, _, d, _, _ in frames)


def test_a_moved_fixed_frame_gives_the_same_map_moved(frames):
    a = np.deg2rad(30)
    g = np.array([[np.cos(a), -np.sin(a), 0, 2.0], [np.sin(a), np.cos(a), 0, -1.0], [0, 0, 1, 0.5], [0, 0, 0, 1]])
    base, moved = integrate_all(frames[:5]), integrate_all(frames[:5], g)
    p = base.centres().astype(np.float64) @ g[:3, :3].T + g[:3, 3]
    q = moved.centres().astype(np.float64)
    tol = VOXEL * np.sqrt(3)  # the grids are not aligned: a point's voxel centre moves by < one diagonal
    assert cKDTree(q).query(p)[0].max() <= tol and cKDTree(p).query(q)[0].max() <= tol
    assert abs(len(base) - len(moved)) < 0.1 * len(base)


def blob(centre, n=2000, seed=0):
    rng = np.random.default_rng(seed)
    return (np.asarray(centre) + rng.uniform(-0.2, 0.2, (n, 3))).astype(np.float32)


def add_view(vmap, pts, cls, track, names=("chair", "table")):
    n = len(pts)
    labels = np.full(n, cls, np.int64)
    fv = vmap.voxelize(pts, np.ones(n, np.int64), 1)
    vmap.integrate(fv, np.zeros(n, np.uint32), labels, list(names), np.array([cls]), np.array([track], np.uint32),
                   np.zeros(3))
    return fv.instance_keys()[0]


def test_one_wrong_view_is_outvoted(frames):
    vmap = VoxelMap(VOXEL)
    for i, cls in enumerate([0, 0, 1, 0, 0]):  # view 3 calls the chair a table
        add_view(vmap, blob([1, 0, 0], seed=i), cls, track=10 + i)  # new track ids: joined by 3D overlap
    (obj,) = vmap.object_stats()
    assert (obj.class_name, obj.views) == ("chair", 5) and obj.confidence == pytest.approx(0.8)
    assert (vmap.labels(["chair", "table"]) == 1).mean() > 0.95  # per voxel, chair evidence dominates
    np.testing.assert_allclose(obj.centroid, [1, 0, 0], atol=0.03)
    # the points fill [0.8, 1.2] x [-0.2, 0.2]^2, exactly voxel faces at 5 cm
    np.testing.assert_allclose(obj.bbox_min, [0.8, -0.2, -0.2], atol=1e-6)
    np.testing.assert_allclose(obj.bbox_max, [1.2, 0.2, 0.2], atol=1e-6)
    # a vocabulary without "chair" shows those voxels unlabelled, one that has it at its own index
    assert set(np.unique(vmap.labels(["table", "chair"]))) <= {0, 1, 2}
    assert (vmap.labels(["table", "chair"]) == 2).mean() > 0.95 and (vmap.labels(["sofa"]) == 0).all()


def test_separate_objects_stay_apart_and_returned_voxels_are_the_tracks():
    vmap = VoxelMap(VOXEL)
    k1 = add_view(vmap, blob([0, 0, 0]), 0, track=1)
    k2 = add_view(vmap, blob([3, 0, 0], seed=5), 1, track=2)
    assert [o.class_name for o in vmap.object_stats()] == ["chair", "table"]
    assert np.all(np.diff(k1) > 0) and 400 < len(k1) <= 512  # sorted keys (the tracker's 3D overlap expects them)
    assert len(np.intersect1d(k1, k2)) == 0 and np.isin(k1, vmap.keys).all()


def test_memory_stays_bounded_and_the_newest_view_is_kept():
    vmap = VoxelMap(VOXEL, max_voxels=5000)
    for i in range(60):  # the camera wanders along a corridor: 60 views of new walls
        pts = blob([0.5 * i, 0, 0], n=3000, seed=i)
        n = len(pts)
        fv = vmap.voxelize(pts, np.zeros(n, np.int64), 0)
        vmap.integrate(fv, np.zeros(n, np.uint32), np.zeros(n, np.int64), ["wall"], np.zeros(0, np.int64),
                       np.zeros(0, np.uint32), np.array([0.5 * i, 0, 0]))
        assert len(vmap) <= 5000
    newest = vmap.frame_voxels(blob([29.5, 0, 0], n=3000, seed=59))[0]
    assert np.isin(newest, vmap.keys).all()
    assert vmap.centres()[:, 0].min() > 20  # what went first is what was seen longest ago
    # slots (8 + 2 + 4 + 4 + 8 B) with at most 2x spare capacity, plus the sorted index (16 B per voxel)
    assert vmap.nbytes() <= 2 * 5000 * 26 + 16 * 5000


def test_pixel_stride_two_keeps_the_map_within_a_voxel(frames):
    """map.pixel_stride 2 (every 2nd row and column): nearly every voxel of the full map, the rest next to one."""
    from sam_ovseg_ros.core.cloud import Backprojector, Intrinsics
    from sam_ovseg_ros.mapping.mapper import Mapper

    maps = []
    for stride in (1, 2):
        m = Mapper(VOXEL, 10**7, 0.3, 5, 0.3, pixel_stride=stride)
        for i, (_, rgb, depth, k, pose) in enumerate(frames[:5]):
            dm = np.where(depth > 0, depth / np.float32(1000), np.float32(np.nan)).astype(np.float32)
            m.step(np.zeros(depth.shape, np.uint16), np.zeros(depth.shape, np.uint16), rgb, dm,
                   Backprojector().rays(Intrinsics.from_k(k, 640, 480)), np.zeros(0, np.int64), ["wall"], pose, i + 1)
        maps.append(unpack(m.map.keys))
    full, strided = maps
    assert len(strided) > 0.9 * len(full)
    assert np.isin(strided.view([("", np.int64)] * 3), full.view([("", np.int64)] * 3)).all()  # a subset
    dist = cKDTree(strided).query(full, p=np.inf)[0]
    assert (dist <= 1).mean() > 0.995
