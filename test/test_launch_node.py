"""launch_testing: the node started by launch with profile:=tiny answers a real frame.

Runs under `colcon test` on a ROS 2 install (CMakeLists.txt add_launch_test). Without
launch_testing (pip/venv setup) pytest skips it: the same scenario runs in test_node.py, which
starts the node as a process and talks to it over DDS.
"""
import os
import sys
import tempfile
import unittest

import pytest

launch_testing = pytest.importorskip(
    "launch_testing", reason="launch_testing is not installed (ROS 2 install only; test_node.py covers this here)")
import launch_ros.actions  # noqa: E402

import launch  # noqa: E402

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
sys.path.insert(0, os.path.dirname(__file__))


@pytest.mark.launch_test
def generate_test_description():
    node = launch_ros.actions.Node(package="sam_ovseg_ros", executable="sam_ovseg_node", name="sam_ovseg",
                                   namespace="lt", output="screen",
                                   parameters=[{"profile": "tiny", "device": "cpu", "sync.slop": 0.0,
                                                "map.save_dir": tempfile.mkdtemp(prefix="sam_ovseg_lt_")}])
    return launch.LaunchDescription([node, launch_testing.actions.ReadyToTest()]), {"node": node}


class TestFrame(unittest.TestCase):
    def test_outputs_of_a_scannet_frame(self):
        import rclpy
        from rosharness import Harness, img
        from scannet import load

        rclpy.init()
        h = Harness("lt")
        try:
            h.wait_connected(120)
            rgb, d, k = load("1660")
            h.publish(rgb, d, k, 7_000_000_000)
            out = h.wait_stamp(7_000_000_000, timeout=120)
            self.assertEqual(img(out["instances"]).shape, (480, 640))
            self.assertEqual((out["points"].height, out["points"].width), (480, 640))
            self.assertGreaterEqual(len(out["segments"].segments), 1)
        finally:
            h.close()
            rclpy.shutdown()


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_exit_code(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
