"""The human view: instance colours over the color image, outlines, and class captions.

Colours come from a fixed palette indexed by instance id (same id, same colour). Blending and
outlines are whole-image array operations; only the captions (one per instance) are drawn one
by one, each at the most interior pixel of the instance's largest connected component.
"""
from __future__ import annotations

import colorsys

import cv2
import numpy as np
from scipy import ndimage

from .frame import Segment

ALPHA = 0.5


def _make_palette(n: int = 256) -> np.ndarray:
    """Well-separated colours: golden-ratio hues with alternating saturation/value; row 0 unused."""
    pal = np.zeros((n, 3), np.uint8)
    for i in range(1, n):
        h = (i * 0.618033988749895) % 1.0
        s = 0.65 if i % 2 else 0.9
        v = 0.95 if (i // 2) % 2 else 0.75
        pal[i] = [round(c * 255) for c in colorsys.hsv_to_rgb(h, s, v)]
    return pal


PALETTE = _make_palette()


def colors_of(ids: np.ndarray) -> np.ndarray:
    """Palette colour of each id (id 0 -> black)."""
    ids = np.asarray(ids)
    return np.where((ids == 0)[..., None], 0, PALETTE[((ids.astype(np.int64) - 1) % 255) + 1])


def boundaries(labels: np.ndarray) -> np.ndarray:
    """True where a pixel's right or lower neighbour carries a different id."""
    edge = np.zeros(labels.shape, bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return edge


def caption_points(instances: np.ndarray, n: int) -> np.ndarray:
    """(n, 2) int (x, y) for ids 1..n: deepest pixel of each id's largest component (-1 if none)."""
    out = np.full((n, 2), -1, np.int64)
    if n == 0:
        return out
    inner = (instances > 0) & ~boundaries(instances)
    comps, ncomp = ndimage.label(inner, structure=np.ones((3, 3), bool))
    if ncomp == 0:
        return out
    comp_ids = np.asarray(ndimage.maximum(instances, comps, np.arange(1, ncomp + 1))).astype(np.int64)
    sizes = np.bincount(comps.ravel(), minlength=ncomp + 1)[1:]
    order = np.lexsort((sizes, comp_ids))  # by id, then size ascending -> last per id is the largest
    last = np.ones(ncomp, bool)
    last[:-1] = comp_ids[order][:-1] != comp_ids[order][1:]
    best = order[last]  # component index (0-based) of the largest component of each present id
    dist = cv2.distanceTransform(inner.astype(np.uint8), cv2.DIST_L2, 3)
    pos = ndimage.maximum_position(dist, comps, best + 1)
    for ci, (y, x) in zip(best, pos):
        out[comp_ids[ci] - 1] = (x, y)
    return out


def draw(color: np.ndarray, instances: np.ndarray, segments: list[Segment]) -> np.ndarray:
    """H x W x 3 uint8: blended instance colours, outlines, and a caption per segment."""
    img = color.astype(np.float32)
    fg = instances > 0
    tint = colors_of(instances).astype(np.float32)
    img[fg] = img[fg] * (1 - ALPHA) + tint[fg] * ALPHA
    out = img.astype(np.uint8)
    out[boundaries(instances)] = (255, 255, 250)  # ids differ, so one side is an instance
    if segments:
        pts = caption_points(instances, len(segments))
        scale = max(0.35, min(color.shape[:2]) / 1000.0)
        for seg, (x, y) in zip(segments, pts):
            if x < 0:
                continue
            text = seg.class_name or f"#{seg.id}"
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
            x0 = int(np.clip(x - tw // 2, 0, max(0, out.shape[1] - tw)))
            y0 = int(np.clip(y + th // 2, th, out.shape[0] - base))
            cv2.rectangle(out, (x0 - 1, y0 - th - 1), (x0 + tw + 1, y0 + base), (0, 0, 0), cv2.FILLED)
            bright = np.maximum(colors_of(np.array([seg.id]))[0], 110).tolist()
            cv2.putText(out, text, (x0, y0), cv2.FONT_HERSHEY_SIMPLEX, scale, bright, 1, cv2.LINE_AA)
    return out
