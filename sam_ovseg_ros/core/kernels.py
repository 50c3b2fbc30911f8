"""Compiled per-pixel loops (kernels.c) where NumPy needs many small calls per frame.

The instance image and the vote visit every pixel of every mask (the original votes over whole
masks), the segments need per-id sums, the cloud interleaves six planes: as NumPy that is a few
calls per mask or per plane, and the (M, H, W) mask stack, far larger than the caches, is read once
per stage. Here the masks are read once per frame into row runs (``mask_runs``), painted and voted
from those, and the rest are single passes with the same arithmetic. ``make setup`` / colcon build
the library into the package (CMakeLists.txt); without it (``available`` False) the NumPy paths run
with the same results. ``SAM_OVSEG_KERNELS`` names another build, or ``off``. Every wrapper checks
dtypes, shapes and strides before passing a pointer.
"""
from __future__ import annotations

import ctypes
import glob
import os
from dataclasses import dataclass

import numpy as np

import sam_ovseg_ros

LIBRARY = "_sam_ovseg_kernels"
VERSION = 1  # sok_version() of a build of this kernels.c; another value is a stale build
_P = ctypes.c_void_p
_I = ctypes.c_int64


def _find() -> tuple[str | None, str]:
    """(path of the built library, or None and why): the package's directories (the checkout, or
    where cmake installed it), unless ``SAM_OVSEG_KERNELS`` names one or is ``off``."""
    override = os.environ.get("SAM_OVSEG_KERNELS")
    if override == "off":
        return None, "off (SAM_OVSEG_KERNELS=off)"
    if override:
        return override, ""
    for d in sam_ovseg_ros.__path__:
        for path in sorted(glob.glob(os.path.join(d, LIBRARY + "*.so"))):
            return path, ""
    return None, "not built (make setup or colcon build compile sam_ovseg_ros/kernels.c)"


def _load():
    path, why = _find()
    if path is None:
        return None, why
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        return None, f"{path} does not load: {e}"
    if not hasattr(lib, "sok_version"):
        return None, f"{path} is not a build of kernels.c (no sok_version)"
    lib.sok_version.restype = _I
    if lib.sok_version() != VERSION:
        return None, f"{path} is a stale build (version {lib.sok_version()}, want {VERSION}): rerun make setup"
    lib.sok_mask_runs.restype = _I
    lib.sok_mask_runs.argtypes = [_P, _I, _I, _I, _I, _I, _P, _P, _I, _P]
    lib.sok_paint.restype = _I
    lib.sok_paint.argtypes = [_P, _P, _I, _I, _I, _P, _P, _P, _P]
    lib.sok_vote.restype = _I
    lib.sok_vote.argtypes = [_P, _P, _I, _I, _P, _I, _P, _I, _P, _P]
    lib.sok_measure.restype = None
    lib.sok_measure.argtypes = [_P, _I, _I, _I, _P, _P, _P, _P, _P, _P, _P]
    lib.sok_cloud.restype = None
    lib.sok_cloud.argtypes = [_I, _I, _P, _I, _I, _P, _P, _P, _I, _I, _P, _I, _I, _P, _I, _I, _P]
    return lib, path


_lib, where = _load()
available = _lib is not None  # ``where``: the library's path, or why there is none


def _ptr(a: np.ndarray | None):
    return None if a is None else a.ctypes.data


