"""Depth registration against geometry derived by hand (not by the code under test).

Depth camera: 80x60, fx = fy = 100, cx = 39.5, cy = 29.5. Colour camera: 200x150, fx = fy = 150,
cx = 99.5, cy = 74.2 (chosen so that no projected pixel corner falls on a .5 rounding tie).
A depth pixel (u, v) at depth Z spans X in [(u - 0.5 - cx) / fx * Z, (u + 0.5 - cx) / fx * Z] (same in Y);
it covers the colour pixels from round(first corner) to round(last corner), both included (librealsense's
align rule), and the nearest surface wins where several land on one colour pixel.
"""
import numpy as np

from sam_ovseg_ros.core import cloud
from sam_ovseg_ros.core.cloud import Intrinsics
from sam_ovseg_ros.core.registration import quat_to_matrix, register

KD = Intrinsics(100.0, 100.0, 39.5, 29.5, 80, 60)
KC = Intrinsics(150.0, 150.0, 99.5, 74.2, 200, 150)


def plane(z: float) -> np.ndarray:
    return np.full((KD.height, KD.width), z, np.float32)


def test_translated_plane_covers_its_projection_exactly():
    """Plane Z = 2 m, colour camera offset by t = (0.10, -0.05, 0): p_c = p_d + t, Z unchanged.
    Depth image edges at X = +-0.8, Y = +-0.6 -> colour X in [-0.7, 0.9], Y in [-0.65, 0.55] ->
    u = 75 X + 99.5 in [47.0, 167.0], v = 75 Y + 74.2 in [25.45, 115.45] -> columns 47..167, rows 25..115."""
    reg = register(plane(2.0), KD, KC, np.eye(3), np.array([0.10, -0.05, 0.0]))
    expected = np.full((150, 200), np.nan, np.float32)
    expected[25:116, 47:168] = 2.0
    assert np.array_equal(reg, expected, equal_nan=True)
    # the cloud of the registered depth: colour pixel (u, v) -> ((u - cx) Z / fx, (v - cy) Z / fy, Z), and
    # moved back into the depth frame it lies inside the depth camera's view of the plane
    pts = cloud.build_points(cloud.Backprojector(), reg, np.zeros((150, 200, 3), np.uint8), KC,
                             np.zeros((150, 200), np.uint16), np.zeros((150, 200), np.uint16))
    v, u = np.mgrid[25:116, 47:168]
    p = pts[25:116, 47:168]
    np.testing.assert_allclose(p["x"], (u - 99.5) * 2.0 / 150.0, atol=1e-6)
    np.testing.assert_allclose(p["y"], (v - 74.2) * 2.0 / 150.0, atol=1e-6)
    assert (p["z"] == 2.0).all()
    xd, yd = p["x"] - 0.10, p["y"] + 0.05
    assert (np.abs(xd) <= 0.8 + 1e-6).all() and (np.abs(yd) <= 0.6 + 2.0 / 150).all()


def test_rotated_plane_has_the_ray_plane_depth():
    """Colour camera rotated 10 deg about y: p_c = R p_d. The plane Z_d = 2 is n . p_c = 2 with n = R e_z,
    so the colour ray r = ((u - cx) / fx, (v - cy) / fy, 1) meets it at Z_c = 2 / (n . r)."""
    a = np.deg2rad(10.0)
    rot = quat_to_matrix(0.0, np.sin(a / 2), 0.0, np.cos(a / 2))
    np.testing.assert_allclose(rot, [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]], atol=1e-12)
    reg = register(plane(2.0), KD, KC, rot, np.zeros(3))
    v, u = np.mgrid[0:150, 0:200]
    n = rot[:, 2]
    z = 2.0 / (n[0] * (u - KC.cx) / KC.fx + n[1] * (v - KC.cy) / KC.fy + n[2])
    # where the ray's point lies well inside the depth image (2 px margin), the pixel has depth
    pd = np.einsum("ij,jhw->ihw", rot.T, np.stack([(u - KC.cx) / KC.fx * z, (v - KC.cy) / KC.fy * z, z]))
    ud = KD.fx * pd[0] / pd[2] + KD.cx
    vd = KD.fy * pd[1] / pd[2] + KD.cy
    inside = (ud > 1.5) & (ud < KD.width - 2.5) & (vd > 1.5) & (vd < KD.height - 2.5)
    outside = (ud < -2) | (ud > KD.width + 1) | (vd < -2) | (vd > KD.height + 1)
    assert inside.sum() > 5000
    assert np.isfinite(reg[inside]).all() and np.isnan(reg[outside]).all()
    # a colour pixel takes the depth of a nearby depth-pixel centre: off by at most the plane's depth
    # change across ~1.5 colour pixels (slope tan 10 deg x 2 m / 150 px x 1.5 = 3.5 mm)
    assert np.abs(reg[inside] - z[inside]).max() < 0.005


def test_near_object_wins_and_holes_stay_holes():
    """Background at 3 m with a 10x10 hole (depth pixels u 60..69, v 5..14 invalid) and a near square at
    1 m (u 30..49, v 20..39); t = (0.11, -0.04, 0). Colour u = 150 (X + 0.11) / Z + 99.5, v = 150 (Y - 0.04) / Z + 74.2.
    Near square: X in [-0.1, 0.1] at 1 m -> u in [101.0, 131.0]; Y in [-0.1, 0.1] -> v in [53.2, 83.2].
    Hole: X in [0.6, 0.9] at 3 m -> u in [135.0, 150.0]; Y in [-0.75, -0.45] -> v in [34.7, 49.7]: its
    neighbours reach columns 135 and 150 and rows 35 and 50, so 136..149 x 36..49 stays empty.
    Shadow: the background hidden behind the square in the depth camera spans u in [90.0, 120.0] at 3 m; the
    square starts at column 101, so columns 91..100 (rows of both, 58..83) have no depth."""
    d = plane(3.0)
    d[5:15, 60:70] = np.nan
    d[20:40, 30:50] = 1.0
    reg = register(d, KD, KC, np.eye(3), np.array([0.11, -0.04, 0.0]))
    assert (reg[53:84, 101:132] == 1.0).all()  # the near surface wins everywhere it lands
    assert np.isnan(reg[36:50, 136:150]).all()  # the hole stays a hole
    assert np.isnan(reg[58:84, 91:101]).all()  # occlusion shadow: nothing seen there
    assert (reg[90:116, 50:86] == 3.0).all()  # plain background
    assert np.isnan(reg[:, :44]).all() and np.isnan(reg[:, 166:]).all()  # beyond u 45.0 .. 165.0
    assert set(np.unique(reg[np.isfinite(reg)])) == {1.0, 3.0}
