"""Register a depth image to the color camera (for cameras without ``align_depth``).

Each valid depth pixel is back-projected with the depth intrinsics, moved into the color frame
with the depth->color extrinsic (p_c = R p_d + t), and projected with the color intrinsics. Like
librealsense's align, a pixel's footprint (its corners projected at its depth) is filled, so
upsampling to a higher-resolution color camera leaves no pinholes; where several depth pixels
land on one color pixel the nearest wins (z-buffer).
Pixel centres are at integer coordinates; a depth pixel's corners are at +-0.5.
"""
from __future__ import annotations

import numpy as np

from sam_ovseg_ros.core.cloud import Intrinsics


def quat_to_matrix(qx: float, qy: float, qz: float, qw: float) -> np.ndarray:
    q = np.array([qw, qx, qy, qz], dtype=np.float64)
    norm = np.linalg.norm(q)
    if not np.isfinite(norm) or norm < 1e-9:
        raise ValueError("depth->color rotation quaternion is zero or not finite")
    w, x, y, z = q / norm
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def register(depth_m: np.ndarray, kd: Intrinsics, kc: Intrinsics,
             rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """(kc.height, kc.width) float32 metres in the color camera, NaN where nothing lands."""
    vs, us = np.nonzero(np.isfinite(depth_m))
    z = depth_m[vs, us].astype(np.float64)
    r = np.asarray(rotation, dtype=np.float64)
    t = np.asarray(translation, dtype=np.float64)

    def project(du: float, dv: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = (us + du - kd.cx) / kd.fx * z
        y = (vs + dv - kd.cy) / kd.fy * z
        pc = r @ np.stack([x, y, z]) + t[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = kc.fx * pc[0] / pc[2] + kc.cx
            v = kc.fy * pc[1] / pc[2] + kc.cy
        return u, v, pc[2]

    u0, v0, zc = project(-0.5, -0.5)
    u1, v1, _ = project(0.5, 0.5)
    # color pixels from round(corner0) to round(corner1), both inclusive (as librealsense's align):
    # neighbouring footprints overlap by a pixel instead of leaving pinholes between them
    c0 = np.floor(np.minimum(u0, u1) + 0.5).astype(np.int64)
    c1 = np.floor(np.maximum(u0, u1) + 0.5).astype(np.int64) + 1
    r0 = np.floor(np.minimum(v0, v1) + 0.5).astype(np.int64)
    r1 = np.floor(np.maximum(v0, v1) + 0.5).astype(np.int64) + 1
    front = (zc > 0) & np.isfinite(u0) & np.isfinite(u1) & np.isfinite(v0) & np.isfinite(v1)
    span = 1 + int(max(np.max(c1 - c0, initial=1), np.max(r1 - r0, initial=1)))
    span = min(span, 8)  # a footprint larger than 8 px is a grazing surface; cap the splat

    zbuf = np.full(kc.height * kc.width, np.inf, dtype=np.float64)
    for dy in range(span):
        for dx in range(span):
            cu, cv = c0 + dx, r0 + dy
            hit = front & (cu < c1) & (cv < r1) & (cu >= 0) & (cv >= 0) & (cu < kc.width) & (cv < kc.height)
            np.minimum.at(zbuf, cv[hit] * kc.width + cu[hit], zc[hit])
    out = zbuf.reshape(kc.height, kc.width).astype(np.float32)
    out[~np.isfinite(out)] = np.nan
    return out
