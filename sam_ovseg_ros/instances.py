"""SAM masks -> one instance image, and the per-instance records of ~/segments.

Overlaps follow SegmentAnyRGBD (open_vocab_seg/utils/predictor.py: masks sorted by area, painted largest first): a pixel belongs to the smallest-area mask that
contains it. Ids 1..N are given by mask area, largest first (ties keep the generator's order);
masks left with no visible pixel are dropped, so ids stay contiguous and every segment's area
is its pixel count in the instance image.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from .frame import Segment


def _crop(boxes: np.ndarray | None, i: int) -> tuple[slice, slice]:
    """The (inclusive, segment-anything style) box of mask i as slices; whole image without boxes."""
    if boxes is None:
        return slice(None), slice(None)
    x0, y0, x1, y1 = (int(v) for v in boxes[i])
    return slice(y0, y1 + 1), slice(x0, x1 + 1)


def masks_to_instances(masks, areas: np.ndarray, boxes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) uint16 instance image (host) and, per id 1..N, the index of its mask in ``masks``.

    ``masks`` (M, H, W) bool: a numpy array, or a tensor on the device that made it (then the image
    is built there and only it comes back; see ``_instances_on_device``). ``boxes`` (M, 4) x0, y0, x1,
    y1 inclusive boxes enclosing each mask. Masks are painted largest first, so the smallest covering
    mask ends on top. The returned order has N <= M entries: ``order[i]`` is the mask shown as id i + 1.
    """
    m = masks.shape[0]
    if m == 0:
        return np.zeros(tuple(masks.shape[1:]), np.uint16), np.zeros(0, np.int64)
    if m > 65535:
        raise ValueError("more than 65535 masks do not fit a 16-bit instance image")
    order = np.lexsort((np.arange(m), -np.asarray(areas)))  # area descending, stable
    if isinstance(masks, torch.Tensor):
        rank, visible = _instances_on_device(masks, order)
    else:
        rank = np.zeros(masks.shape[1:], np.uint16 if m < 65535 else np.uint32)
        for pos, i in enumerate(order):  # host: paint inside each box (work = sum of box areas)
            ys, xs = _crop(boxes, i)
            view = rank[ys, xs]
            view[masks[i][ys, xs]] = pos + 1
        visible = np.bincount(rank.ravel(), minlength=m + 1)[1:] > 0
    remap = np.zeros(m + 1, np.uint16)
    remap[1:][visible] = np.arange(1, int(visible.sum()) + 1, dtype=np.uint16)
    return remap[rank], order[visible]


def _instances_on_device(masks: torch.Tensor, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank image and visibility where the masks are: one max over the stack of (mask x rank), the
    rank being the paint position (later = smaller = on top). No per-mask launches, one copy back."""
    ranks = torch.zeros(masks.shape[0], dtype=torch.int32, device=masks.device)
    ranks[torch.as_tensor(order, device=masks.device)] = torch.arange(1, masks.shape[0] + 1, dtype=torch.int32,
                                                                      device=masks.device)
    rank = (masks.to(torch.int32) * ranks[:, None, None]).amax(0)
    visible = torch.bincount(rank.flatten(), minlength=masks.shape[0] + 1)[1:] > 0
    return rank.to(torch.int32).cpu().numpy().astype(np.uint16 if masks.shape[0] < 65535 else np.uint32), \
        visible.cpu().numpy()


def bboxes(instances: np.ndarray, n: int) -> np.ndarray:
    """(n, 4) int (x, y, width, height) tight boxes of ids 1..n (zeros for an absent id)."""
    out = np.zeros((n, 4), np.int64)
    for i, sl in enumerate(ndimage.find_objects(instances.astype(np.int32), max_label=n)):  # int32: 3x faster
        if sl is not None:
            out[i] = (sl[1].start, sl[0].start, sl[1].stop - sl[1].start, sl[0].stop - sl[0].start)
    return out


def segments_from_instances(instances: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                            class_scores: np.ndarray, class_names: list[str],
                            centroids: tuple[np.ndarray, np.ndarray] | None = None) -> list[Segment]:
    """One Segment per id 1..N, consistent with the instance image and the cloud by construction.

    ``classes`` are vocabulary indices per id (-1: none); Segment.class_id is that + 1.
    ``centroids`` is ``cloud.centroids(...)`` (means of the instances' valid cloud points, counts).
    """
    n = len(scores)
    if n == 0:
        return []
    areas = np.bincount(instances.ravel(), minlength=n + 1)[1:n + 1]
    boxes = bboxes(instances, n)
    cents, counts = centroids if centroids is not None else (np.full((n, 3), np.nan), np.zeros(n, np.int64))
    segs = []
    for i in range(n):
        cid = int(classes[i]) + 1 if len(classes) else 0  # vocabulary index (-1 none) -> class_id
        segs.append(Segment(
            id=i + 1, area=int(areas[i]), bbox=tuple(int(v) for v in boxes[i]), score=float(scores[i]),
            class_id=cid, class_name=class_names[cid - 1] if cid > 0 else "",
            class_score=float(class_scores[i]) if len(class_scores) else 0.0,
            centroid=tuple(float(v) for v in cents[i]), valid_points=int(counts[i])))
    return segs
