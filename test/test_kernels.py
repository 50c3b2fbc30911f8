"""The compiled frame kernels (kernels.c) against the NumPy paths they replace, bit for bit on real
frames, and their guards: clipped boxes, ragged masks, refused inputs, a missing or stale build."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scannet import load

from sam_ovseg_ros.core import cloud, depth, fusion, instances, kernels
from sam_ovseg_ros.core.cloud import Intrinsics

REPO = Path(__file__).resolve().parents[1]


def real_case(frame: str, m: int, seed: int):
    sys.path.insert(0, str(REPO / "bench"))
    from bench_overhead import label_map, synthetic_masks

    rgb, d, k = load(frame)
    masks, areas, boxes = synthetic_masks(rgb, d, m, np.random.default_rng(seed))
    return rgb, d, Intrinsics.from_k(k, 640, 480), masks, areas, boxes, label_map(rgb, 20)


def numpy_paths(monkeypatch):
    monkeypatch.setattr(kernels, "available", False)


@pytest.mark.parametrize("frame,m", [("1660", 100), ("5560", 300)])
def test_compiled_equals_numpy_on_real_frames(frame, m, monkeypatch):
    assert kernels.available, kernels.where
    rgb, d, k, masks, areas, boxes, labels = real_case(frame, m, 7)
    bp, dm = cloud.Backprojector(), depth.to_metres(d, 0.001)
    runs = instances.mask_runs(masks, boxes)
    assert isinstance(runs, kernels.MaskRuns) and len(runs) == m
    inst, order = instances.masks_to_instances(masks, areas, boxes, runs)
    counts = kernels.vote_counts(labels, runs, 20, order)
    meas = instances.measure(inst, len(order), boxes[order], dm, bp.rays(k))
    sem = fusion.semantic_image(inst, fusion.vote(labels, masks, 20, boxes, order, runs)[0])
    pts = cloud.build_points(bp, dm, rgb, k, sem, inst)
    dec = cloud.build_points(cloud.Backprojector(), dm[::3, ::3], rgb[::3, ::3],
                             Intrinsics(k.fx / 3, k.fy / 3, k.cx / 3, k.cy / 3, 214, 160), sem[::3, ::3], inst[::3, ::3])

    numpy_paths(monkeypatch)
    assert instances.mask_runs(masks, boxes) is None
    ref_inst, ref_order = instances.masks_to_instances(masks, areas, boxes)
    assert np.array_equal(inst, ref_inst) and np.array_equal(order, ref_order)
    assert np.array_equal(counts, fusion._counts_on_host(labels, masks, 20, boxes, order))
    ref = instances.measure(inst, len(order), boxes[order], dm, bp.rays(k))
    for f in ("areas", "boxes", "valid_points"):
        assert np.array_equal(getattr(meas, f), getattr(ref, f)), f
    np.testing.assert_allclose(meas.centroids, ref.centroids, rtol=0, atol=1e-9)  # float64 sums, other order
    assert np.array_equal(np.isnan(meas.centroids), np.isnan(ref.centroids))
    assert pts.tobytes() == cloud.build_points(bp, dm, rgb, k, sem, inst).tobytes()
    assert dec.tobytes() == cloud.build_points(cloud.Backprojector(), dm[::3, ::3], rgb[::3, ::3],
                                               Intrinsics(k.fx / 3, k.fy / 3, k.cx / 3, k.cy / 3, 214, 160),
                                               sem[::3, ::3], inst[::3, ::3]).tobytes()


def test_boxes_past_the_image_are_clipped(monkeypatch):
    """A box reaching outside the image (or lying wholly outside) reads and writes only inside it:
    the same answer as NumPy's clipped slices."""
    rgb, d, k, masks, areas, boxes, labels = real_case("2760", 40, 3)
    masks[3] = True
    masks[3][2:-2, 2:-2] = False  # the image's rim, two pixels wide
    areas[3] = masks[3].sum()
    wild = boxes.copy()
    wild[::3] = (-50, -9, 700, 500)
    wild[1] = (900, 900, 1000, 1000)  # nothing of the image: mask 1 counts as empty
    got = instances.masks_to_instances(masks, areas, wild)
    votes = fusion.vote(labels, masks, 20, wild, got[1])
    numpy_paths(monkeypatch)
    ref = instances.masks_to_instances(masks, areas, wild)
    assert np.array_equal(got[0], ref[0]) and np.array_equal(got[1], ref[1]) and 1 not in got[1]
    rim = got[0] == np.flatnonzero(got[1] == 3)[0] + 1
    assert rim[0].any() and rim[-1].any() and rim[:, 0].any() and rim[:, -1].any()  # shown at every edge
    assert all(np.array_equal(a, b) for a, b in zip(votes, fusion.vote(labels, masks, 20, wild, got[1])))


