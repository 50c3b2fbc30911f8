"""Offline views of the node's outputs (no RViz needed): PLY export and an RViz-like cloud render."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sam_ovseg_ros.core import cloud
from sam_ovseg_ros.core.cloud import unpack_rgb
from sam_ovseg_ros.core.overlay import colors_of


def write_ply(path: Path, points: np.ndarray) -> int:
    """Binary PLY of the valid points: x y z, red green blue, label, instance. Returns the point count."""
    pts = points.reshape(-1)
    pts = pts[np.isfinite(pts["z"])]
    rgb = unpack_rgb(pts["rgb"])
    rec = np.empty(len(pts), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"),
                                    ("blue", "u1"), ("label", "<u4"), ("instance", "<u4")])
    for f in ("x", "y", "z", "label", "instance"):
        rec[f] = pts[f]
    rec["red"], rec["green"], rec["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    return cloud.write_ply(path, rec, "sam_ovseg_ros semantic cloud (camera optical frame)")


def _orbit_camera(p: np.ndarray, elevation_deg: float, azimuth_deg: float, distance_scale: float):
    """(eye, right, down, forward) of a virtual camera orbiting the points' centre, looking at it."""
    center = np.median(p, axis=0)
    radius = float(np.percentile(np.linalg.norm(p - center, axis=1), 95)) or 1.0
    el, az = np.radians(elevation_deg), np.radians(azimuth_deg)
    # optical frame: x right, y down, z forward; orbit around the cloud centre, looking at it
    eye = center + distance_scale * radius * np.array([np.sin(az) * np.cos(el), -np.sin(el), -np.cos(az) * np.cos(el)])
    fwd = center - eye
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, [0.0, -1.0, 0.0])
    right /= np.linalg.norm(right)
    return eye, right, np.cross(fwd, right), fwd


def project(points: np.ndarray, query: np.ndarray, size=(640, 480), elevation_deg=35.0, azimuth_deg=-25.0,
            distance_scale=1.6) -> tuple[int, int] | None:
    """Pixel of ``query[0]`` in the orbit view of ``points`` (None when behind the virtual camera)."""
    p = points[np.isfinite(points).all(axis=1)].astype(np.float64)
    if len(p) == 0:
        return None
    eye, right, down, fwd = _orbit_camera(p, elevation_deg, azimuth_deg, distance_scale)
    rel = query[0] - eye
    z = rel @ fwd
    if z <= 1e-3:
        return None
    return int(0.9 * size[0] * (rel @ right) / z + size[0] / 2), int(0.9 * size[0] * (rel @ down) / z + size[1] / 2)


def orbit_view(points: np.ndarray, colors: np.ndarray, size=(640, 480), elevation_deg=35.0,
               azimuth_deg=-25.0, distance_scale=1.6, splat: int = 2) -> np.ndarray:
    """Render points (N, 3) in the camera optical frame from a virtual camera above and beside it,
    like RViz's orbit view: a z-buffered splat, near points win, background dark grey."""
    w, h = size
    img = np.full((h, w, 3), 48, np.uint8)
    ok = np.isfinite(points).all(axis=1)
    p, c = points[ok].astype(np.float64), colors[ok]
    if len(p) == 0:
        return img
    eye, right, down, fwd = _orbit_camera(p, elevation_deg, azimuth_deg, distance_scale)
    rel = p - eye
    x, y, z = rel @ right, rel @ down, rel @ fwd
    f = 0.9 * w
    front = z > 1e-3
    u = (f * x[front] / z[front] + w / 2).astype(np.int64)
    v = (f * y[front] / z[front] + h / 2).astype(np.int64)
    zz, cc = z[front], c[front]
    inside = (u >= 0) & (u < w - splat + 1) & (v >= 0) & (v < h - splat + 1)
    u, v, zz, cc = u[inside], v[inside], zz[inside], cc[inside]
    order = np.argsort(-zz)  # far first; nearer points overwrite
    for du in range(splat):  # square splats fill the gaps between points
        for dv in range(splat):
            img[v[order] + dv, u[order] + du] = cc[order]
    return img


def cloud_views(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(colour view, label view) of an organized cloud."""
    flat = points.reshape(-1)
    xyz = np.stack([flat["x"], flat["y"], flat["z"]], axis=1)
    rgb = unpack_rgb(flat["rgb"])
    labels = colors_of(flat["label"]).astype(np.uint8)
    labels[flat["label"] == 0] = 90  # unlabelled points grey
    return orbit_view(xyz, rgb), orbit_view(xyz, labels)


def caption(img: np.ndarray, text: str) -> np.ndarray:
    import cv2

    out = img.copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 26), (0, 0, 0), cv2.FILLED)
    cv2.putText(out, text, (8, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return out
