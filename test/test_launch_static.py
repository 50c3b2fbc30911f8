"""Launch files, parameter/RViz/QoS files checked statically (the launch package is not on PyPI).

Each launch file is parsed with ast: executables must exist in the package, referenced files must
exist and be installed, every remapped name must be an input the node subscribes to, every
LaunchConfiguration must be declared, and parameter overrides must be real parameters.
"""
import ast
import configparser
import re
from pathlib import Path

import pytest
import yaml

from sam_ovseg_ros.core import config
from sam_ovseg_ros.ros import topics

REPO = Path(__file__).resolve().parents[1]
LAUNCH = sorted((REPO / "launch").glob("*.launch.py"))
COMMON = REPO / "launch" / "common.py"


def tree(path):
    return ast.parse(path.read_text(), filename=str(path))


def calls(t, name):
    return [n for n in ast.walk(t) if isinstance(n, ast.Call)
            and ((isinstance(n.func, ast.Name) and n.func.id == name)
                 or (isinstance(n.func, ast.Attribute) and n.func.attr == name))]


def kwarg(call, name):
    return next((k.value for k in call.keywords if k.arg == name), None)


def const(node):
    return node.value if isinstance(node, ast.Constant) else None


def console_scripts():
    cp = configparser.ConfigParser()
    cp.read(REPO / "setup.cfg")
    return {line.split("=")[0].strip() for line in cp["options.entry_points"]["console_scripts"].split("\n") if line}


def test_there_are_launch_files():
    assert {p.name for p in LAUNCH} == {"realsense.launch.py", "rosbag.launch.py"}


@pytest.mark.parametrize("path", LAUNCH, ids=lambda p: p.name)
def test_executables_exist_in_the_package(path):
    cmake = (REPO / "CMakeLists.txt").read_text()
    nodes = [c for c in calls(tree(path), "Node") if const(kwarg(c, "package")) == "sam_ovseg_ros"]
    assert nodes
    for c in nodes:
        exe = const(kwarg(c, "executable"))
        assert exe in console_scripts(), exe
        assert (REPO / "scripts" / exe).is_file() and f"scripts/{exe}" in cmake, exe


@pytest.mark.parametrize("path", LAUNCH, ids=lambda p: p.name)
def test_referenced_package_files_exist_and_are_installed(path):
    cmake = (REPO / "CMakeLists.txt").read_text()
    installed = re.search(r"install\(DIRECTORY ([^)]*) DESTINATION share", cmake).group(1).split()
    found = 0
    for c in calls(tree(path), "PathJoinSubstitution"):
        parts = c.args[0].elts
        first = parts[0]
        if isinstance(first, ast.Call) and const(first.args[0]) == "sam_ovseg_ros":
            rel = Path(*[const(p) for p in parts[1:]])
            assert (REPO / rel).is_file(), rel
            assert rel.parts[0] in installed, rel
            found += 1
    assert found >= 2


def test_realsense_launch_uses_the_aligned_topics():
    t = tree(REPO / "launch" / "realsense.launch.py")
    inc = calls(t, "IncludeLaunchDescription")[0]
    assert "realsense2_camera" in ast.unparse(inc) and "rs_launch.py" in ast.unparse(inc)
    args = kwarg(inc, "launch_arguments")
    keys = {const(k): const(v) for k, v in zip(args.func.value.keys, args.func.value.values)}
    assert keys["align_depth.enable"] == "true"
    node = [c for c in calls(t, "Node") if const(kwarg(c, "executable")) == "sam_ovseg_node"][0]
    remapping = kwarg(node, "remappings")
    assert ast.unparse(remapping.func) == "image_remaps"  # transport:=compressed switches the image inputs
    remaps = {const(e.elts[0]): ast.unparse(e.elts[1]) for e in remapping.args[1].elts}
    assert set(remaps) <= set(topics.INPUTS) and {topics.COLOR, topics.DEPTH, topics.COLOR_INFO} <= set(remaps)
    assert "aligned_depth_to_color/image_raw" in remaps[topics.DEPTH]
    assert "color/image_raw" in remaps[topics.COLOR] and "color/camera_info" in remaps[topics.COLOR_INFO]


def test_rosbag_launch_remaps_are_node_inputs_and_plays_with_clock():
    t = tree(REPO / "launch" / "rosbag.launch.py")
    inputs = next(ast.literal_eval(n.value) for n in ast.walk(t)
                  if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "INPUT_ARGS")
    assert set(inputs.values()) == set(topics.INPUTS)
    text = ast.unparse(t)
    assert "'--clock'" in text and "use_sim_time" in text and "qos_overrides.yaml" in text
    declared = {const(c.args[0]) for c in calls(t, "DeclareLaunchArgument")}
    assert set(inputs) <= declared and {"bag", "rate", "loop"} <= declared


