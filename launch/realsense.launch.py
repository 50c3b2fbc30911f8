"""RealSense camera (aligned depth) -> sam_ovseg_node [-> RViz].

    ros2 launch sam_ovseg_ros realsense.launch.py [rviz:=true] [classes:="chair, table"] [device:=cuda]
"""
import os
import sys

from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

sys.path.insert(0, os.path.dirname(__file__))
from common import declare_node_args, image_remaps, node_overrides  # noqa: E402


def camera_topic(context, suffix: str) -> str:
    ns = LaunchConfiguration("camera_namespace").perform(context)
    name = LaunchConfiguration("camera_name").perform(context)
    return "/" + "/".join(p for p in (ns, name) if p) + "/" + suffix


def nodes(context):
    params = PathJoinSubstitution([FindPackageShare("sam_ovseg_ros"), "config", "sam_ovseg.yaml"])
    node = Node(
        package="sam_ovseg_ros", executable="sam_ovseg_node", name="sam_ovseg",
        namespace=LaunchConfiguration("namespace"), output="screen",
        parameters=[params, node_overrides(context)],
        remappings=image_remaps(context, [
            ("color/image", camera_topic(context, "color/image_raw")),
            ("depth/image", camera_topic(context, "aligned_depth_to_color/image_raw")),
            ("color/camera_info", camera_topic(context, "color/camera_info")),
        ]),
    )
    rviz = Node(package="rviz2", executable="rviz2", name="rviz2", output="log",
                arguments=["-d", PathJoinSubstitution([FindPackageShare("sam_ovseg_ros"), "config", "sam_ovseg.rviz"])],
                condition=IfCondition(LaunchConfiguration("rviz")))
    return [node, rviz]


def generate_launch_description():
    camera = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare("realsense2_camera"), "launch", "rs_launch.py"])),
        launch_arguments={
            "camera_namespace": LaunchConfiguration("camera_namespace"),
            "camera_name": LaunchConfiguration("camera_name"),
            "align_depth.enable": "true",
            "enable_sync": "true",
            "rgb_camera.color_profile": LaunchConfiguration("color_profile"),
            "depth_module.depth_profile": LaunchConfiguration("depth_profile"),
            "pointcloud.enable": "false",
        }.items(),
        condition=IfCondition(LaunchConfiguration("start_camera")),
    )
    return LaunchDescription([
        DeclareLaunchArgument("camera_namespace", default_value="camera"),
        DeclareLaunchArgument("camera_name", default_value="camera"),
        DeclareLaunchArgument("color_profile", default_value="640,480,15",
                              description="RealSense rgb_camera.color_profile (W,H,FPS)"),
        DeclareLaunchArgument("depth_profile", default_value="640,480,15",
                              description="RealSense depth_module.depth_profile (W,H,FPS)"),
        DeclareLaunchArgument("start_camera", default_value="true",
                              description="false: use a camera driver that is already running"),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz with config/sam_ovseg.rviz"),
        *declare_node_args(),
        camera,
        OpaqueFunction(function=nodes),
    ])
