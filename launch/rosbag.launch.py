"""A recorded bag -> sam_ovseg_node (simulated time) [-> RViz].

    ros2 launch sam_ovseg_ros rosbag.launch.py bag:=/path/to/bag [rate:=0.5] [loop:=true] [rviz:=true]

Inputs default to the RealSense aligned topics; point color_topic/depth_topic/... at the bag's own
names. For unaligned depth give depth_info_topic (and extrinsic_topic, a geometry_msgs/Transform
depth->color) and the node registers depth to color. remap:="FROM:=TO ..." renames bag topics as the
player publishes them (a ROS 1 name such as /device_0/sensor_1/Color_0/tf/0 is not a valid ROS 2
name: rename it and give the new name as extrinsic_topic). player:=replay (default) is
sam_ovseg_replay, which also plays ROS 1 .bag files and starts as soon as the node subscribes its
image and camera_info inputs; player:=ros2 uses ros2 bag play.
"""
import os
import sys

from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

sys.path.insert(0, os.path.dirname(__file__))
from common import declare_node_args, image_remaps, node_overrides  # noqa: E402

INPUT_ARGS = {  # launch argument -> node input it feeds
    "color_topic": "color/image",
    "depth_topic": "depth/image",
    "color_info_topic": "color/camera_info",
    "depth_info_topic": "depth/camera_info",
    "extrinsic_topic": "depth_to_color",
}

REQUIRED_INPUTS = ("color/image", "depth/image", "color/camera_info", "color/image/compressed",
                   "depth/image/compressedDepth")


def bag_remaps(text: str) -> list[str]:
    """'FROM:=TO FROM2:=TO2' (spaces or commas between) -> ['FROM:=TO', ...]; a malformed one is an error."""
    out = [r for r in text.replace(",", " ").split() if r]
    for r in out:
        src, sep, dst = r.partition(":=")
        if not (src and sep and dst):
            raise ValueError(f"remap takes FROM:=TO pairs, got '{r}'")
    return out


def actions(context):
    qos = PathJoinSubstitution([FindPackageShare("sam_ovseg_ros"), "config", "qos_overrides.yaml"])
    params = PathJoinSubstitution([FindPackageShare("sam_ovseg_ros"), "config", "sam_ovseg.yaml"])
    remaps = image_remaps(context, [(node_input, LaunchConfiguration(arg).perform(context))
                                    for arg, node_input in INPUT_ARGS.items() if LaunchConfiguration(arg).perform(context)])
    overrides = node_overrides(context)
    overrides["use_sim_time"] = True
    overrides["sync.slop"] = float(LaunchConfiguration("slop").perform(context))
    node = Node(package="sam_ovseg_ros", executable="sam_ovseg_node", name="sam_ovseg",
                namespace=LaunchConfiguration("namespace"), output="screen",
                parameters=[params, overrides], remappings=remaps)
    bag = LaunchConfiguration("bag").perform(context)
    rate = LaunchConfiguration("rate").perform(context)
    loop = LaunchConfiguration("loop").perform(context).lower() in ("true", "1", "yes")
    renames = bag_remaps(LaunchConfiguration("remap").perform(context))
    if LaunchConfiguration("player").perform(context) == "ros2":
        player = ExecuteProcess(cmd=["ros2", "bag", "play", bag, "--clock", "--rate", rate,
                                     "--qos-profile-overrides-path", qos] + (["--loop"] if loop else [])
                                + (["--remap", *renames] if renames else []),
                                output="screen")
    else:
        # play once the node subscribes what it needs (the topics it reads, as the player publishes them);
        # the bag's other topics (metadata, IMU, ...) may have no subscriber at all
        inputs = [topic for node_input, topic in remaps if node_input in REQUIRED_INPUTS]
        player = Node(package="sam_ovseg_ros", executable="sam_ovseg_replay", name="sam_ovseg_replay",
                      output="screen",
                      # --settle: the node matches our publishers a moment after we see its subscriptions; a
                      # bag's single camera_info sent before that would be lost to its volatile readers
                      arguments=[bag, "--clock", "--rate", rate, "--wait", "600", "--wait-for", *inputs, "--settle", "2",
                                 "--qos-profile-overrides-path", qos] + (["--loop"] if loop else [])
                      + (["--remap", *renames] if renames else []))
    rviz = Node(package="rviz2", executable="rviz2", name="rviz2", output="log",
                arguments=["-d", PathJoinSubstitution([FindPackageShare("sam_ovseg_ros"), "config", "sam_ovseg.rviz"])],
                parameters=[{"use_sim_time": True}], condition=IfCondition(LaunchConfiguration("rviz")))
    return [node, player, rviz]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="rosbag2 folder/file (.db3, .mcap) or ROS 1 .bag"),
        DeclareLaunchArgument("rate", default_value="1.0"),
        DeclareLaunchArgument("loop", default_value="false"),
        DeclareLaunchArgument("player", default_value="replay", description="replay (sam_ovseg_replay) | ros2"),
        DeclareLaunchArgument("slop", default_value="0.02", description="sync.slop in s (0: exact stamps)"),
        DeclareLaunchArgument("color_topic", default_value="/camera/camera/color/image_raw"),
        DeclareLaunchArgument("depth_topic", default_value="/camera/camera/aligned_depth_to_color/image_raw"),
        DeclareLaunchArgument("color_info_topic", default_value="/camera/camera/color/camera_info"),
        DeclareLaunchArgument("depth_info_topic", default_value="", description="only for unaligned depth"),
        DeclareLaunchArgument("extrinsic_topic", default_value="", description="depth->color Transform topic"),
        DeclareLaunchArgument("remap", default_value="",
                              description='rename bag topics for the player: "FROM:=TO FROM2:=TO2"'),
        DeclareLaunchArgument("rviz", default_value="false"),
        *declare_node_args(),
        OpaqueFunction(function=actions),
    ])
