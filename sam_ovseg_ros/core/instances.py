"""SAM masks -> one instance image, and the per-instance records of ~/segments.

Overlaps follow SegmentAnyRGBD (open_vocab_seg/utils/predictor.py: masks sorted by area, painted largest first): a pixel belongs to the smallest-area mask that
contains it. Ids 1..N are given by mask area, largest first (ties keep the generator's order);
masks left with no visible pixel are dropped, so ids stay contiguous and every segment's area
is its pixel count in the instance image.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from scipy import ndimage

from sam_ovseg_ros.core import kernels
from sam_ovseg_ros.core.frame_types import Segment


def windows(boxes: np.ndarray | None, index) -> list[tuple[slice, slice]]:
    """(rows, cols) slices of the inclusive, segment-anything style boxes ``boxes[index]``; the whole
    image for each without boxes. One ``tolist`` instead of a numpy scalar conversion per box; boxes
    reaching past the image are clipped to it, as the compiled kernels clip them."""
    if boxes is None:
        return [(slice(None), slice(None))] * len(index)
    clipped = np.maximum(np.asarray(boxes)[index], [0, 0, -1, -1])  # negative slice ends count from the far end
    return [(slice(y0, y1 + 1), slice(x0, x1 + 1)) for x0, y0, x1, y1 in clipped.tolist()]


def _opencv_takes_16bit_tables() -> bool:
    try:
        cv2.LUT(np.zeros((1, 2), np.uint16), np.zeros(65536, np.uint16))
        return True
    except cv2.error:  # OpenCV 4 (e.g. a distribution's python3-opencv): 8-bit images only
        return False


LUT16 = _opencv_takes_16bit_tables()


def lookup(ids: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[ids]`` for a uint8 image with a 256-entry table or a uint16 image with a 65536-entry
    one: OpenCV's LUT (one pass, ~3x np.take) where it takes 16-bit images (OpenCV 5), else np.take."""
    if ids.dtype == np.uint8 or LUT16:
        return cv2.LUT(ids, table)
    return np.take(table, ids)


def mask_runs(masks, boxes: np.ndarray | None) -> "kernels.MaskRuns | None":
    """Host masks with boxes as row runs for the compiled instance image and vote (read once, used by
    both: pass the result to :func:`masks_to_instances` and ``fusion.vote``); None where those run
    elsewhere (no kernels, device tensors, no boxes, more masks than 16-bit ids)."""
    if kernels.available and isinstance(masks, np.ndarray) and boxes is not None and len(masks) <= 65535:
        return kernels.mask_runs(masks, boxes)
    return None


def masks_to_instances(masks, areas: np.ndarray, boxes: np.ndarray | None = None,
                       runs: "kernels.MaskRuns | None" = None) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) uint16 instance image (host) and, per id 1..N, the index of its mask in ``masks``.

    ``masks`` (M, H, W) bool: a numpy array, or a tensor on the device that made it (then the image
    is built there and only it comes back; see ``_instances_on_device``). ``boxes`` (M, 4) x0, y0, x1,
    y1 inclusive boxes enclosing each mask. Masks are painted largest first, so the smallest covering
    mask ends on top. The returned order has N <= M entries: ``order[i]`` is the mask shown as id i + 1.
    ``runs`` (:func:`mask_runs` of the same masks and boxes) paints from those, in the compiled kernel.
    """
    m = masks.shape[0]
    if m == 0:
        return np.zeros(tuple(masks.shape[1:]), np.uint16), np.zeros(0, np.int64)
    if m > 65535:
        raise ValueError("more than 65535 masks do not fit a 16-bit instance image")
    order = np.lexsort((np.arange(m), -np.asarray(areas)))  # area descending, stable
    runs = runs if runs is not None else mask_runs(masks, boxes)
    if runs is not None:
        ids, visible = kernels.paint(runs, order)
        return ids, order[visible]
    if isinstance(masks, torch.Tensor):
        rank, visible = _instances_on_device(masks, order)
    else:
        rank, visible = _instances_on_host(masks, order, boxes)
    remap = np.zeros(65536 if rank.dtype == np.uint16 else 256, np.uint16)  # rank -> id; cv2.LUT's table sizes
    remap[1:m + 1][visible] = np.arange(1, int(visible.sum()) + 1, dtype=np.uint16)
    return lookup(rank, remap), order[visible]


def _instances_on_host(masks: np.ndarray, order: np.ndarray, boxes: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Rank image (paint position, 0 = none) and visibility, painting inside each mask's box.

    Positions grow in paint order, so painting is a running maximum with (mask x position): dense
    SIMD passes instead of masked assignment, in uint8 while positions fit (M < 256)."""
    m = masks.shape[0]
    dtype = np.uint8 if m < 256 else np.uint16
    rank = np.zeros(masks.shape[1:], dtype)
    ones = masks.view(np.uint8)  # bool as 0/1 bytes, no copy
    for pos, (i, (ys, xs)) in enumerate(zip(order, windows(boxes, order)), start=1):
        view = rank[ys, xs]
        np.maximum(view, np.multiply(ones[i, ys, xs], dtype(pos), dtype=dtype), out=view)
    return rank, histogram(rank, m + 1)[1:] > 0


