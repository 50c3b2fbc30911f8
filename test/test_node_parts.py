"""The node's parts one by one, in this process with a real rclpy node (no DDS peer needed): parameters
(declare, describe, validate, apply), problem throttling, and inputs (pairing, decoding, camera_info)."""
import numpy as np
import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter
from rosharness import image_msg, info_msg
from scannet import load

from sam_ovseg_ros.core.config import STARTUP_ONLY, NodeConfig
from sam_ovseg_ros.core.frame_types import InputError
from sam_ovseg_ros.ros.diagnostics import NodeStats, Problems
from sam_ovseg_ros.ros.inputs import FrameInputs
from sam_ovseg_ros.ros.params import NodeParameters


@pytest.fixture
def node(rclpy_context, request):
    n = Node(f"parts_{request.node.name.split('[')[0][-40:]}")
    yield n
    n.destroy_node()


class Recorder:
    def __init__(self) -> None:
        self.changes = []

    def __call__(self, old, new) -> None:
        self.changes.append((old, new))


def test_parameters_mirror_the_config_and_apply_valid_changes(node):
    changes = Recorder()
    params = NodeParameters(node, changes)
    defaults = NodeConfig()
    assert params.config() == defaults
    desc = node.describe_parameters(["sam.input", "profile"])
    assert "one of: depth, rgb" in desc[0].additional_constraints and not desc[0].read_only
    assert desc[1].read_only and "profile" in STARTUP_ONLY
    result = node.set_parameters([Parameter("classes", Parameter.Type.STRING_ARRAY, ["door", " person "])])[0]
    assert result.successful
    assert params.config().classes == ["door", "person"] and changes.changes[-1][0].classes == defaults.classes


def test_parameters_reject_bad_values_and_keep_the_config(node):
    changes = Recorder()
    params = NodeParameters(node, changes)
    before = params.config()
    for name, value, why in [("sam.input", "thermal", "sam.input must be one of"),
                             ("classes", ["a", "a"], "duplicate"),
                             ("sync.slop", -1.0, "sync.slop must be >= 0")]:
        ptype = Parameter.Type.STRING_ARRAY if isinstance(value, list) else None
        p = Parameter(name, ptype, value) if ptype else Parameter(name, value=value)
        result = node.set_parameters([p])[0]
        assert not result.successful and why in result.reason, (name, result.reason)
    assert params.config() is before and changes.changes == []


def test_problems_are_logged_once_per_period_numbers_aside():
    stats = NodeStats()
    lines = []

    class Log:
        def warning(self, text):
            lines.append(text)

    problems = Problems(Log(), stats, period=60.0)
    problems.skip_frame("depth_image", "depth/image: 640x480 does not match 320x240")
    problems.skip_frame("depth_image", "depth/image: 1280x720 does not match 320x240")  # same problem, other numbers
    problems.skip_frame("color_image", "color/image: unsupported encoding")
    assert len(lines) == 2 and stats.snapshot()["bad_input"] == {"depth_image": 2, "color_image": 1}


def test_inputs_pair_by_stamp_and_decode_a_frame(node):
    cfg = NodeConfig()
    stats = NodeStats()
    inputs = FrameInputs(node, cfg, stats, Problems(node.get_logger(), stats), on_time_reset=lambda a, b: None,
                         running=lambda: True)
    rgb, d, k = load("1660")
    stamp = 5_000_000_000
    inputs._on_color_info(info_msg(k, 640, 480, stamp))
    inputs._on_color(image_msg(rgb, "rgb8", stamp))
    assert inputs.jobs.get(timeout=0.01) is None  # no depth of that stamp yet
    inputs._on_depth(image_msg(d, "16UC1", stamp + 1_000_000))  # 1 ms apart, slop 20 ms
    job = inputs.jobs.get(timeout=0.01)
    assert job.stamp_ns == stamp and stats.snapshot()["counts"]["pairs"] == 1
    frame = inputs.frame(job, cfg)
    assert np.array_equal(frame.color, rgb) and np.array_equal(frame.depth, d)
    assert np.allclose([frame.k.fx, frame.k.fy, frame.k.cx, frame.k.cy], [k[0, 0], k[1, 1], k[0, 2], k[1, 2]])
    assert frame.depth_to_color is None  # no depth/camera_info: depth is taken as aligned


def test_inputs_name_what_is_missing(node):
    cfg = NodeConfig()
    stats = NodeStats()
    inputs = FrameInputs(node, cfg, stats, Problems(node.get_logger(), stats), on_time_reset=lambda a, b: None,
                         running=lambda: False)  # a stopping node does not wait for a late camera_info
    rgb, d, _ = load("1660")
    inputs._on_color(image_msg(rgb, "rgb8", 7))
    inputs._on_depth(image_msg(d, "16UC1", 7))
    with pytest.raises(InputError, match="no message on color/camera_info") as err:
        inputs.frame(inputs.jobs.get(timeout=0.01), cfg)
    assert err.value.kind == "camera_info_missing"
    inputs._on_color(image_msg(rgb, "rgb8", 9))
    inputs._on_depth(image_msg(d[:, :320].copy(), "32FC1", 9))  # not a depth encoding of uint16 data
    with pytest.raises(InputError):
        inputs.frame(inputs.jobs.get(timeout=0.01), cfg)


def test_inputs_take_the_camera_info_of_the_image_size(node):
    """After a camera changes mode, the newest camera_info may be of the other size: the one of the image's size
    is used (stamps unmatched, slop 0: as a camera that publishes its info once per mode)."""
    cfg = NodeConfig()
    cfg.sync.slop = 0.0
    stats = NodeStats()
    inputs = FrameInputs(node, cfg, stats, Problems(node.get_logger(), stats), on_time_reset=lambda a, b: None,
                         running=lambda: False)
    rgb, d, k = load("1660")
    inputs._on_color_info(info_msg(k, 640, 480, 1))
    inputs._on_color_info(info_msg(k / 2, 320, 240, 2))  # newest, another mode
    inputs._on_color(image_msg(rgb, "rgb8", 3))
    inputs._on_depth(image_msg(d, "16UC1", 3))
    frame = inputs.frame(inputs.jobs.get(timeout=0.01), cfg)
    assert (frame.k.width, frame.k.height, frame.k.fx) == (640, 480, k[0, 0])


def test_a_service_thread_answers_without_the_node_executor(node):
    """How ~/map/query is served: on the helper's own thread, under the name the node gives it, while the
    node's executor is busy (here it is never spun at all)."""
    import threading

    from rclpy.executors import SingleThreadedExecutor
    from std_srvs.srv import Trigger

    from sam_ovseg_ros.ros.service_thread import ServiceThread

    threads = []

    def answer(request, response):
        threads.append(threading.current_thread().name)
        response.success = True
        return response

    helper = ServiceThread(node, Trigger, "~/ask", answer, "helper")
    client_node = Node("parts_service_client")
    executor = SingleThreadedExecutor()
    executor.add_node(client_node)
    try:
        client = client_node.create_client(Trigger, node.get_fully_qualified_name() + "/ask")
        assert client.wait_for_service(timeout_sec=30)
        future = client.call_async(Trigger.Request())
        executor.spin_until_future_complete(future, timeout_sec=30)
        assert future.done() and future.result().success
        assert threads == [f"{node.get_name()}_helper"]
        assert (f"{node.get_name()}_helper", "/") in node.get_node_names_and_namespaces()
    finally:
        executor.shutdown()
        client_node.destroy_node()
        helper.close()
