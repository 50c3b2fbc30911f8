"""The overlay: fixed palette, untouched background, outlines, captions inside the largest component."""
import numpy as np
from scannet import load
from scipy import ndimage

from sam_ovseg_ros.core import overlay
from sam_ovseg_ros.core.frame_types import Segment


def test_palette_is_fixed_per_id():
    ids = np.array([0, 1, 2, 256, 1])
    c = overlay.colors_of(ids)
    assert c[0].tolist() == [0, 0, 0] and c[1].tolist() == c[4].tolist()
    assert c[1].tolist() != c[2].tolist()
    assert overlay.colors_of(np.array([256]))[0].tolist() == overlay.colors_of(np.array([1]))[0].tolist()
    assert len({tuple(overlay.colors_of(np.array([i]))[0]) for i in range(1, 256)}) == 255


def test_captions_sit_in_the_largest_component():
    inst = np.zeros((120, 160), np.uint16)
    inst[10:30, 10:30] = 1  # small part of id 1
    inst[50:110, 60:150] = 1  # large part of id 1
    inst[5:8, 100:103] = 2  # tiny: below the subsampling
    inst[40:45, 0:160] = 3  # thin and long
    pts = overlay.caption_points(inst, 3)
    for i, (x, y) in enumerate(pts):
        assert inst[y, x] == i + 1
    assert 50 <= pts[0][1] < 110 and 60 <= pts[0][0] < 150
    comps, _ = ndimage.label(inst == 1)
    assert comps[pts[0][1], pts[0][0]] == comps[80, 100]


def test_draw_keeps_background_and_outlines_instances():
    rgb, _, _ = load("1660")
    inst = np.zeros(rgb.shape[:2], np.uint16)
    inst[100:200, 100:300] = 1
    inst[300:400, 50:120] = 2
    segs = [Segment(id=1, area=20000, bbox=(100, 100, 200, 100), score=1.0, class_id=3, class_name="desk"),
            Segment(id=2, area=7000, bbox=(50, 300, 70, 100), score=1.0)]
    out = overlay.draw(rgb, inst, segs)
    edge = overlay.boundaries(inst)
    far = ndimage.binary_dilation(inst > 0, iterations=3)
    assert np.array_equal(out[~far], rgb[~far])  # background untouched
    assert (out[edge] == (255, 255, 250)).all()
    inside = (inst == 1) & ~ndimage.binary_dilation(edge, iterations=2)
    tint = overlay.colors_of(np.array([1]))[0].astype(int)
    expect = (rgb[inside].astype(int) + tint) / 2
    changed = np.abs(out[inside].astype(int) - expect).max(axis=1) <= 1
    assert changed.mean() > 0.9  # 50/50 blend, apart from the caption box


def test_captions_sit_at_the_deepest_sample_of_the_largest_component():
    """On a real frame's depth bands: each caption is a sample of the subsampled image whose distance to the
    instance's border is the largest of its largest component (the rule, checked with scipy's own measures)."""
    import cv2

    _, d, _ = load("5560")
    inst = np.minimum(d // 400, 12).astype(np.uint16)  # 400 mm depth bands as instances (0: invalid/near)
    n = int(inst.max())
    pts = overlay.caption_points(inst, n)
    small = inst[2::4, 2::4]
    inner = (small > 0) & ~overlay.boundaries(small)
    comps, ncomp = ndimage.label(inner)
    dist = cv2.distanceTransform(inner.astype(np.uint8), cv2.DIST_L2, 3)
    checked = 0
    for i in range(1, n + 1):
        own = [c for c in range(1, ncomp + 1) if small[comps == c][0] == i]
        if not own:
            continue
        largest = max(own, key=lambda c: (comps == c).sum())
        x, y = pts[i - 1]
        assert (x - 2) % 4 == 0 and (y - 2) % 4 == 0 and comps[(y - 2) // 4, (x - 2) // 4] == largest
        assert dist[(y - 2) // 4, (x - 2) // 4] == ndimage.maximum(dist, comps, largest)
        checked += 1
    assert checked >= 5
