"""TF buffer: chains of static and dynamic links, interpolation at the stamp, missing links, time jumps."""
import numpy as np
import pytest

from sam_ovseg_ros.ros.tf_buffer import TfBuffer, TransformError
from sam_ovseg_ros.tools.samplebag import matrix_to_tq

S = 1_000_000_000


def rot_z(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def tq_z(deg: float, t) -> tuple[np.ndarray, np.ndarray]:
    a = np.deg2rad(deg) / 2
    return np.asarray(t, float), np.array([0, 0, np.sin(a), np.cos(a)])


def test_chain_of_static_and_dynamic_links_composes():
    """map -> odom (dynamic) -> base_link (dynamic) -> camera (static): the product of the three."""
    buf = TfBuffer()
    buf.add("map", "odom", 10 * S, *tq_z(90, [1, 0, 0]))
    buf.add("odom", "base_link", 10 * S, *tq_z(0, [0, 2, 0]))
    buf.add("base_link", "camera", 0, *tq_z(-90, [0, 0, 1]), static=True)
    t = buf.lookup("map", "camera", 10 * S)
    # p_map = Rz(90) (p_odom) + (1,0,0); p_odom = p_base + (0,2,0); p_base = Rz(-90) p_cam + (0,0,1)
    p_cam = np.array([1.0, 0, 0])
    p_base = rot_z(-90) @ p_cam + [0, 0, 1]
    p_map = rot_z(90) @ (p_base + [0, 2, 0]) + [1, 0, 0]
    np.testing.assert_allclose(t[:3, :3] @ p_cam + t[:3, 3], p_map, atol=1e-12)
    # the inverse direction and a lookup between siblings through their common ancestor
    np.testing.assert_allclose(buf.lookup("camera", "map", 10 * S), np.linalg.inv(t), atol=1e-12)
    np.testing.assert_allclose(buf.lookup("map", "map", 10 * S), np.eye(4))


def test_interpolation_at_the_stamp():
    buf = TfBuffer()
    buf.add("odom", "base_link", 10 * S, *tq_z(0, [0, 0, 0]))
    buf.add("odom", "base_link", 12 * S, *tq_z(90, [2, 4, 0]))
    t = buf.lookup("odom", "base_link", 11 * S + S // 2)  # 3/4 of the way
    np.testing.assert_allclose(t[:3, 3], [1.5, 3.0, 0], atol=1e-12)
    np.testing.assert_allclose(t[:3, :3], rot_z(67.5), atol=1e-12)
    with pytest.raises(TransformError, match="not at 13.000 s"):
        buf.lookup("odom", "base_link", 13 * S)  # no extrapolation


def test_static_only_chain_holds_at_any_time():
    buf = TfBuffer()
    buf.add("base_link", "camera_link", 0, *tq_z(0, [0.1, 0, 0.5]), static=True)
    buf.add("camera_link", "camera_color_optical_frame", 0, *tq_z(30, [0, 0.015, 0]), static=True)
    for stamp in (0, 5 * S, 10**18):
        t = buf.lookup("base_link", "camera_color_optical_frame", stamp)
        np.testing.assert_allclose(t[:3, 3], [0.1, 0.015, 0.5], atol=1e-12)


def test_missing_link_is_named():
    buf = TfBuffer()
    buf.add("odom", "base_link", 10 * S, *tq_z(0, [0, 0, 0]))
    buf.add("base_link", "camera", 0, *tq_z(0, [0, 0, 0]), static=True)
    with pytest.raises(TransformError, match="'map' and 'camera' are not connected.*'odom'"):
        buf.lookup("map", "camera", 10 * S)


def test_time_going_back_resets_dynamic_links_only():
    buf = TfBuffer(cache_s=5.0)
    buf.add("odom", "base_link", 100 * S, *tq_z(0, [1, 0, 0]))
    buf.add("base_link", "camera", 0, *tq_z(0, [0, 0, 1]), static=True)
    buf.add("odom", "base_link", 20 * S, *tq_z(0, [2, 0, 0]))  # a bag loop: far back in time
    with pytest.raises(TransformError):
        buf.lookup("odom", "base_link", 100 * S)  # the old run's samples are gone
    np.testing.assert_allclose(buf.lookup("odom", "camera", 20 * S)[:3, 3], [2, 0, 1])
    buf.reset()
    with pytest.raises(TransformError):
        buf.lookup("odom", "camera", 20 * S)
    np.testing.assert_allclose(buf.lookup("base_link", "camera", 0)[:3, 3], [0, 0, 1])


def test_matrix_quaternion_round_trip():
    rng = np.random.default_rng(1)
    for _ in range(20):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        from sam_ovseg_ros.ros.tf_buffer import matrix
        m = matrix(rng.normal(size=3), q)
        t, q2 = matrix_to_tq(m)
        np.testing.assert_allclose(matrix(t, q2), m, atol=1e-12)