def _mask_layout(masks: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Masks as (M, H, W) bytes the C loops can address: plane and row strides, unit column stride."""
    if masks.dtype != np.bool_ or masks.ndim != 3:
        raise ValueError(f"masks must be (M, H, W) bool, got {masks.dtype} {masks.shape}")
    if masks.strides[2] != 1 or min(masks.strides[:2]) < 0:
        masks = np.ascontiguousarray(masks)
    return masks, masks.strides[0], masks.strides[1]


def _boxes(boxes: np.ndarray, m: int) -> np.ndarray:
    boxes = np.ascontiguousarray(boxes, np.int64)
    if boxes.shape != (m, 4):
        raise ValueError(f"boxes must be ({m}, 4), got {boxes.shape}")
    return boxes


@dataclass(frozen=True)
class MaskRuns:
    """Host masks as runs of set pixels per box row, made once per frame (``mask_runs``): the mask
    stack is read once, the instance image and the vote then walk the runs."""

    runs: np.ndarray  # (R, 3) int32: row, first column, one past the last
    offsets: np.ndarray  # (M + 1,) int64: the runs of mask i are runs[offsets[i]:offsets[i + 1]]
    shape: tuple[int, int]  # (H, W) of the masks

    def __len__(self) -> int:
        return len(self.offsets) - 1


def mask_runs(masks: np.ndarray, boxes: np.ndarray) -> MaskRuns:
    """Runs of each (M, H, W) bool mask inside its inclusive x0, y0, x1, y1 box (clipped)."""
    masks, ms, rs = _mask_layout(masks)
    m, h, w = masks.shape
    boxes = _boxes(boxes, m)
    offsets = np.empty(m + 1, np.int64)
    cap = 4 * int(np.clip(boxes[:, 3] - boxes[:, 1] + 1, 0, h).sum()) + 16  # room for 4 runs per box row
    while True:
        runs = np.empty((cap, 3), np.int32)
        n = _lib.sok_mask_runs(_ptr(masks), m, h, w, ms, rs, _ptr(boxes), _ptr(runs), cap, _ptr(offsets))
        if n <= cap:
            return MaskRuns(runs[:n], offsets, (h, w))
        cap = n  # ragged masks: once more with room for every run


def _check_runs(runs: MaskRuns, idx, name: str) -> np.ndarray:
    if not isinstance(runs, MaskRuns):
        raise TypeError(f"runs must come from kernels.mask_runs, got {type(runs).__name__}")
    idx = np.ascontiguousarray(idx, np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= len(runs)):
        raise ValueError(f"{name} outside 0..{len(runs) - 1}")
    return idx


def paint(runs: MaskRuns, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) uint16 ids and the bool visibility per paint position: masks ``order[k]`` painted in
    that order, ids 1..N counting the positions that kept a visible pixel."""
    m = len(runs)
    if m > 65535:
        raise ValueError("more than 65535 masks do not fit a 16-bit instance image")
    order = _check_runs(runs, order, "order")
    if order.shape != (m,):
        raise ValueError("order must hold every mask once")
    ids = np.empty(runs.shape, np.uint16)
    shown, remap = np.empty(m + 1, np.uint8), np.empty(m + 1, np.uint16)
    _lib.sok_paint(_ptr(runs.runs), _ptr(runs.offsets), m, *runs.shape, _ptr(order), _ptr(ids), _ptr(shown),
                   _ptr(remap))
    return ids, shown[:m].view(bool)


def vote_counts(labels: np.ndarray, runs: MaskRuns, num_classes: int, index: np.ndarray) -> np.ndarray:
    """(len(index), K) int64 label counts of each run-encoded mask ``index[r]``."""
    index = _check_runs(runs, index, "mask indices")
    h, w = runs.shape
    labels = np.ascontiguousarray(labels, np.int64)
    if labels.shape != (h, w):
        raise ValueError(f"labels {labels.shape} do not match the masks' {(h, w)}")
    k1 = num_classes + 1
    counts, runend = np.empty((len(index), k1), np.int64), np.empty((h, w), np.int32)
    if _lib.sok_vote(_ptr(runs.runs), _ptr(runs.offsets), h, w, _ptr(labels), k1, _ptr(index), len(index),
                     _ptr(counts), _ptr(runend)) < 0:
        raise ValueError(f"labels outside -1..{num_classes - 1}")
    return counts[:, 1:]


def _rays(rays, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Backprojector rays, (1, W) x per column and (H, 1) y per row, as flat float32 arrays."""
    rx, ry = (np.ascontiguousarray(r, np.float32).reshape(-1) for r in rays)
    if rx.shape != (w,) or ry.shape != (h,):
        raise ValueError(f"rays {rx.shape}, {ry.shape} do not match an image of {(h, w)}")
    return rx, ry


def measure(ids: np.ndarray, n: int, depth_m: np.ndarray | None = None, rays=None):
    """Per id 1..n: areas, inclusive boxes (x0, y0, x1, y1; x0 > x1 where absent), valid-depth
    counts and float64 sums of the float32 x, y, z (depth x ray), from one raster pass."""
    ids = np.ascontiguousarray(ids)
    if ids.dtype != np.uint16 or ids.ndim != 2:
        raise ValueError(f"ids must be an (H, W) uint16 image, got {ids.dtype} {ids.shape}")
    h, w = ids.shape
    areas, counts = np.empty(n + 1, np.int64), np.empty(n + 1, np.int64)
    boxes, sums = np.empty((n + 1, 4), np.int64), np.empty((n + 1, 3), np.float64)
    rx = ry = None
    if depth_m is not None:
        depth_m, _, _ = _plane(np.ascontiguousarray(depth_m), (h, w), np.float32)
        rx, ry = _rays(rays, h, w)
    _lib.sok_measure(_ptr(ids), h, w, n, _ptr(depth_m), _ptr(rx), _ptr(ry), _ptr(areas), _ptr(boxes),
                     _ptr(counts), _ptr(sums))
    return areas[1:], boxes[1:], counts[1:], sums[1:]


def _plane(a: np.ndarray | None, shape: tuple, dtype, channels: int = 0):
    """An input image as (array, row stride, column stride) in elements; channels contiguous."""
    if a is None:
        return None, 0, 0
    want = shape + ((channels,) if channels else ())
    if a.dtype != dtype or a.shape != want:
        raise ValueError(f"image {a.dtype} {a.shape}: want {np.dtype(dtype)} {want}")
    if (channels and a.strides[2] != a.itemsize) or any(s % a.itemsize or s < 0 for s in a.strides[:2]):
        a = np.ascontiguousarray(a)
    return a, a.strides[0] // a.itemsize, a.strides[1] // a.itemsize


def cloud(out: np.ndarray, depth_m: np.ndarray, rays, rgb: np.ndarray, label: np.ndarray | None,
          instance: np.ndarray | None) -> np.ndarray:
    """Writes the (H, W) 24-byte point records into ``out`` (contiguous): x, y, z = depth x ray,
    rgb 0x00RRGGBB, label, instance. Inputs may be strided views (decimation)."""
    h, w = depth_m.shape
    if out.shape != (h, w) or out.dtype.itemsize != 24 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a contiguous ({h}, {w}) array of 24-byte records")
    d, drs, dcs = _plane(depth_m, (h, w), np.float32)
    c, crs, ccs = _plane(rgb, (h, w), np.uint8, 3)
    lab, lrs, lcs = _plane(label, (h, w), np.uint16)
    ins, irs, ics = _plane(instance, (h, w), np.uint16)
    rx, ry = _rays(rays, h, w)
    _lib.sok_cloud(h, w, _ptr(d), drs, dcs, _ptr(rx), _ptr(ry), _ptr(c), crs, ccs, _ptr(lab), lrs, lcs,
                   _ptr(ins), irs, ics, _ptr(out))
    return out
