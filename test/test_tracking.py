"""Tracker on hand-built instance-image sequences: identity through motion, occlusion, split/merge."""
import numpy as np

from sam_ovseg_ros.mapping.tracking import Tracker, iou_matrix


def frame(*boxes, shape=(60, 80)) -> tuple[np.ndarray, int]:
    """Instance image with ids 1..n for boxes (y0, y1, x0, x1), later boxes on top."""
    img = np.zeros(shape, np.uint16)
    for i, (y0, y1, x0, x1) in enumerate(boxes):
        img[y0:y1, x0:x1] = i + 1
    return img, len(boxes)


def test_iou_matrix_is_exact():
    inst, n = frame((0, 10, 0, 10), (20, 30, 20, 30))
    tracks = np.zeros_like(inst, np.uint32)
    tracks[0:10, 5:15] = 7  # half of instance 1's box
    iou = iou_matrix(inst, n, tracks, np.array([7]))
    assert iou.shape == (2, 1) and iou[0, 0] == 50 / 150 and iou[1, 0] == 0


def test_small_motion_keeps_ids_and_new_objects_get_new_ids():
    tr = Tracker(iou_threshold=0.3, max_age=5)
    a = tr.update(*frame((10, 30, 10, 30), (35, 55, 40, 70)))
    b = tr.update(*frame((35, 55, 43, 73), (11, 31, 12, 32)))  # both moved; instance order swapped
    assert b.tolist() == [a[1], a[0]]
    c = tr.update(*frame((12, 32, 13, 33), (36, 56, 45, 75), (0, 5, 0, 5)))
    assert c.tolist()[:2] == [a[0], a[1]] and c[2] not in a and c[2] == max(a) + 1


def test_the_same_frame_twice_keeps_all_ids():
    tr = Tracker()
    img = frame((0, 20, 0, 20), (5, 10, 5, 10), (30, 50, 30, 70), (40, 45, 0, 80))
    first = tr.update(*img)
    assert tr.update(*img).tolist() == first.tolist()
    assert len(set(first.tolist())) == 4


def test_occlusion_gap_then_found_again():
    tr = Tracker(max_age=4)
    a = tr.update(*frame((10, 30, 10, 30), (35, 55, 40, 70)))
    for _ in range(2):  # object 1 hidden for two frames
        tr.update(*frame((35, 55, 41, 71)))
    back = tr.update(*frame((11, 31, 10, 30), (35, 55, 42, 72)))
    assert back.tolist() == a.tolist()


def test_forgotten_after_max_age_and_ids_never_reused():
    tr = Tracker(max_age=2)
    a = tr.update(*frame((10, 30, 10, 30)))
    for _ in range(3):
        tr.update(*frame((40, 50, 60, 70)))
    again = tr.update(*frame((10, 30, 10, 30)))
    assert again[0] != a[0] and again[0] > a[0]
    seen = {int(a[0]), int(again[0])}
    for i in range(20):  # objects jump around: each is a new one, with an id larger than any before
        ids = tr.update(*frame((3 * i, 3 * i + 2, 0, 3), (50, 55, 75 - 3 * i, 78 - 3 * i))).tolist()
        assert min(ids) > max(seen)
        seen.update(ids)
    tr.reset()
    assert tr.update(*frame((0, 5, 0, 5)))[0] > max(seen)


def test_split_and_merge():
    tr = Tracker(iou_threshold=0.3)
    (whole,) = tr.update(*frame((10, 30, 10, 50)))
    # split: the larger part keeps the id, the other part is new
    parts = tr.update(*frame((10, 30, 10, 36), (10, 30, 36, 50)))
    assert parts[0] == whole and parts[1] != whole
    # merge: the union takes the id it overlaps most; the other track lives on unseen
    merged = tr.update(*frame((10, 30, 10, 50)))
    assert merged[0] == whole
    split_again = tr.update(*frame((10, 30, 10, 36), (10, 30, 36, 50)))
    assert split_again.tolist() == parts.tolist()


def test_3d_overlap_recovers_what_2d_misses():
    """A large camera motion: no mask overlap, but the instance covers the track's map voxels."""
    tr = Tracker(iou_threshold=0.3, overlap_3d=0.3)
    vox = np.arange(100, 200, dtype=np.int64)
    (a,) = tr.update(*frame((0, 10, 0, 10)), voxels=[vox])
    (b,) = tr.update(*frame((40, 50, 60, 70)), voxels=[np.arange(150, 260, dtype=np.int64)])
    assert b == a
    (c,) = tr.update(*frame((20, 30, 0, 10)), voxels=[np.arange(900, 950, dtype=np.int64)])
    assert c != a
