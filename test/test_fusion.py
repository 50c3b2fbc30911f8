"""Instances from overlapping masks, majority vote, semantic image: hand-built cases with known answers."""
import numpy as np
import pytest

from sam_ovseg_ros.core import fusion
from sam_ovseg_ros.core.instances import masks_to_instances, measure, segments_from_instances


def box(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_smallest_mask_wins_overlaps_and_ids_follow_area():
    big, mid, small = box(10, 10, 0, 10, 0, 10), box(10, 10, 2, 8, 2, 8), box(10, 10, 4, 6, 4, 6)
    masks = np.stack([small, big, mid])
    inst, order = masks_to_instances(masks, masks.reshape(3, -1).sum(1))
    assert order.tolist() == [1, 2, 0]  # ids 1..3 = big, mid, small
    assert inst[0, 0] == 1 and inst[3, 3] == 2 and inst[5, 5] == 3
    assert inst.dtype == np.uint16


def test_fully_covered_mask_is_dropped_and_ids_stay_contiguous():
    a, b, c = box(8, 8, 0, 4, 0, 8), box(8, 8, 0, 4, 0, 4), box(8, 8, 0, 4, 4, 8)
    masks = np.stack([a, b, c])  # a is hidden under b and c
    inst, order = masks_to_instances(masks, np.array([32, 16, 16]))
    assert order.tolist() == [1, 2] and set(np.unique(inst)) == {0, 1, 2}


def test_no_masks():
    inst, order = masks_to_instances(np.zeros((0, 4, 5), bool), np.zeros(0))
    assert inst.shape == (4, 5) and not inst.any() and len(order) == 0


def test_vote_majority_ties_and_unlabelled():
    labels = np.array([[0, 0, 1, 1, 2, -1, -1, -1]])
    masks = np.stack([
        np.array([[1, 1, 1, 1, 0, 0, 0, 0]], bool),  # 2 x class 0, 2 x class 1 -> tie -> 0
        np.array([[0, 0, 1, 1, 1, 0, 0, 0]], bool),  # class 1 wins 2:1
        np.array([[0, 0, 0, 0, 0, 1, 1, 1]], bool),  # only unlabelled pixels -> -1
        np.array([[0, 0, 0, 0, 1, 1, 1, 1]], bool),  # one labelled pixel among -1 -> 2
    ])
    classes, share = fusion.vote(labels, masks, 3)
    assert classes.tolist() == [0, 1, -1, 2]
    np.testing.assert_allclose(share, [0.5, 2 / 3, 0.0, 1.0])


def test_vote_uses_whole_masks_like_the_seed():
    """SegmentAnyRGBD votes on each mask's own pixels, including those a smaller mask paints over."""
    labels = np.zeros((6, 6), int)
    labels[2:6, 2:6] = 1
    big, small = box(6, 6, 0, 6, 0, 6), box(6, 6, 2, 6, 2, 6)
    classes, _ = fusion.vote(labels, np.stack([big, small]), 2)
    assert classes.tolist() == [0, 1]  # big: 20 zeros vs 16 ones over its full area


def test_vote_matches_naive_loop_on_random_data():
    rng = np.random.default_rng(3)
    labels = rng.integers(-1, 7, (40, 50))
    masks = rng.random((12, 40, 50)) < 0.3
    classes, _ = fusion.vote(labels, masks, 7)
    for m, c in zip(masks, classes):
        vals, cnt = np.unique(labels[m][labels[m] >= 0], return_counts=True)
        assert c == (vals[np.argmax(cnt)] if len(vals) else -1)


def test_one_name_vocabulary_lets_others_vote():
    """Vocabulary ["chair"]: OVSeg labels 0 = chair, 1 = its appended "others". A mask mostly
    "others" stays unlabelled (dropping "others" before the vote would have made it a chair)."""
    labels = np.array([[0, 1, 1, 1, 0, 0, 0, 1, -1, -1]])
    masks = np.stack([
        np.array([[1, 1, 1, 1, 0, 0, 0, 0, 0, 0]], bool),  # 1 chair, 3 others -> unlabelled
        np.array([[0, 0, 0, 1, 1, 1, 1, 0, 0, 0]], bool),  # 3 chair, 1 others -> chair, share 3/4
        np.array([[0, 0, 0, 0, 0, 0, 0, 1, 1, 1]], bool),  # 1 others, 2 unlabelled -> unlabelled
    ])
    classes, share = fusion.vote_vocabulary(labels, masks, num_labels=2, num_vocab=1)
    assert classes.tolist() == [-1, 0, -1]
    np.testing.assert_allclose(share, [0.0, 0.75, 0.0])
    # the same frame with the vocabulary ["chair", "others"]: "others" is a class of its own
    classes2, share2 = fusion.vote_vocabulary(labels, masks, num_labels=2, num_vocab=2)
    assert classes2.tolist() == [1, 0, 1]
    assert np.array_equal(classes2 == 0, classes == 0)  # chair exactly where chair was
    assert (classes[classes2 == 1] == -1).all()  # unlabelled where the other says "others"
    # keep_ovseg: uncovered "others" pixels stay unlabelled in the one-name case
    inst = np.zeros((1, 10), np.uint16)
    sem = fusion.semantic_image(inst, np.zeros(0, np.int64), fusion.drop_extra_classes(labels, 1))
    assert sem.tolist() == [[1, 0, 0, 0, 1, 1, 1, 0, 0, 0]]


def test_semantic_image_and_uncovered_policy():
    inst = np.array([[0, 1, 1, 2]], np.uint16)
    classes = np.array([4, -1])
    assert fusion.semantic_image(inst, classes).tolist() == [[0, 5, 5, 0]]
    ov = np.array([[3, 0, 0, 0]])
    assert fusion.semantic_image(inst, classes, ov).tolist() == [[4, 5, 5, 0]]
    assert fusion.drop_extra_classes(np.array([0, 1, 2]), 2).tolist() == [0, 1, -1]


def test_segments_agree_with_the_instance_image(backend):
    inst = np.zeros((20, 30), np.uint16)
    inst[2:5, 3:9] = 1
    inst[10:20, 0:1] = 2
    inst[6, 20] = 2  # two components: box must enclose both
    segs = segments_from_instances(measure(inst, 2), np.array([0.9, 0.8]), np.array([1, -1]), np.array([0.7, 0.0]),
                                   ["a", "b"])
    assert [(s.id, s.area, s.bbox, s.class_id, s.class_name) for s in segs] == [
        (1, 18, (3, 2, 6, 3), 2, "b"), (2, 11, (0, 6, 21, 14), 0, "")]
    assert np.isnan(segs[0].centroid).all()
    absent = measure(inst, 3)  # id 3 has no pixel
    assert absent.boxes[2].tolist() == [0, 0, 0, 0] and absent.areas[2] == 0 and absent.valid_points[2] == 0
    # windows given (a mask box per id) or found: the same measures
    windowed = measure(inst, 2, np.array([[0, 0, 29, 19], [0, 6, 20, 19]]))
    assert np.array_equal(windowed.boxes, measure(inst, 2).boxes) and np.array_equal(windowed.areas, [18, 11])


# ------------------------------------------------------------------ device paths against the host paths
def device_cases():
    """Hand-built overlaps with equal areas and nesting, and SAM-like masks on a real ScanNet frame."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from bench_overhead import label_map, synthetic_masks
    from scannet import load

    h, w = 12, 16
    hand = np.stack([box(h, w, 0, 6, 0, 8), box(h, w, 6, 12, 8, 16), box(h, w, 0, 6, 8, 16),  # equal areas
                     box(h, w, 2, 4, 2, 6), box(h, w, 0, 12, 0, 16), box(h, w, 3, 9, 4, 12),
                     box(h, w, 2, 4, 2, 6)])  # a duplicate of mask 3: hidden, dropped
    lab = np.random.default_rng(1).integers(-1, 4, (h, w))
    rgb, d, _ = load("2760")
    masks, _, _ = synthetic_masks(rgb, d, 60, np.random.default_rng(2))
    return [(hand, lab, 4), (masks, label_map(rgb, 20), 20)]


def boxes_of(masks):
    out = np.zeros((len(masks), 4), np.int64)
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        out[i] = (xs.min(), ys.min(), xs.max(), ys.max())
    return out


@pytest.mark.parametrize("case", [0, 1], ids=["hand_built", "scannet_60_masks"])
def test_device_paths_equal_the_host_paths_bit_for_bit(case):
    """What runs on the GPU (mask stack as a tensor) gives exactly the host path's instances and votes;
    run here on CPU tensors."""
    import torch

    masks, labels, k = device_cases()[case]
    areas, boxes = masks.sum((1, 2)), boxes_of(masks)
    inst, order = masks_to_instances(masks, areas, boxes)
    inst_t, order_t = masks_to_instances(torch.from_numpy(masks), areas, boxes)
    assert inst_t.dtype == inst.dtype and np.array_equal(inst_t, inst) and np.array_equal(order_t, order)
    cls, share = fusion.vote(labels, masks, k, boxes, order)
    cls_t, share_t = fusion.vote(torch.from_numpy(labels), torch.from_numpy(masks), k, boxes, order)
    assert np.array_equal(cls_t, cls) and np.array_equal(share_t, share)
    if case == 0:
        assert len(order) == 6 and inst.max() == 6  # the hidden duplicate is dropped by both


# ------------------------------------------------------------------ host paths against per-mask references
def reference_instances(masks, areas):
    """The original's painting, one boolean assignment per mask (largest first, ties in mask order),
    then ids renumbered over the masks that stayed visible."""
    order = sorted(range(len(masks)), key=lambda i: (-areas[i], i))
    rank = np.zeros(masks.shape[1:], np.int64)
    for pos, i in enumerate(order, start=1):
        rank[masks[i]] = pos
    shown = [p for p in range(1, len(masks) + 1) if (rank == p).any()]
    inst = np.zeros(rank.shape, np.uint16)
    for new, p in enumerate(shown, start=1):
        inst[rank == p] = new
    return inst, np.array([order[p - 1] for p in shown])


def reference_vote(labels, masks, k):
    out = []
    for m in masks:  # np.unique over every pixel of the mask, hidden ones included
        vals, cnt = np.unique(labels[m], return_counts=True)
        cnt, vals = cnt[vals >= 0], vals[vals >= 0]
        out.append(vals[np.argmax(cnt)] if len(vals) else -1)
    return np.array(out)


def host_cases():
    """Hand-built overlaps with equal areas and a hidden duplicate; SAM-like masks on real frames with
    more than 255 masks (16-bit paint positions) and more than 63 classes (16-bit vote keys)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from bench_overhead import label_map, synthetic_masks
    from scannet import load

    hand, lab, k = device_cases()[0]
    cases = [(hand, lab, k, None)]
    for frame, m, classes, seed in (("1660", 100, 20, 4), ("5560", 300, 100, 5)):
        rgb, d, kk = load(frame)
        masks, _, _ = synthetic_masks(rgb, d, m, np.random.default_rng(seed))
        cases.append((masks, label_map(rgb, classes), classes, (d, kk)))
    return cases


@pytest.mark.parametrize("case", [0, 1, 2], ids=["hand_built", "scannet_100_masks_20_classes",
                                                 "scannet_300_masks_100_classes"])
def test_host_paths_equal_per_mask_references(case, backend):
    """Instance image, vote and segment measures from the compiled kernels (mask runs) and from the
    box-windowed OpenCV passes equal the per-mask boolean-selection versions exactly (centroids: to
    float64 summation order)."""
    from sam_ovseg_ros.core import cloud, depth
    from sam_ovseg_ros.core.cloud import Intrinsics

    masks, labels, k, real = host_cases()[case]
    areas, boxes = masks.sum((1, 2)), boxes_of(masks)
    inst, order = masks_to_instances(masks, areas, boxes)
    ref_inst, ref_order = reference_instances(masks, areas)
    assert inst.dtype == np.uint16 and np.array_equal(inst, ref_inst) and np.array_equal(order, ref_order)
    cls, share = fusion.vote(labels, masks, k, boxes, order)
    assert np.array_equal(cls, reference_vote(labels, masks[order], k))
    assert np.array_equal(cls, fusion.vote(labels, masks, k, None, order)[0])  # windows or whole image: same
    counts = [(labels[masks[i]] == c).sum() / max(1, (labels[masks[i]] >= 0).sum()) for i, c in zip(order, cls)]
    np.testing.assert_allclose(share, np.where(cls >= 0, counts, 0.0), rtol=1e-6)
    n = len(order)
    if real is None:
        dm = rays = xyz = valid = None
    else:
        d, kk = real
        dm = depth.to_metres(d, 0.001)
        rays = cloud.Backprojector().rays(Intrinsics.from_k(kk, d.shape[1], d.shape[0]))
        xyz = np.stack([dm * rays[0], dm * rays[1], dm], axis=-1)  # the cloud's float32 products
        valid = d > 0
    m = measure(inst, n, boxes[order], dm, rays)
    assert np.array_equal(m.areas, measure(inst, n, None, dm, rays).areas)  # found windows: same
    for j in range(n):
        sel = inst == j + 1
        ys, xs = np.nonzero(sel)
        assert m.areas[j] == sel.sum()
        assert m.boxes[j].tolist() == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        if valid is not None:
            ok = sel & valid
            assert m.valid_points[j] == ok.sum()
            if ok.any():
                mean = [xyz[..., c][ok].astype(np.float64).mean() for c in range(3)]
                np.testing.assert_allclose(m.centroids[j], mean, rtol=0, atol=1e-9)
            else:
                assert np.isnan(m.centroids[j]).all()


def test_vote_refuses_labels_outside_the_classes(backend):
    masks, boxes = np.ones((1, 2, 3), bool), np.array([[0, 0, 2, 1]])
    for b in (None, boxes):  # whole image (NumPy) or the mask's box (compiled where built)
        with pytest.raises(ValueError, match="outside -1..1"):
            fusion.vote(np.array([[0, 1, 2], [0, 0, 0]]), masks, 2, b)
        with pytest.raises(ValueError, match="outside -1..1"):
            fusion.vote(np.array([[0, 1, -2], [0, 0, 0]]), masks, 2, b)
    if backend == "numpy":
        with pytest.raises(ValueError, match="classes"):
            fusion.vote(np.zeros((2, 3), int), masks, 20000, boxes)
    else:  # counts are int64 per class: no limit but memory
        assert fusion.vote(np.full((2, 3), 19999), masks, 20000, boxes)[0].tolist() == [19999]


def test_table_lookup_without_opencv_16bit_tables(monkeypatch):
    """OpenCV 4 (a distribution's python3-opencv) looks up 8-bit images only: the 16-bit tables of the
    instance ids, the semantic image and the overlay fall back to np.take with the same result."""
    from sam_ovseg_ros.core import instances as inst_mod

    rng = np.random.default_rng(7)
    ids = rng.integers(0, 300, (48, 64)).astype(np.uint16)
    table = rng.integers(0, 65535, 65536).astype(np.uint16)
    fast = inst_mod.lookup(ids, table)
    monkeypatch.setattr(inst_mod, "LUT16", False)
    assert np.array_equal(inst_mod.lookup(ids, table), fast) and np.array_equal(fast, table[ids])
    masks = rng.random((300, 48, 64)) < 0.05  # more than 255 masks: a 16-bit paint
    inst, order = masks_to_instances(masks, masks.sum((1, 2)))
    assert np.array_equal(inst, reference_instances(masks, masks.sum((1, 2)))[0])
    assert np.array_equal(fusion.semantic_image(inst, np.arange(len(order)) % 5 - 1),
                          np.where(inst > 0, (inst.astype(np.int64) - 1) % 5, 0))
