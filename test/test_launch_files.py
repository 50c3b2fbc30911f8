"""The launch files under the real launch library, with the package installed by colcon (a workspace built
from this checkout, sourced as users source it). Skipped where launch / launch_ros are not installed (the
pip path: they are not on PyPI); run on a ROS 2 install, or with launch from its sources on PYTHONPATH.

- rosbag.launch.py plays the real D435 rosbag2 as soon as the node subscribes its inputs, renames a bag
  topic with remap:= (its extrinsic's ROS 1 name is not a valid ROS 2 name) and the node's outputs arrive;
- realsense.launch.py start_camera:=false takes frames on the driver's topic names;
- test_launch_node.py runs under launch_testing, as ``colcon test`` runs it.
"""
import signal
import time

import numpy as np
import pytest
from rosharness import Harness, check_frame, cloud_array, d435_data, d435_registered_z, img, stamp_of
from scannet import load
from workspace import PACKAGE, REPO

pytest.importorskip("launch_ros", reason="launch / launch_ros are not installed (ROS 2 install only; not on PyPI)")
pytestmark = [pytest.mark.launch, pytest.mark.dds, pytest.mark.workspace]

RUNNER = REPO / "test" / "launch_runner.py"


class Launch:
    """``ros2 launch sam_ovseg_ros FILE args`` in the sourced workspace; stopped with SIGINT as Ctrl-C does."""

    def __init__(self, ws, name: str, args: dict, log_path) -> None:
        self.log_path = log_path
        launch_file = ws.install / PACKAGE / "share" / PACKAGE / "launch" / name
        argv = " ".join(f"'{k}:={v}'" for k, v in args.items())
        self._log = open(log_path, "w")
        self.proc = ws.popen(f"python {RUNNER} {launch_file} {argv}", stdout=self._log, stderr=self._log)

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def test_rosbag_launch_plays_the_d435_recording(rclpy_context, ros_workspace, data, tmp_path):
    ns = "t_launch_bag"
    dev = "/device_0/sensor_{}/{}_0/"
    color, dmsg, cinfo, dinfo, tf = d435_data(data)
    harness = Harness(ns)  # records /t_launch_bag/sam_ovseg/*
    launch = Launch(ros_workspace, "rosbag.launch.py", {
        "bag": data / "d435" / "single_depth_color_640x480_ros2", "namespace": ns, "profile": "tiny",
        "device": "cpu", "weights_dir": tmp_path / "w", "map_save_dir": tmp_path / "map", "slop": 0.15,
        "color_topic": dev.format(1, "Color") + "image/data", "depth_topic": dev.format(0, "Depth") + "image/data",
        "color_info_topic": dev.format(1, "Color") + "info/camera_info",
        "depth_info_topic": dev.format(0, "Depth") + "info/camera_info",
        # /device_0/sensor_1/Color_0/tf/0 is not a valid ROS 2 name: renamed for the player, then the node's input
        "remap": f"{dev.format(1, 'Color')}tf/0:=/{ns}/d435_extrinsic", "extrinsic_topic": f"/{ns}/d435_extrinsic",
    }, tmp_path / "launch.log")
    try:
        t0 = time.monotonic()
        points = harness.wait_for("points", timeout=240)
        waited = time.monotonic() - t0
        segments = harness.wait_for("segments", timeout=30)
    finally:
        code = launch.stop()
        harness.close()
    log = launch.log()
    assert code == 0, log[-3000:]
    assert "playing" in log and "no subscriber" not in log, log[-3000:]  # started on the node's subscription
    assert waited < 200, waited  # not after the player's 600 s timeout
    color_stamp = stamp_of(color)
    assert stamp_of(points) == stamp_of(segments) == color_stamp and points.header.frame_id == "0"
    assert np.array_equal(cloud_array(points)["z"], d435_registered_z(dmsg, cinfo, dinfo, tf), equal_nan=True)
    assert "identity extrinsic" not in log  # the renamed extrinsic reached the node


def test_realsense_launch_uses_a_running_driver(rclpy_context, ros_workspace, tmp_path):
    ns, cam = "t_launch_rs", "/t_launch_rs_cam/cam/"
    harness = Harness(ns, inputs={"color/image": cam + "color/image_raw",
                                  "depth/image": cam + "aligned_depth_to_color/image_raw",
                                  "color/camera_info": cam + "color/camera_info"})
    launch = Launch(ros_workspace, "realsense.launch.py", {
        "start_camera": "false", "camera_namespace": "t_launch_rs_cam", "camera_name": "cam", "namespace": ns,
        "profile": "tiny", "device": "cpu", "weights_dir": tmp_path / "w", "map_save_dir": tmp_path / "map",
        "classes": "wall, floor, chair",
    }, tmp_path / "launch.log")
    try:
        harness.wait_connected(240)
        rgb, d, k = load("1660")
        stamp = 1_750_000_000_000_000_000
        harness.publish(rgb, d, k, stamp)
        out = harness.wait_stamp(stamp, timeout=120)
    finally:
        code = launch.stop()
        harness.close()
    assert code == 0, launch.log()[-3000:]
    check_frame(out, rgb, d, k, stamp, ["wall", "floor", "chair"])
    assert img(out["instances"]).shape == (480, 640)


def test_launch_testing_test_runs(ros_workspace, tmp_path):
    """test_launch_node.py as ``colcon test`` runs it (CMakeLists.txt add_launch_test)."""
    done = ros_workspace.run(f"python -m launch_testing.launch_test {REPO / 'test' / 'test_launch_node.py'}",
                             timeout=400, cwd=REPO / "test")
    assert done.returncode == 0, done.stdout[-4000:]
    assert "Ran 1 test" in done.stdout and "OK" in done.stdout
