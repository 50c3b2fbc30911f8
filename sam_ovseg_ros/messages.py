"""numpy / pipeline results -> ROS messages (the only module besides the node that imports ROS types).

Buffers go into the message constructors as bytes: rclpy's per-element checks on ``data``
assignment are what make naive PointCloud2 building take seconds.
"""
from __future__ import annotations

import array
import math

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from sensor_msgs.msg import Image, PointCloud2, PointField, RegionOfInterest
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from . import image_codec
from .cloud import POINT_DTYPE
from .frame import Segment
from .overlay import colors_of

_FIELD_TYPES = {"<f4": PointField.FLOAT32, "<u4": PointField.UINT32}


def buffer(arr: np.ndarray) -> array.array:
    """A message's uint8[] field from an array with one copy (``tobytes`` then rclpy's own conversion
    copies twice; a numpy buffer passed directly is converted element by element)."""
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))  # empty arrays too
    return out


def image(arr: np.ndarray, encoding: str, header: Header) -> Image:
    h, w, step, data = image_codec.encode(arr, encoding)
    return Image(header=header, height=h, width=w, encoding=encoding, is_bigendian=0, step=step, data=buffer(data))


def point_fields(dtype: np.dtype = POINT_DTYPE) -> list[PointField]:
    return [PointField(name=name, offset=dtype.fields[name][1], datatype=_FIELD_TYPES[dtype.fields[name][0].str],
                       count=1) for name in dtype.names]


def point_cloud(points: np.ndarray, header: Header) -> PointCloud2:
    """(H, W) or (1, N) POINT_DTYPE array -> PointCloud2 (organized when H > 1)."""
    h, w = points.shape
    return PointCloud2(header=header, height=h, width=w, fields=point_fields(points.dtype), is_bigendian=False,
                       point_step=points.dtype.itemsize, row_step=points.dtype.itemsize * w,
                       data=buffer(points), is_dense=False)


def segment_array(segments: list[Segment], header: Header):
    from .msg import Segment as SegmentMsg, SegmentArray

    out = []
    for s in segments:
        x, y, w, h = s.bbox
        out.append(SegmentMsg(
            id=s.id, track_id=s.track_id, class_id=s.class_id, class_name=s.class_name, score=float(s.score),
            class_score=float(s.class_score), area=s.area,
            bbox=RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h, do_rectify=False),
            centroid=Point(x=s.centroid[0], y=s.centroid[1], z=s.centroid[2]), valid_points=s.valid_points))
    return SegmentArray(header=header, segments=out)


def vocabulary(class_names: list[str], header: Header):
    from .msg import Vocabulary

    return Vocabulary(header=header, class_names=list(class_names))


def markers(segments: list[Segment], header: Header, lifetime_s: float, text_size: float, ns: str) -> MarkerArray:
    """A DELETEALL, then one camera-facing text per labelled segment with a finite centroid."""
    life = Duration(sec=int(lifetime_s), nanosec=int((lifetime_s % 1) * 1e9))
    arr = [Marker(header=header, ns=ns, action=Marker.DELETEALL)]
    for s in segments:
        if not all(math.isfinite(c) for c in s.centroid):
            continue
        r, g, b = (int(v) for v in colors_of(np.array([s.key]))[0])
        m = Marker(header=header, ns=ns, id=s.key, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
                   text=s.class_name or f"#{s.id}", lifetime=life,
                   color=ColorRGBA(r=max(r, 110) / 255.0, g=max(g, 110) / 255.0, b=max(b, 110) / 255.0, a=1.0))
        m.pose.position = Point(x=s.centroid[0], y=s.centroid[1], z=s.centroid[2])
        m.pose.orientation.w = 1.0
        m.scale.z = text_size
        arr.append(m)
    return MarkerArray(markers=arr)


# ------------------------------------------------------------------ the semantic map
MAP_POINT_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4"), ("label", "<u4"),
                            ("object", "<u4")])


def map_points(snap, header: Header) -> PointCloud2:
    """Voxel centres with last colour, class + 1 (current vocabulary) and object id; one row, no NaN."""
    pts = np.empty((1, len(snap.xyz)), MAP_POINT_DTYPE)
    for i, a in enumerate("xyz"):
        pts[a][0] = snap.xyz[:, i]
    pts["rgb"][0] = snap.rgb.view(np.float32)
    pts["label"][0], pts["object"][0] = snap.label, snap.object
    msg = point_cloud(pts, header)
    msg.is_dense = True
    return msg


def map_objects(snap, header: Header):
    from .msg import Object, ObjectArray

    names = snap.class_names
    return ObjectArray(header=header, objects=[Object(
        id=o.id, class_id=names.index(o.class_name) + 1 if o.class_name in names else 0, class_name=o.class_name,
        class_confidence=float(o.confidence), views=o.views, voxels=o.voxels,
        centroid=Point(x=float(o.centroid[0]), y=float(o.centroid[1]), z=float(o.centroid[2])),
        bbox_min=Point(x=float(o.bbox_min[0]), y=float(o.bbox_min[1]), z=float(o.bbox_min[2])),
        bbox_max=Point(x=float(o.bbox_max[0]), y=float(o.bbox_max[1]), z=float(o.bbox_max[2])))
        for o in snap.objects])


def map_markers(snap, header: Header, ns: str, text_size: float) -> MarkerArray:
    """A DELETEALL, then per object a translucent box over its extent and its class name above it."""
    arr = [Marker(header=header, ns=ns, action=Marker.DELETEALL)]
    for o in snap.objects:
        r, g, b = (int(v) / 255.0 for v in colors_of(np.array([o.id]))[0])
        lo, hi = o.bbox_min, o.bbox_max
        box = Marker(header=header, ns=ns + "/boxes", id=o.id, type=Marker.CUBE, action=Marker.ADD,
                     color=ColorRGBA(r=r, g=g, b=b, a=0.35))
        box.pose.position = Point(x=float(lo[0] + hi[0]) / 2, y=float(lo[1] + hi[1]) / 2, z=float(lo[2] + hi[2]) / 2)
        box.pose.orientation.w = 1.0
        box.scale.x, box.scale.y, box.scale.z = (float(h - low) for h, low in zip(hi, lo))
        text = Marker(header=header, ns=ns + "/names", id=o.id, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
                      text=f"{o.class_name or '?'} #{o.id}", color=ColorRGBA(r=max(r, 0.45), g=max(g, 0.45),
                                                                            b=max(b, 0.45), a=1.0))
        text.pose.position = Point(x=float(o.centroid[0]), y=float(o.centroid[1]), z=float(hi[2]) + text_size)
        text.pose.orientation.w = 1.0
        text.scale.z = text_size
        arr += [box, text]
    return MarkerArray(markers=arr)
