"""Depth rendering: bit-exact against SegmentAnyRGBD's rule (open_vocab_seg/utils/predictor.py, run_on_pcd) on real ScanNet frames."""
import matplotlib
import numpy as np
import pytest
from scannet import FRAMES, load

from sam_ovseg_ros.core import depth


def original_literal(depth_mm: np.ndarray, cmap: str = "inferno") -> np.ndarray:
    """The original's steps, literally: float image of zeros, 1/(D+1e-6) on valid, min-max, cmap x255, uint8."""
    valid = depth_mm != 0
    d = np.zeros(depth_mm.shape, dtype=float)
    d[valid] = 1 / (depth_mm[valid] + 1e-6)
    d = (d - np.min(d)) / (np.max(d) - np.min(d))
    return (matplotlib.colormaps[cmap](d) * 255).astype(np.uint8)[:, :, :3]


def render(d, normalization="original", cmap="inferno", scale=0.001):
    return depth.render(d, depth.to_metres(d, scale), normalization, cmap, scale, 0.3, 5.0)


@pytest.mark.parametrize("frame", FRAMES)
def test_segmentanyrgbd_rule_is_bit_exact_on_scannet(frame):
    _, d, _ = load(frame)
    assert (d == 0).any()  # real frames have holes: min of the float image is 0
    assert np.array_equal(render(d), original_literal(d))


@pytest.mark.parametrize("cmap", ["plasma", "viridis", "jet", "gray", "turbo"])
def test_any_matplotlib_colormap(cmap):
    _, d, _ = load("2760")
    assert np.array_equal(render(d, cmap=cmap), original_literal(d, cmap))


@pytest.mark.parametrize("frame", FRAMES)
def test_metres_give_the_same_image(frame):
    """32FC1 metres of the same geometry render exactly as 16UC1 mm (float32 noise is rounded off)."""
    _, d, _ = load(frame)
    m = d.astype(np.float32) / 1000.0
    m[d == 0] = np.nan
    assert np.array_equal(render(m), render(d))


def test_32fc1_invalid_values_render_black_and_do_not_poison_minmax():
    _, d, _ = load("1660")
    m = d.astype(np.float32) / 1000.0
    m[d == 0] = np.nan
    m[0, :10] = np.inf
    m[1, :10] = -np.inf
    m[2, :10] = -2.0
    out = render(m)
    black = depth.colormap_lut("inferno")[0]
    assert (out[:3, :10] == black).all()
    assert np.array_equal(out[3:], render(np.where(np.isfinite(m) & (m > 0), m, np.nan))[3:])


def test_all_invalid_is_black_not_nan():
    out = render(np.zeros((4, 5), np.uint16))
    assert (out == depth.colormap_lut("inferno")[0]).all()


def test_scale_units_other_than_mm():
    _, d, _ = load("5560")
    tenth_mm = d.astype(np.uint32) * 10
    assert tenth_mm.max() < 65536
    assert np.array_equal(render(tenth_mm.astype(np.uint16), scale=0.0001), render(d))


def test_fixed_normalization_is_stable_across_frames():
    _, d, _ = load("1660")
    far = d.copy()
    far[d > 0] += 500  # every surface 0.5 m farther: original colours of near surfaces would jump
    a, b = render(d, "fixed"), render(far, "fixed")
    m = depth.to_metres(d, 0.001)
    n = depth.fixed_normalized(m, 0.3, 5.0)
    assert np.array_equal(a, depth.apply_colormap(n, "inferno"))
    assert (n[d == 0] == 0).all() and (n <= 1).all() and (n >= 0).all()
    assert not np.array_equal(a, b)


def test_to_metres_marks_invalid_as_nan():
    d = np.array([[0, 1000], [1500, 65535]], np.uint16)
    m = depth.to_metres(d, 0.001)
    assert np.isnan(m[0, 0]) and m[0, 1] == np.float32(1.0) and m[1, 0] == np.float32(1.5)
    f = np.array([[np.nan, np.inf], [-1.0, 2.0]], np.float32)
    mf = depth.to_metres(f, 0.001)
    assert np.isnan(mf[:1]).all() and np.isnan(mf[1, 0]) and mf[1, 1] == 2.0
