"""The map survives the node, over DDS with real posed 7-Scenes frames: a clean stop (SIGINT, SIGTERM) saves
it and the next start publishes the same objects and voxels on the latched topics before any frame; ids are
never reused; after a SIGKILL the last autosave is back; a truncated file is refused by name while the node
keeps serving. And the operator's files: a file that is not a vocabulary stops start-up by name and rule
without echoing it, and the services write only into map.save_dir."""
import signal
import time

import numpy as np
import pytest
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosharness import Harness, NodeProcess, call_service
from sensor_msgs.msg import PointCloud2
from std_srvs.srv import Trigger
from test_map_node import tf_message
from tf2_msgs.msg import TFMessage

from sam_ovseg_ros.msg import ObjectArray
from sam_ovseg_ros.ros.messages import MAP_POINT_DTYPE
from sam_ovseg_ros.tools import samplebag

pytestmark = pytest.mark.dds

S = 1_000_000_000
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class MapRun:
    """One node process with the map in ``save`` and a harness that sends posed frames and reads ~/map/*."""

    def __init__(self, ns: str, save, tmp_path, **params) -> None:
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.node = NodeProcess(ns, {"sync.slop": 0.0, "map.publish_period": 0.3, "map.save_dir": str(save),
                                     "map.autosave_period": 1.0, "map.tf_timeout": 0.5, "map.min_object_voxels": 1,
                                     "weights_dir": str(tmp_path / "w"), **params}, log_dir=tmp_path)
        self.h = Harness(ns)
        self.got = {"points": [], "objects": []}
        self.h.node.create_subscription(PointCloud2, f"/{ns}/sam_ovseg/map/points", self.got["points"].append, LATCHED)
        self.h.node.create_subscription(ObjectArray, f"/{ns}/sam_ovseg/map/objects", self.got["objects"].append,
                                        LATCHED)
        self.tf = self.h.node.create_publisher(TFMessage, "/tf", QoSProfile(depth=100,
                                                                            reliability=ReliabilityPolicy.RELIABLE))
        self.static = self.h.node.create_publisher(TFMessage, "/tf_static", LATCHED)
        self.ns = ns

    def connect(self) -> None:
        self.h.wait_connected(120)

    def send(self, frames, stamp0: int) -> None:
        _, st = samplebag.tf_links(frames[0][4])
        self.static.publish(tf_message(st, 0))
        for i, (_, rgb, depth, k, pose) in enumerate(frames):
            stamp = (stamp0 + i) * S
            dyn, _ = samplebag.tf_links(pose)
            self.tf.publish(tf_message(dyn, stamp))
            self.h.publish(rgb, depth, k, stamp)
            self.h.wait_stamp(stamp, names=("segments",), timeout=90)

    def latest(self, name: str, pred=lambda m: True, timeout: float = 20.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.got[name] and pred(self.got[name][-1]):
                return self.got[name][-1]
            time.sleep(0.05)
        raise TimeoutError(f"no {name} matching within {timeout} s")

    def close(self, sig=signal.SIGINT) -> int:
        self.h.close()
        return self.node.stop(sig)


def objects_of(msg) -> dict:
    return {o.id: (o.class_name, o.views, o.voxels, round(o.centroid.x, 5), round(o.centroid.z, 5))
            for o in msg.objects}


def voxels_of(msg) -> np.ndarray:
    pts = np.frombuffer(bytes(msg.data), MAP_POINT_DTYPE)
    return np.sort(pts, order=["x", "y", "z"])


def test_the_map_survives_restarts_and_crashes(rclpy_context, tmp_path):
    save = tmp_path / "map"
    frames = samplebag.load_posed_frames()
    a = MapRun("t_restart", save, tmp_path / "a")
    try:
        a.connect()
        a.send(frames[:3], 10)
        objects = a.latest("objects", lambda m: m.header.stamp.sec == 12 and len(m.objects) > 0)
        points = a.latest("points", lambda m: m.header.stamp.sec == 12)
        tracks_a = {s.track_id for m in a.h.received["segments"] for s in m.segments}
    finally:
        assert a.close(signal.SIGTERM) == 0, a.node.log()[-3000:]
    assert f"map: {save / 'map_state.npz'} holds the map at this stop" in a.node.log()

    b = MapRun("t_restart", save, tmp_path / "b")
    try:
        b.connect()  # no frame sent: what arrives is the loaded map
        assert b.node.wait_log("map: loaded", 10)
        assert objects_of(b.latest("objects")) == objects_of(objects)
        assert np.array_equal(voxels_of(b.latest("points")), voxels_of(points))
        b.send(frames[10:12], 20)
        after = b.latest("objects", lambda m: m.header.stamp.sec == 21)
        # ids go on counting from the saved counters: no track or object id of the first run comes back
        tracks_b = {s.track_id for m in b.h.received["segments"] for s in m.segments}
        assert tracks_b and min(tracks_b) > max(tracks_a)
        new = set(objects_of(after)) - set(objects_of(objects))
        assert all(i > max(objects_of(objects)) for i in new)
        time.sleep(2.5)  # more than one autosave period with nothing new
        crashed = objects_of(b.latest("objects"))
    finally:
        b.close(signal.SIGKILL)  # a crash: no final save

    c = MapRun("t_restart", save, tmp_path / "c")
    try:
        c.connect()
        assert objects_of(c.latest("objects")) == crashed  # the last autosave
    finally:
        assert c.close() == 0

    data = (save / "map_state.npz").read_bytes()
    (save / "map_state.npz").write_bytes(data[: len(data) // 3])  # power lost mid-copy, say
    d = MapRun("t_restart", save, tmp_path / "d")
    try:
        d.connect()
        assert d.node.wait_log(f"map: not loading {save / 'map_state.npz'}: damaged", 10)
        refused = list(save.glob("map_state.refused-*.npz"))
        assert len(refused) == 1 and refused[0].read_bytes() == data[: len(data) // 3]
        d.send(frames[:1], 40)  # and it serves
        assert d.latest("objects", lambda m: m.header.stamp.sec == 40).objects
        assert call_service(d.h, Trigger, f"/{d.ns}/sam_ovseg/map/save", Trigger.Request()).success
        assert call_service(d.h, Trigger, f"/{d.ns}/sam_ovseg/map/clear", Trigger.Request()).success
        assert not (save / "map_state.npz").exists()  # clear removes the saved map too
    finally:
        assert d.close() == 0
    # only the operator's folder was written: the export, the refused file, and the (empty) map at the stop
    assert {p.name for p in save.iterdir()} == {"map.ply", "map_state.npz", "objects.json", refused[0].name}
    assert len(np.load(save / "map_state.npz")["keys"]) == 0


def test_a_file_that_is_not_a_vocabulary_stops_start_up(rclpy_context, tmp_path):
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n")
    node = NodeProcess("t_badvocab", {"vocabulary_file": str(secret), "weights_dir": str(tmp_path / "w")},
                       log_dir=tmp_path)
    try:
        node.proc.wait(timeout=60)
    finally:
        node.stop()
    log = node.log()
    assert node.proc.returncode == 1
    assert f"{secret} is not a vocabulary: line 1 has a character other than letters" in log
    assert "/bin/bash" not in log and "daemon" not in log
