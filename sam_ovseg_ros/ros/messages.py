"""numpy / pipeline results -> ROS messages (the only module besides the node that imports ROS types).

A buffer reaches its message as an ``array.array('B')`` the message keeps: made in place for the cloud
(``message_array``), else by one copy. Passing ``data`` to a message constructor copies it again, and a
numpy array is converted element by element (what makes naive PointCloud2 building take seconds).
Per-instance messages (segments, text markers) are refilled from a pool, not constructed.
"""
from __future__ import annotations

import array
import math

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from sensor_msgs.msg import Image, PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from sam_ovseg_ros.core.cloud import POINT_DTYPE
from sam_ovseg_ros.core.frame_types import Segment
from sam_ovseg_ros.core.overlay import colors_of
from sam_ovseg_ros.ros import image_codec

_FIELD_TYPES = {"<f4": PointField.FLOAT32, "<u4": PointField.UINT32}


def message_array(shape: tuple, dtype) -> np.ndarray:
    """A zeroed array whose memory is an ``array.array('B')``: ``buffer`` hands that to a message as it is,
    so an array made here (the cloud) reaches the message with no copy."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape)) * dtype.itemsize
    return np.frombuffer(array.array("B", b"\0") * n, dtype).reshape(shape)  # a repeat is a memset


def _owner(arr: np.ndarray):
    base = arr
    while isinstance(base, np.ndarray):
        base = base.base
    return base.obj if isinstance(base, memoryview) else base


def buffer(arr: np.ndarray) -> array.array:
    """A message's uint8[] field from an array: the array's own memory when ``message_array`` made it
    (whole and contiguous), else one copy (``tobytes`` then rclpy's own conversion copies twice; a numpy
    buffer passed directly is converted element by element)."""
    own = _owner(arr)
    if isinstance(own, array.array) and own.typecode == "B" and len(own) == arr.nbytes and arr.flags.c_contiguous:
        return own
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))  # empty arrays too
    return out


# Messages built with field checks keep an assigned array.array('B') as it is (without checks the setter
# copies it); distributions whose messages predate the switch always check.
_KEEP = {"check_fields": True} if "_check_fields" in Image.__slots__ else {}


def image(arr: np.ndarray, encoding: str, header: Header) -> Image:
    h, w, step, data = image_codec.encode(arr, encoding)
    msg = Image(header=header, height=h, width=w, encoding=encoding, is_bigendian=0, step=step, **_KEEP)
    msg.data = buffer(data)
    return msg


def point_fields(dtype: np.dtype = POINT_DTYPE) -> list[PointField]:
    return [PointField(name=name, offset=dtype.fields[name][1], datatype=_FIELD_TYPES[dtype.fields[name][0].str],
                       count=1) for name in dtype.names]


def point_cloud(points: np.ndarray, header: Header, dense: bool = False) -> PointCloud2:
    """(H, W) or (1, N) POINT_DTYPE array -> PointCloud2 (organized when H > 1); ``dense``: the caller
    knows every point is valid (is_dense)."""
    h, w = points.shape
    msg = PointCloud2(header=header, height=h, width=w, fields=point_fields(points.dtype), is_bigendian=False,
                      point_step=points.dtype.itemsize, row_step=points.dtype.itemsize * w, is_dense=dense, **_KEEP)
    msg.data = buffer(points)
    return msg


def vocabulary(class_names: list[str], header: Header):
    from sam_ovseg_ros.msg import Vocabulary

    return Vocabulary(header=header, class_names=list(class_names))


class MessagePool:
    """Per-instance messages kept from frame to frame and refilled: constructing a Marker costs ~20 us (its
    nested defaults) and a Segment ~8 us, refilling the fields that change ~3 us. For one thread that
    publishes each array before it builds the next (rclpy serialises at ``publish``), as the node's
    publisher thread does."""

    def __init__(self) -> None:
        self._markers: list[Marker] = []
        self._segments: list = []

    @staticmethod
    def _item(pool: list, i: int, make):
        if i == len(pool):
            pool.append(make())
        return pool[i]

    def segment_array(self, segments: list[Segment], header: Header):
        from sam_ovseg_ros.msg import Segment as SegmentMsg
        from sam_ovseg_ros.msg import SegmentArray

        out = []
        for i, s in enumerate(segments):
            m = self._item(self._segments, i, SegmentMsg)
            m.id, m.track_id, m.class_id, m.class_name = s.id, s.track_id, s.class_id, s.class_name
            m.score, m.class_score = float(s.score), float(s.class_score)
            m.area, m.valid_points = s.area, s.valid_points
            box = m.bbox
            box.x_offset, box.y_offset, box.width, box.height = s.bbox
            c = m.centroid
            c.x, c.y, c.z = s.centroid
            out.append(m)
        return SegmentArray(header=header, segments=out)

    def markers(self, segments: list[Segment], header: Header, lifetime_s: float, text_size: float,
                ns: str) -> MarkerArray:
        """A DELETEALL, then one camera-facing text per labelled segment with a finite centroid."""
        life = Duration(sec=int(lifetime_s), nanosec=int((lifetime_s % 1) * 1e9))
        arr = [Marker(header=header, ns=ns, action=Marker.DELETEALL)]
        keys = [s.key for s in segments]
        colors = (np.maximum(colors_of(np.array(keys, np.int64)), 110) / 255.0).tolist() if keys else []
        for s, (r, g, b) in zip(segments, colors):
            if not all(math.isfinite(c) for c in s.centroid):
                continue
            m = self._item(self._markers, len(arr) - 1, _text_marker)
            m.header, m.ns, m.id, m.lifetime = header, ns, s.key, life
            m.text = s.class_name or f"#{s.id}"
            m.color.r, m.color.g, m.color.b = r, g, b
            pos = m.pose.position
            pos.x, pos.y, pos.z = s.centroid
            m.scale.z = text_size
            arr.append(m)
        return MarkerArray(markers=arr)


def _text_marker() -> Marker:
    m = Marker(type=Marker.TEXT_VIEW_FACING, action=Marker.ADD)
    m.pose.orientation.w = 1.0
    m.color.a = 1.0
    return m


def segment_array(segments: list[Segment], header: Header):
    """The ~/segments message of one frame in new messages (MessagePool refills the node's)."""
    return MessagePool().segment_array(segments, header)


def markers(segments: list[Segment], header: Header, lifetime_s: float, text_size: float, ns: str) -> MarkerArray:
    """The text markers of one frame in new messages (MessagePool refills the node's)."""
    return MessagePool().markers(segments, header, lifetime_s, text_size, ns)


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
    return point_cloud(pts, header, dense=True)


def point(v) -> Point:
    """A geometry_msgs/Point of a 3-vector."""
    return Point(x=float(v[0]), y=float(v[1]), z=float(v[2]))


def map_objects(snap, header: Header):
    from sam_ovseg_ros.msg import Object, ObjectArray

    names = snap.class_names
    return ObjectArray(header=header, objects=[Object(
        id=o.id, class_id=names.index(o.class_name) + 1 if o.class_name in names else 0, class_name=o.class_name,
        class_confidence=float(o.confidence), views=o.views, voxels=o.voxels,
        centroid=point(o.centroid), bbox_min=point(o.bbox_min), bbox_max=point(o.bbox_max))
        for o in snap.objects])


def _box_and_label(o, header: Header, ns: str, mid: int, color: ColorRGBA, pad: float, label_ns: str, text: str,
                   text_color: ColorRGBA, text_size: float, lift: float) -> list[Marker]:
    """Map object ``o``: a box over its extent grown by ``pad`` (``ns``/boxes) and ``text`` ``lift`` above
    its top (``ns``/``label_ns``), both with marker id ``mid``."""
    lo, hi = o.bbox_min, o.bbox_max
    box = Marker(header=header, ns=ns + "/boxes", id=mid, type=Marker.CUBE, action=Marker.ADD, color=color)
    box.pose.position = Point(x=float(lo[0] + hi[0]) / 2, y=float(lo[1] + hi[1]) / 2, z=float(lo[2] + hi[2]) / 2)
    box.pose.orientation.w = 1.0
    box.scale.x, box.scale.y, box.scale.z = (float(h - low) + pad for h, low in zip(hi, lo))
    label = Marker(header=header, ns=f"{ns}/{label_ns}", id=mid, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
                   text=text, color=text_color)
    label.pose.position = Point(x=float(o.centroid[0]), y=float(o.centroid[1]), z=float(hi[2]) + lift)
    label.pose.orientation.w = 1.0
    label.scale.z = text_size
    return [box, label]


def map_markers(snap, header: Header, ns: str, text_size: float) -> MarkerArray:
    """A DELETEALL, then per object a translucent box over its extent and its class name above it."""
    arr = [Marker(header=header, ns=ns, action=Marker.DELETEALL)]
    for o in snap.objects:
        r, g, b = (int(v) / 255.0 for v in colors_of(np.array([o.id]))[0])
        arr += _box_and_label(o, header, ns, o.id, ColorRGBA(r=r, g=g, b=b, a=0.35), 0.0, "names",
                              f"{o.class_name or '?'} #{o.id}",
                              ColorRGBA(r=max(r, 0.45), g=max(g, 0.45), b=max(b, 0.45), a=1.0), text_size, text_size)
    return MarkerArray(markers=arr)


def query_markers(hits, scores, text: str, header: Header, ns: str, text_size: float) -> MarkerArray:
    """A DELETEALL, then per hit of a map query a bright box over the object and "rank. text score" above it."""
    arr = [Marker(header=header, ns=ns, action=Marker.DELETEALL)]
    for rank, (o, s) in enumerate(zip(hits, scores)):
        shade = 1.0 - 0.6 * rank / max(len(hits), 1)  # the best hit brightest
        arr += _box_and_label(o, header, ns, rank, ColorRGBA(r=1.0, g=0.85 * shade, b=0.0, a=0.6), 0.02, "labels",
                              f"{rank + 1}. {text[:40]} {s:.2f} (#{o.id})", ColorRGBA(r=1.0, g=1.0, b=0.3, a=1.0),
                              text_size, 2 * text_size)
    return MarkerArray(markers=arr)