def test_ragged_masks_outgrow_the_first_run_buffer(monkeypatch):
    """Checkerboard masks hold more runs than the first guess (4 per box row): encoded again with room."""
    h, w = 40, 64
    board = (np.add.outer(np.arange(h), np.arange(w)) % 2).astype(bool)
    masks = np.stack([board, ~board, np.ones((h, w), bool)])
    boxes = np.array([[0, 0, w - 1, h - 1]] * 3)
    runs = kernels.mask_runs(masks, boxes)
    assert runs.offsets.tolist() == [0, h * w // 2, h * w, h * w + h]
    assert runs.runs[:3].tolist() == [[0, 1, 2], [0, 3, 4], [0, 5, 6]]
    labels = np.random.default_rng(0).integers(-1, 5, (h, w))
    inst, order = instances.masks_to_instances(masks, masks.sum((1, 2)), boxes, runs)
    counts = kernels.vote_counts(labels, runs, 5, np.arange(3))
    numpy_paths(monkeypatch)
    assert np.array_equal(inst, instances.masks_to_instances(masks, masks.sum((1, 2)), boxes)[0])
    assert np.array_equal(counts, fusion._counts_on_host(labels, masks, 5, boxes, np.arange(3)))


def test_wrong_inputs_are_refused_before_the_c_code():
    masks, boxes = np.ones((2, 4, 5), bool), np.array([[0, 0, 4, 3]] * 2)
    runs = kernels.mask_runs(masks, boxes)
    with pytest.raises(ValueError, match="bool"):
        kernels.mask_runs(masks.astype(np.uint8), boxes)
    with pytest.raises(ValueError, match="boxes"):
        kernels.mask_runs(masks, boxes[:1])
    with pytest.raises(TypeError, match="mask_runs"):
        kernels.paint((runs.runs, runs.offsets), np.arange(2))
    with pytest.raises(ValueError, match="order"):
        kernels.paint(runs, np.array([0, 2]))
    with pytest.raises(ValueError, match="labels"):
        kernels.vote_counts(np.zeros((5, 4), int), runs, 3, np.arange(2))
    with pytest.raises(ValueError, match="uint16"):
        kernels.measure(np.zeros((4, 5), np.int32), 1)
    with pytest.raises(ValueError, match="rays"):
        kernels.measure(np.zeros((4, 5), np.uint16), 1, np.ones((4, 5), np.float32), (np.ones((1, 4)), np.ones((4, 1))))
    out = np.empty((4, 5), cloud.POINT_DTYPE)
    with pytest.raises(ValueError, match="uint16"):
        kernels.cloud(out, np.ones((4, 5), np.float32), (np.ones((1, 5)), np.ones((4, 1))), np.zeros((4, 5, 3), np.uint8),
                      np.zeros((4, 5), np.uint32), None)


@pytest.mark.parametrize("setting,why", [("off", "off"), ("/nonexistent/_sam_ovseg_kernels.so", "does not load"),
                                         ("libc.so.6", "sok_version")])
def test_missing_or_foreign_library_falls_back_with_a_reason(setting, why):
    env = dict(os.environ, SAM_OVSEG_KERNELS=setting)
    out = subprocess.run([sys.executable, "-c", "from sam_ovseg_ros.core import kernels; print(kernels.available); "
                          "print(kernels.where)"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    available, where = out.stdout.splitlines()
    assert available == "False" and why in where


def test_measure_equals_numpy_on_scattered_ids(monkeypatch):
    """Ids in many small rectangles and single pixels, at every column and row incl. the borders,
    with depth holes: every area, box, count and centroid as the NumPy path gives them."""
    rng = np.random.default_rng(11)
    h, w, n = 48, 64, 40
    ids = np.zeros((h, w), np.uint16)
    for j in range(1, n + 1):
        y, x = rng.integers(0, h), rng.integers(0, w)
        ids[y:y + rng.integers(1, 6), x:x + rng.integers(1, 9)] = j
        ids[rng.integers(0, h), rng.integers(0, w)] = j
    ids[rng.random((h, w)) < 0.05] = 0
    dm = rng.uniform(0.3, 5.0, (h, w)).astype(np.float32)
    dm[rng.random((h, w)) < 0.2] = np.nan
    rays = cloud.Backprojector().rays(Intrinsics(50.0, 52.0, 31.5, 23.5, w, h))
    got = instances.measure(ids, n + 2, None, dm, rays)  # ids n+1, n+2 absent
    numpy_paths(monkeypatch)
    ref = instances.measure(ids, n + 2, None, dm, rays)
    for f in ("areas", "boxes", "valid_points"):
        assert np.array_equal(getattr(got, f), getattr(ref, f)), f
    np.testing.assert_allclose(got.centroids, ref.centroids, rtol=0, atol=1e-12)
    assert np.array_equal(np.isnan(got.centroids), np.isnan(ref.centroids)) and got.areas[-1] == 0