@pytest.mark.parametrize("path", LAUNCH, ids=lambda p: p.name)
def test_every_launch_configuration_is_declared(path):
    t = tree(path)
    common = tree(COMMON)
    declared = {const(c.args[0]) for c in calls(t, "DeclareLaunchArgument")}
    node_args = next(ast.literal_eval(n.value) for n in ast.walk(common)
                     if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "NODE_ARGS")
    declared |= set(node_args) | {const(c.args[0]) for c in calls(common, "DeclareLaunchArgument")}
    used = {const(c.args[0]) for c in calls(t, "LaunchConfiguration") if const(c.args[0])}
    used_common = {const(c.args[0]) for c in calls(common, "LaunchConfiguration") if const(c.args[0])}
    assert used - declared == set()
    assert used_common - declared == set()


def test_launch_parameter_overrides_are_node_parameters():
    common = tree(COMMON)
    node_args = next(ast.literal_eval(n.value) for n in ast.walk(common)
                     if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "NODE_ARGS")
    leaves = {n for n, _ in config.iter_leaves(config.NodeConfig())}
    for param, _ in node_args.values():
        assert param in leaves, param
    assert "sync.slop" in leaves


def test_parameter_file_is_valid_for_the_node():
    data = yaml.safe_load((REPO / "config" / "sam_ovseg.yaml").read_text())["/**"]["ros__parameters"]
    cfg = config.NodeConfig()

    def walk(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from walk(v, f"{prefix}{k}.")
            else:
                yield prefix + k, v

    names = []
    for name, value in walk(data):
        config.set_leaf(cfg, name, value)
        names.append(name)
    config.validate(cfg)
    leaves = [n for n, _ in config.iter_leaves(config.NodeConfig())]
    assert set(leaves) - set(names) == {"registration.depth_to_color"}  # empty list: set by topic or override


def test_rviz_config_shows_node_outputs():
    rviz = yaml.safe_load((REPO / "config" / "sam_ovseg.rviz").read_text())
    displays = rviz["Visualization Manager"]["Displays"]
    shown = {d["Topic"]["Value"] for d in displays if "Topic" in d}
    assert shown == {"/sam_ovseg/overlay", "/sam_ovseg/depth_colormap", "/sam_ovseg/points", "/sam_ovseg/markers",
                     "/sam_ovseg/map/points", "/sam_ovseg/map/markers"}
    for d in displays:
        if "Topic" in d:
            name = d["Topic"]["Value"].removeprefix("/sam_ovseg/")
            assert name in topics.OUTPUTS + topics.MAP_OUTPUTS
            assert d["Topic"]["Reliability Policy"] == "Reliable"
            latched = "Transient Local" if name in topics.MAP_OUTPUTS else "Volatile"
            assert d["Topic"]["Durability Policy"] == latched, name
    channels = {d.get("Channel Name") for d in displays if d["Class"].endswith("PointCloud2")}
    assert {"label", "instance", "object"} <= channels
    assert rviz["Visualization Manager"]["Global Options"]["Fixed Frame"] == "camera_color_optical_frame"


def test_qos_override_file_latches_tf_static():
    from rclpy.qos import DurabilityPolicy

    from sam_ovseg_ros.tools.replay import load_overrides

    qos = load_overrides(REPO / "config" / "qos_overrides.yaml")
    assert qos["/tf_static"].durability == DurabilityPolicy.TRANSIENT_LOCAL


def test_compressed_transport_remaps_the_image_inputs_to_image_transport_names():
    """common.image_remaps: the node's compressed inputs, fed by the camera's compressed topics."""
    import importlib.util
    import sys
    import types

    # launch is not on PyPI: give common.py a LaunchConfiguration that reads a dict
    fake = types.ModuleType("launch.substitutions")
    fake.LaunchConfiguration = lambda name: types.SimpleNamespace(perform=lambda ctx: ctx.get(name, ""))
    actions = types.ModuleType("launch.actions")
    actions.DeclareLaunchArgument = object
    saved = {k: sys.modules.get(k) for k in ("launch", "launch.substitutions", "launch.actions")}
    sys.modules.update({"launch": types.ModuleType("launch"), "launch.substitutions": fake, "launch.actions": actions})
    try:
        spec = importlib.util.spec_from_file_location("launch_common", REPO / "launch" / "common.py")
        common = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(common)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    raw = [("color/image", "/cam/color/image_raw"), ("depth/image", "/cam/depth/image_raw"),
           ("color/camera_info", "/cam/color/camera_info")]
    assert common.image_remaps({}, raw) == raw
    assert common.image_remaps({"transport": "compressed"}, raw) == [
        (topics.COLOR_COMPRESSED, "/cam/color/image_raw/compressed"),
        (topics.DEPTH_COMPRESSED, "/cam/depth/image_raw/compressedDepth"),
        ("color/camera_info", "/cam/color/camera_info")]
    given = [("color/image", "/x/compressed"), ("depth/image", "/y/compressedDepth")]
    assert common.image_remaps({"transport": "compressed"}, given) == [
        (topics.COLOR_COMPRESSED, "/x/compressed"), (topics.DEPTH_COMPRESSED, "/y/compressedDepth")]
    assert set(common.NODE_ARGS[a][0] for a in ("transport", "map_frame")) == {"transport", "map.frame"}