def histogram(values: np.ndarray, bins: int) -> np.ndarray:
    """(bins,) float32 counts of the values 0..bins-1 of a uint8/uint16 image: OpenCV's histogram,
    ~3x faster than np.bincount here (no index copy); exact below 2^24 per bin."""
    return cv2.calcHist([values], [0], None, [bins], [0, bins]).ravel()


def _instances_on_device(masks: torch.Tensor, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank image and visibility where the masks are: one max over the stack of (mask x rank), the
    rank being the paint position (later = smaller = on top). No per-mask launches, one copy back."""
    ranks = torch.zeros(masks.shape[0], dtype=torch.int32, device=masks.device)
    ranks[torch.as_tensor(order, device=masks.device)] = torch.arange(1, masks.shape[0] + 1, dtype=torch.int32,
                                                                      device=masks.device)
    rank = (masks.to(torch.int32) * ranks[:, None, None]).amax(0)
    visible = torch.bincount(rank.flatten(), minlength=masks.shape[0] + 1)[1:] > 0
    return rank.to(torch.int32).cpu().numpy().astype(np.uint16), visible.cpu().numpy()  # ranks <= M <= 65535


@dataclass(frozen=True)
class Measures:
    """Per id 1..N of an instance image: what ~/segments reports."""

    areas: np.ndarray  # (N,) int64 pixel counts
    boxes: np.ndarray  # (N, 4) int64 tight x, y, width, height (zeros for an absent id)
    centroids: np.ndarray  # (N, 3) float64 mean x, y, z of the valid points (NaN where none)
    valid_points: np.ndarray  # (N,) int64 pixels with valid depth


def measure(instances: np.ndarray, n: int, boxes: np.ndarray | None = None,
            depth_m: np.ndarray | None = None, rays=None) -> Measures:
    """Areas, tight boxes and centroids of ids 1..n of an instance image.

    ``depth_m`` (H, W) float32 metres (NaN: invalid) and ``rays`` (``Backprojector.rays``) give the
    cloud's x, y, z per pixel as the same float32 products; a centroid is the float64 mean of
    exactly those values over the id's valid pixels. The compiled kernel measures every id in one
    raster pass; the NumPy path measures each id inside a window that encloses it: ``boxes`` (n, 4)
    inclusive x0, y0, x1, y1, the boxes of the masks shown as the ids (a visible part lies inside
    its mask), else windows from ``ndimage.find_objects``.
    """
    areas, tight, counts = np.zeros(n, np.int64), np.zeros((n, 4), np.int64), np.zeros(n, np.int64)
    cents = np.full((n, 3), np.nan)
    if n == 0:
        return Measures(areas, tight, cents, counts)
    if kernels.available and instances.dtype == np.uint16 and (depth_m is None or depth_m.dtype == np.float32):
        areas, box, counts, sums = kernels.measure(instances, n, depth_m, rays)
        seen = areas > 0
        tight[seen] = np.c_[box[seen, :2], box[seen, 2:] - box[seen, :2] + 1]
        if depth_m is not None:
            ok = counts > 0
            cents[ok] = sums[ok] / counts[ok, None]
        return Measures(areas, tight, cents, counts)
    return _measure_windows(instances, n, boxes, None if depth_m is None else _xyz(depth_m, rays),
                            Measures(areas, tight, cents, counts))


def _xyz(depth_m: np.ndarray, rays) -> np.ndarray:
    """(H, W, 3) float32 x, y, z: the cloud's products depth x ray."""
    rx, ry = rays
    return np.stack([depth_m * rx, depth_m * ry, depth_m], axis=-1).astype(np.float32, copy=False)


def _measure_windows(instances: np.ndarray, n: int, boxes: np.ndarray | None, xyz: np.ndarray | None,
                     out: Measures) -> Measures:
    """:func:`measure` with NumPy/OpenCV passes per id, each inside its window, into ``out``."""
    areas, tight, cents, counts = out.areas, out.boxes, out.centroids, out.valid_points
    if boxes is None:
        found = ndimage.find_objects(instances.astype(np.int32), max_label=n)  # int32: 3x faster
        wins = [sl if sl is not None else (slice(0, 0), slice(0, 0)) for sl in found]
    else:
        wins = windows(boxes, np.arange(n))
    instances = np.ascontiguousarray(instances, np.uint16)
    if xyz is not None:
        z = cv2.extractChannel(xyz, 2)
        valid = cv2.compare(z, z, cv2.CMP_EQ)  # NaN != NaN
    for j, (ys, xs) in enumerate(wins):
        crop = instances[ys, xs]
        if crop.size == 0:
            continue
        hit = np.equal(crop, j + 1).view(np.uint8)  # numpy: OpenCV takes a 1x1 image for a scalar
        bx, by, bw, bh = cv2.boundingRect(hit)
        if bw == 0:
            continue
        hit = hit[by:by + bh, bx:bx + bw]
        x0, y0 = (xs.start or 0) + bx, (ys.start or 0) + by
        areas[j] = cv2.countNonZero(hit)
        tight[j] = (x0, y0, bw, bh)
        if xyz is not None:
            ok = np.bitwise_and(valid[y0:y0 + bh, x0:x0 + bw], hit)
            counts[j] = cv2.countNonZero(ok)
            if counts[j]:
                cents[j] = cv2.mean(xyz[y0:y0 + bh, x0:x0 + bw], mask=ok)[:3]  # sums in float64
    return out


def segments_from_instances(measures: Measures, scores: np.ndarray, classes: np.ndarray,
                            class_scores: np.ndarray, class_names: list[str]) -> list[Segment]:
    """One Segment per id 1..N, consistent with the instance image and the cloud by construction.

    ``classes`` are vocabulary indices per id (-1: none); Segment.class_id is that + 1.
    """
    n = len(scores)
    if n == 0:
        return []
    cids = (np.asarray(classes, np.int64) + 1).tolist() if len(classes) else [0] * n
    cscores = np.asarray(class_scores, np.float64).tolist() if len(class_scores) else [0.0] * n
    rows = zip(measures.areas.tolist(), measures.boxes.tolist(), np.asarray(scores, np.float64).tolist(),
               cids, cscores, measures.centroids.tolist(), measures.valid_points.tolist())
    return [Segment(id=i, area=a, bbox=tuple(b), score=sc, class_id=c, class_name=class_names[c - 1] if c > 0 else "",
                    class_score=cs, centroid=tuple(ce), valid_points=v)
            for i, (a, b, sc, c, cs, ce, v) in enumerate(rows, start=1)]
