"""sam_ovseg_ros: SAM instances labelled by OVSeg on RGB-D frames, for ROS 2.

The ROS-free core (depth rendering, SAM, OVSeg, fusion, point cloud) lives in plain modules;
``node`` is the thin rclpy layer. Generated message classes (``sam_ovseg_ros.msg``) may be
installed in a different directory than this checkout (pip/venv path), so the package path is
extended to every ``sam_ovseg_ros`` directory on ``sys.path``.
"""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"
