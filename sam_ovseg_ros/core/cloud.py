"""Back-projection of registered depth into an organized, labelled point cloud.

A pixel (u, v) with depth Z (metres) becomes X = (u - cx) Z / fx, Y = (v - cy) Z / fy in the
color optical frame (x right, y down, z forward). Points are a structured numpy array whose
bytes are the PointCloud2 payload: x y z float32, rgb float32 (packed 0x00RRGGBB), label and
instance uint32 (24 bytes per point). Invalid depth gives NaN xyz.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from sam_ovseg_ros.core import kernels

POINT_DTYPE = np.dtype([
    ("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4"), ("label", "<u4"), ("instance", "<u4"),
])


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of the image the depth is registered to."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_k(cls, k, width: int, height: int) -> "Intrinsics":
        k = np.asarray(k, dtype=np.float64).reshape(3, 3)
        return cls(float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]), int(width), int(height))

    def problem(self) -> str | None:
        """Why these intrinsics cannot back-project, or None."""
        vals = (self.fx, self.fy, self.cx, self.cy)
        if not all(np.isfinite(vals)):
            return f"camera_info K has non-finite entries (fx={self.fx}, fy={self.fy}, cx={self.cx}, cy={self.cy})"
        if self.fx <= 0 or self.fy <= 0:
            return f"camera_info K has fx={self.fx}, fy={self.fy}; focal lengths must be > 0"
        if self.width <= 0 or self.height <= 0:
            return f"camera_info size {self.width}x{self.height} is empty"
        return None


class Backprojector:
    """Caches the per-pixel rays of one camera; ``xyz(depth_m)`` is then two multiplies."""

    def __init__(self) -> None:
        self._key: Intrinsics | None = None
        self._rx = self._ry = None

    def rays(self, k: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
        if k != self._key:
            u = np.arange(k.width, dtype=np.float64)
            v = np.arange(k.height, dtype=np.float64)
            self._rx = ((u - k.cx) / k.fx).astype(np.float32)[None, :]
            self._ry = ((v - k.cy) / k.fy).astype(np.float32)[:, None]
            self._key = k
        return self._rx, self._ry


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) float32 whose bits are 0x00RRGGBB (PCL/RViz ``rgb`` field).
    OpenCV's BGRA order is that word's little-endian byte order; the alpha byte is then cleared."""
    words = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGRA).view(np.uint32)[..., 0]
    np.bitwise_and(words, np.uint32(0x00FFFFFF), out=words)
    return words.view(np.float32)


def unpack_rgb(field: np.ndarray) -> np.ndarray:
    bits = np.ascontiguousarray(field).view(np.uint32)
    return np.stack([(bits >> 16) & 255, (bits >> 8) & 255, bits & 255], axis=-1).astype(np.uint8)


def build_points(bp: Backprojector, depth_m: np.ndarray, rgb: np.ndarray, k: Intrinsics,
                 label: np.ndarray | None = None, instance: np.ndarray | None = None,
                 alloc=np.empty) -> np.ndarray:
    """(H, W) POINT_DTYPE array: the organized cloud of one frame, in memory from ``alloc(shape, dtype)``
    (the node passes one whose memory a message can own without a copy)."""
    h, w = depth_m.shape
    pts = alloc((h, w), POINT_DTYPE)
    rx, ry = bp.rays(k)
    if kernels.available and depth_m.dtype == np.float32 and rgb.dtype == np.uint8 and all(
            a is None or a.dtype == np.uint16 for a in (label, instance)):
        return kernels.cloud(pts, depth_m, (rx, ry), rgb, label, instance)  # one pass, strided views read as they are
    depth_m = np.ascontiguousarray(depth_m)

    def as_field(ids):  # uint32 bits in a float32 channel
        ids = np.zeros((h, w), np.uint32) if ids is None else np.ascontiguousarray(ids, np.uint32)
        return ids.view(np.float32)

    # OpenCV interleaves the six planes into the records in one pass (numpy's strided field
    # writes take 2x as long)
    _merge_into([depth_m * rx, depth_m * ry, depth_m, pack_rgb(rgb), as_field(label), as_field(instance)],
                pts.view(np.float32).reshape(h, w, 6))
    return pts


def _merge_into(planes: list[np.ndarray], out: np.ndarray) -> np.ndarray:
    """cv2.merge of float32 planes into ``out`` (H, W, len(planes)): OpenCV writes there since size and type
    match; were it ever to allocate instead, the result is copied so ``out`` is never left unwritten."""
    got = cv2.merge(planes, dst=out)
    if got.ctypes.data != out.ctypes.data:
        out[...] = got
    return out


def dense_points(pts: np.ndarray, alloc=np.empty) -> np.ndarray:
    """Only the points with valid depth, as one row (``cloud.organized: false``), in memory from
    ``alloc``; selected as opaque 24-byte records, 8x faster than selecting field by field."""
    flat = np.ascontiguousarray(pts).reshape(-1)
    keep = np.isfinite(flat["z"])
    out = alloc((1, int(np.count_nonzero(keep))), pts.dtype)
    record = f"V{pts.dtype.itemsize}"
    np.compress(keep, flat.view(record), out=out.reshape(-1).view(record))
    return out


_PLY_TYPES = {"<f4": "float", "|u1": "uchar", "<u2": "ushort", "<u4": "uint"}


def write_ply(path, records: np.ndarray, comment: str) -> int:
    """A binary little-endian PLY of a 1-D structured array, one property per field; returns the count."""
    props = "".join(f"property {_PLY_TYPES[records.dtype.fields[n][0].str]} {n}\n" for n in records.dtype.names)
    head = f"ply\nformat binary_little_endian 1.0\ncomment {comment}\nelement vertex {len(records)}\n{props}end_header\n"
    with open(path, "wb") as f:
        f.write(head.encode())
        f.write(np.ascontiguousarray(records).tobytes())
    return len(records)
