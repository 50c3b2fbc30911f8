"""Bag helpers on the ``rosbags`` package (no ROS CLI needed): type store, message classes, ROS 1 -> ROS 2.

rosbag2 files carry CDR bytes that are published as they are. ROS 1 bags carry ROS 1 bytes:
they are deserialized and copied field by field into the ROS 2 message class (fields ROS 2
dropped, like ``Header.seq``, are skipped; ROS 1's upper-case ``CameraInfo.D/K/R/P`` map to
ROS 2's lower-case names).
"""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np


def msg_dirs() -> list[Path]:
    dirs = [Path(__file__).resolve().parents[2] / "msg"]
    try:
        from ament_index_python.packages import get_package_share_directory

        dirs.append(Path(get_package_share_directory("sam_ovseg_ros")) / "msg")
    except Exception:  # no ament index entry (plain checkout)
        pass
    return dirs


def typestore():
    """ROS 2 Kilted message definitions plus this package's own (to write a readable bag of ~/segments)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    for d in msg_dirs():
        files = sorted(d.glob("*.msg"))
        if files:
            types = {}
            for f in files:
                types.update(get_types_from_msg(f.read_text(), f"sam_ovseg_ros/msg/{f.stem}"))
            ts.register(types)
            break
    return ts


def message_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> the rclpy class, or None when that package is not installed."""
    pkg, _, name = msgtype.replace("/msg/", "/").partition("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError):
        return None


def to_ros2(obj, cls):
    """A ROS 2 message of class ``cls`` with the values of a rosbags-deserialised (ROS 1) object."""
    msg = cls()
    for name, ftype in cls.get_fields_and_field_types().items():
        val = getattr(obj, name, None)
        if val is None:
            val = getattr(obj, name.upper(), None)
        if val is None:
            continue
        cur = getattr(msg, name)
        if hasattr(cur, "get_fields_and_field_types"):
            setattr(msg, name, to_ros2(val, type(cur)))
        elif ftype.startswith("sequence<") and "/" in ftype:
            inner = message_class(ftype[len("sequence<"):].rstrip(">").split(",")[0].replace("/", "/msg/", 1))
            setattr(msg, name, [to_ros2(v, inner) for v in val])
        elif isinstance(val, np.ndarray):
            setattr(msg, name, val.tobytes() if val.dtype == np.uint8 and "uint8" in ftype else val.tolist())
        else:
            setattr(msg, name, val)
    return msg
