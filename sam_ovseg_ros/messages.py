"""numpy / pipeline results -> ROS messages (the only module besides the node that imports ROS types).

Buffers go into the message constructors as bytes: rclpy's per-element checks on ``data``
assignment are what make naive PointCloud2 building take seconds.
"""
from __future__ import annotations

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


def image(arr: np.ndarray, encoding: str, header: Header) -> Image:
    h, w, step, data = image_codec.encode(arr, encoding)
    return Image(header=header, height=h, width=w, encoding=encoding, is_bigendian=0, step=step, data=data)


def point_fields(dtype: np.dtype = POINT_DTYPE) -> list[PointField]:
    return [PointField(name=name, offset=dtype.fields[name][1], datatype=_FIELD_TYPES[dtype.fields[name][0].str],
                       count=1) for name in dtype.names]


def point_cloud(points: np.ndarray, header: Header) -> PointCloud2:
    """(H, W) or (1, N) POINT_DTYPE array -> PointCloud2 (organized when H > 1)."""
    h, w = points.shape
    return PointCloud2(header=header, height=h, width=w, fields=point_fields(points.dtype), is_bigendian=False,
                       point_step=points.dtype.itemsize, row_step=points.dtype.itemsize * w,
                       data=np.ascontiguousarray(points).tobytes(), is_dense=False)


def segment_array(segments: list[Segment], header: Header):
    from .msg import Segment as SegmentMsg, SegmentArray

    out = []
    for s in segments:
        x, y, w, h = s.bbox
        out.append(SegmentMsg(
            id=s.id, class_id=s.class_id, class_name=s.class_name, score=float(s.score),
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
        r, g, b = (int(v) for v in colors_of(np.array([s.id]))[0])
        m = Marker(header=header, ns=ns, id=s.id, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
                   text=s.class_name or f"#{s.id}", lifetime=life,
                   color=ColorRGBA(r=max(r, 110) / 255.0, g=max(g, 110) / 255.0, b=max(b, 110) / 255.0, a=1.0))
        m.pose.position = Point(x=s.centroid[0], y=s.centroid[1], z=s.centroid[2])
        m.pose.orientation.w = 1.0
        m.scale.z = text_size
        arr.append(m)
    return MarkerArray(markers=arr)
