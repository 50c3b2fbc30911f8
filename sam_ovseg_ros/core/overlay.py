"""The human view: instance colours over the color image, outlines, and class captions.

Colours come from a fixed palette indexed by instance id (same id, same colour). Blending and
outlines are whole-image array operations; only the captions (one per instance) are drawn one
by one, each at the most interior pixel of the instance's largest connected component.
"""
from __future__ import annotations

import colorsys
from functools import lru_cache

import cv2
import numpy as np
from scipy import ndimage

from sam_ovseg_ros.core.frame_types import Segment
from sam_ovseg_ros.core.instances import lookup

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
# colour of every possible uint16 id (id 0 black): one gather colours an instance image
PALETTE_BY_ID = PALETTE[np.concatenate([[0], (np.arange(1, 65536) - 1) % 255 + 1])]
PALETTE_BY_ID.setflags(write=False)


def colors_of(ids: np.ndarray) -> np.ndarray:
    """Palette colour of each id (id 0 -> black)."""
    ids = np.asarray(ids).astype(np.intp)
    return np.take(PALETTE, np.where(ids > 0, (ids - 1) % 255 + 1, 0), axis=0)


def boundaries(labels: np.ndarray) -> np.ndarray:
    """True where a pixel's right or lower neighbour carries a different id."""
    edge = np.zeros(labels.shape, bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return edge


def component_maxima(values: np.ndarray, comps: np.ndarray, ncomp: int, counts: np.ndarray | None = None) -> np.ndarray:
    """Maximum of ``values`` over each component 1..ncomp (each non-empty) of a flat label array;
    ``counts``: pixels per label 0..ncomp when known.

    Pixels grouped by a stable sort, which numpy does as a radix sort for 16-bit keys (8x
    ``ndimage.maximum``'s comparison sort here), then one ``maximum.reduceat``."""
    key = comps.astype(np.uint16) if ncomp < 65536 else comps
    grouped = values[np.argsort(key, kind="stable")]
    if counts is None:
        counts = np.bincount(comps, minlength=ncomp + 1)
    starts = np.cumsum(counts)[:-1]  # component c starts after 0..c-1
    return np.maximum.reduceat(grouped, starts)


def caption_points(instances: np.ndarray, n: int, step: int = 4, boxes: np.ndarray | None = None) -> np.ndarray:
    """(n, 2) int (x, y) for ids 1..n: the most interior pixel of each id's largest component.

    Worked out on every ``step``-th pixel (a caption needs no sub-pixel accuracy): components,
    distance transform and per-component maxima on the subsampled image; the chosen sample is a
    pixel of the full image, so it lies inside its instance. Instances too small to survive the
    subsampling get a pixel from their own box (``boxes``: (n, 4) x, y, width, height of each id, as the
    segments carry them; found here when not given). -1 where an id has no pixel.
    """
    out = np.full((n, 2), -1, np.int64)
    if n == 0:
        return out
    off = step // 2
    small = instances[off::step, off::step]
    inner = ((small > 0) & ~boundaries(small)).view(np.uint8)
    # 4-connected (boundary pixels separate different ids); OpenCV's 4-way labelling numbers components
    # in raster order like ndimage.label (tested equal), 4x faster, with the sizes
    ncomp, comps, stats, _ = cv2.connectedComponentsWithStats(inner, connectivity=4, ltype=cv2.CV_32S)
    ncomp -= 1
    if ncomp:
        flat = comps.ravel()
        comp_ids = np.zeros(ncomp + 1, np.int64)
        comp_ids[flat] = small.ravel()  # every pixel of a component carries its id
        comp_ids = comp_ids[1:]
        counts = stats[:, cv2.CC_STAT_AREA].astype(np.int64)  # row 0: the background's pixels
        sizes = counts[1:]
        order = np.lexsort((sizes, comp_ids))  # by id, then size ascending: the last per id is the largest
        last = np.ones(ncomp, bool)
        last[:-1] = comp_ids[order][:-1] != comp_ids[order][1:]
        best = order[last]
        dist = cv2.distanceTransform(inner, cv2.DIST_L2, 3).ravel()
        # the deepest pixel of each component (the first in raster order on ties), without sorting pixels
        peak = np.zeros(ncomp + 1, np.float32)
        peak[1:] = component_maxima(dist, flat, ncomp, counts)
        at_peak = np.flatnonzero((dist == peak[flat]) & (flat > 0))
        _, first = np.unique(flat[at_peak], return_index=True)  # components 1..ncomp in order
        y, x = np.divmod(at_peak[first][best], small.shape[1])
        out[comp_ids[best] - 1] = np.stack([x * step + off, y * step + off], axis=1)
    missing = np.nonzero(out[:, 0] < 0)[0]
    if len(missing):  # too small or thin for the subsampled image: the deepest pixel inside their own box
        if boxes is None:
            objects = ndimage.find_objects(instances, max_label=n)
        for i in missing:
            if boxes is not None:
                x0, y0, bw, bh = (int(v) for v in boxes[i])
                sl = (slice(y0, y0 + bh), slice(x0, x0 + bw)) if bw > 0 else None
            else:
                sl = objects[i]
            if sl is None:
                continue
            own = np.pad((instances[sl] == i + 1).astype(np.uint8), 1)
            dist = cv2.distanceTransform(own, cv2.DIST_L2, 3)
            y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
            out[i] = (x - 1 + sl[1].start, y - 1 + sl[0].start)
    return out


OUTLINE = (255, 255, 250)
_PACKED = (PALETTE_BY_ID[:256].astype(np.uint32) * np.array([1, 1 << 8, 1 << 16], np.uint32)).sum(1, dtype=np.uint32)
_FILL: dict[tuple, np.ndarray] = {}


def _outline_image(shape: tuple) -> np.ndarray:
    """A constant image of the outline colour (made once per size) that cv2.copyTo copies through a mask."""
    if shape not in _FILL:
        _FILL[shape] = np.broadcast_to(np.array(OUTLINE, np.uint8), shape).copy()
    return _FILL[shape]


@lru_cache(maxsize=4096)
def _text_size(text: str, scale: float) -> tuple[tuple[int, int], int]:
    """cv2.getTextSize, remembered: captions repeat the same class names every frame."""
    return cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)


def draw(color: np.ndarray, instances: np.ndarray, segments: list[Segment]) -> np.ndarray:
    """H x W x 3 uint8: instance colours blended 50/50, outlines, and a caption per segment.

    Whole-image steps are one gather of a per-id packed colour, one OpenCV blend and two OpenCV masked
    copies (numpy's masked assignment is an order of magnitude slower on 3-channel images)."""
    color = np.ascontiguousarray(color)
    lut = np.zeros(65536, np.uint32)
    lut[1:len(segments) + 1] = _PACKED[[(s.key - 1) % 255 + 1 for s in segments]]  # colours follow tracks
    words = lookup(np.ascontiguousarray(instances, np.uint16), lut.view(np.int32))  # OpenCV has no uint32
    tint = cv2.cvtColor(words.view(np.uint8).reshape(*instances.shape, 4), cv2.COLOR_RGBA2RGB)
    blended = cv2.addWeighted(color, 1.0 - ALPHA, tint, ALPHA, 0.0)
    out = color.copy()
    cv2.copyTo(blended, (instances > 0).view(np.uint8), out)
    cv2.copyTo(_outline_image(out.shape), boundaries(instances).view(np.uint8), out)  # one side is an instance
    if segments:
        pts = caption_points(instances, len(segments), boxes=np.array([s.bbox for s in segments]))
        scale = max(0.35, min(color.shape[:2]) / 1000.0)
        text_colors = np.maximum(colors_of(np.array([s.key for s in segments])), 110).tolist()
        h, w = out.shape[:2]
        for seg, (x, y), bright in zip(segments, pts.tolist(), text_colors):
            if x < 0:
                continue
            text = seg.class_name or f"#{seg.id}"
            (tw, th), base = _text_size(text, scale)
            x0 = min(max(x - tw // 2, 0), max(0, w - tw))
            y0 = min(max(y + th // 2, th), h - base)
            cv2.rectangle(out, (x0 - 1, y0 - th - 1), (x0 + tw + 1, y0 + base), (0, 0, 0), cv2.FILLED)
            cv2.putText(out, text, (x0, y0), cv2.FONT_HERSHEY_SIMPLEX, scale, bright, 1, cv2.LINE_AA)
    return out
