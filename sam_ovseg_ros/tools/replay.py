"""``sam_ovseg_replay``: play a rosbag2 (sqlite3/mcap) or ROS 1 bag into DDS, optionally record topics.

    sam_ovseg_replay BAG [--remap FROM:=TO ...] [--rate R] [--loop] [--clock] [--wait S [--wait-for T ...]]
                         [--record OUT --topics T ...] [--linger S] [--duration S]

Messages keep their stamps and types; they are published at the recorded pace (scaled by
--rate). --wait holds playback until the --wait-for topics (else every remapped one) have a
subscriber (a node still loading models would otherwise miss the first frames). Recording writes a rosbag2 with
receive-time timestamps and message definitions that ``ros2 bag info`` and rosbags read.
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

LATCHED_BY_DEFAULT = ("/tf_static",)


def parse_args(argv=None) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    ros_args = []
    if "--ros-args" in argv:  # rcl must not see our FROM:=TO remaps as its own rules
        i = argv.index("--ros-args")
        argv, ros_args = argv[:i], argv[i:]
    p = argparse.ArgumentParser(prog="sam_ovseg_replay", description=__doc__.split("\n\n")[0])
    p.add_argument("bag", help="rosbag2 folder or file (.db3/.mcap), or a ROS 1 .bag")
    p.add_argument("--remap", nargs="+", default=[], metavar="FROM:=TO", help="publish bag topic FROM as TO")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    p.add_argument("--loop", action="store_true", help="start over at the end (stamps jump back)")
    p.add_argument("--clock", action="store_true", help="publish /clock from the bag time (use_sim_time)")
    p.add_argument("--wait", type=float, default=0.0, metavar="S",
                   help="wait up to S seconds for subscribers before playing: on the --wait-for topics, else on "
                        "the remapped ones, else on every topic")
    p.add_argument("--wait-for", nargs="+", default=[], metavar="T",
                   help="topics (as published, after --remap) whose subscribers --wait waits for, e.g. a node's inputs")
    p.add_argument("--settle", type=float, default=0.5, metavar="S",
                   help="after --wait saw every subscriber, wait S seconds more: a subscriber matches our "
                        "publishers a little after we match it, and best-effort samples sent in between are lost")
    p.add_argument("--start-delay", type=float, default=0.0, metavar="S", help="sleep S seconds before playing")
    p.add_argument("--topics-only", nargs="+", default=None, metavar="T", help="play only these bag topics")
    p.add_argument("--qos-profile-overrides-path", type=Path, default=None,
                   help="YAML as ros2 bag's: {topic: {reliability, durability, history, depth}}")
    p.add_argument("--record", type=Path, default=None, metavar="OUT", help="write a rosbag2 here")
    p.add_argument("--topics", nargs="+", default=[], metavar="T", help="topics to record")
    p.add_argument("--storage", choices=("sqlite3", "mcap"), default="sqlite3")
    p.add_argument("--linger", type=float, default=5.0, metavar="S", help="keep recording S seconds after playback")
    p.add_argument("--expect", type=int, default=0, metavar="N",
                   help="stop lingering once every recorded topic has N messages (latched topics: 1)")
    p.add_argument("--duration", type=float, default=0.0, metavar="S", help="stop after S seconds (0: no limit)")
    args = p.parse_args(argv)
    if args.rate <= 0:
        p.error("--rate must be > 0")
    if args.record and not args.topics:
        p.error("--record needs --topics")
    args.remaps = {}
    for r in args.remap:
        src, sep, dst = r.partition(":=")
        if not sep or not src or not dst:
            p.error(f"--remap takes FROM:=TO, got '{r}'")
        args.remaps[src] = dst
    args.ros_args = ros_args
    return args


def _qos(reliable=True, transient=False, depth=10):
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if transient else DurabilityPolicy.VOLATILE)


def latched(conn) -> bool:
    """Whether to publish a bag topic transient-local, so that a reader matching after the send still
    gets it: /tf_static, a topic the bag records as latched (ROS 1 header, rosbag2 offered QoS), and a
    topic with a single message (a recording's calibration or extrinsic, sent once)."""
    if conn.topic in LATCHED_BY_DEFAULT or conn.msgcount == 1 or getattr(conn.ext, "latching", None):
        return True
    return any(q.durability.name == "TRANSIENT_LOCAL" for q in getattr(conn.ext, "offered_qos_profiles", None) or ())


def load_overrides(path: Path | None) -> dict:
    if path is None:
        return {}
    import yaml

    data = yaml.safe_load(path.read_text()) or {}
    out = {}
    for topic, spec in data.items():
        spec = spec or {}
        out[topic] = _qos(str(spec.get("reliability", "reliable")).lower() != "best_effort",
                          str(spec.get("durability", "volatile")).lower() == "transient_local",
                          int(spec.get("depth", 10)) if str(spec.get("history", "keep_last")) != "keep_all" else 1000)
    return out


class Player:
    def __init__(self, node, args, log) -> None:
        from rosbags.highlevel import AnyReader

        from sam_ovseg_ros.tools import bagio

        self.node, self.args, self.log = node, args, log
        self.reader = AnyReader([Path(args.bag)])
        self.reader.open()
        self.ros1 = self.reader.is2 is False
        overrides = load_overrides(args.qos_profile_overrides_path)
        self.conns, self.pubs = [], {}
        for c in self.reader.connections:
            if args.topics_only and c.topic not in args.topics_only:
                continue
            cls = bagio.message_class(c.msgtype)
            if cls is None:
                log(f"skipping {c.topic}: message type {c.msgtype} is not installed")
                continue
            out = args.remaps.get(c.topic, c.topic)
            qos = overrides.get(out) or overrides.get(c.topic) or _qos(transient=latched(c))
            if out not in self.pubs:
                try:
                    self.pubs[out] = (self.node.create_publisher(cls, out, qos), cls)
                except Exception as exc:  # e.g. ROS 1 topic names with spaces are invalid in ROS 2
                    log(f"skipping {c.topic}: {exc}")
                    continue
            self.conns.append(c)
        self.by_id = {id(c): args.remaps.get(c.topic, c.topic) for c in self.conns}
        self.bag_time = None
        self.published = 0

    def wait_for_subscribers(self, timeout: float) -> None:
        if self.args.wait_for:
            absent = [t for t in self.args.wait_for if t not in self.pubs]
            if absent:
                self.log(f"waiting for subscribers on {absent}, but no bag topic is played there; the bag's "
                         f"topics as played: {sorted(self.pubs)} (rename with --remap FROM:=TO)")
            wanted = [t for t in self.args.wait_for if t in self.pubs]
        else:
            wanted = [t for t in self.pubs if t in self.args.remaps.values()] or list(self.pubs)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            missing = [t for t in wanted if self.pubs[t][0].get_subscription_count() == 0]
            if not missing:
                time.sleep(max(self.args.settle, 0.0))
                return
            time.sleep(0.05)
        self.log(f"no subscriber on {missing} after {timeout:.0f} s; playing anyway")

    def play_once(self, stop: threading.Event) -> None:
        t0_bag, t0_wall = None, None
        for conn, t, raw in self.reader.messages(connections=self.conns):
            if stop.is_set():
                return
            if t0_bag is None:
                t0_bag, t0_wall = t, time.monotonic()
            due = t0_wall + (t - t0_bag) / 1e9 / self.args.rate
            while not stop.is_set():
                now = time.monotonic()
                if now >= due:
                    break
                self.bag_time = t0_bag + int((now - t0_wall) * self.args.rate * 1e9)
                time.sleep(min(0.005, due - now))
            self.bag_time = t
            pub, cls = self.pubs[self.by_id[id(conn)]]
            if self.ros1:
                from sam_ovseg_ros.tools import bagio

                pub.publish(bagio.to_ros2(self.reader.deserialize(raw, conn.msgtype), cls))
            else:
                pub.publish(bytes(raw))
            self.published += 1

    def close(self) -> None:
        self.reader.close()


class Recorder:
    """Subscribes raw to the given topics (QoS matched to their publishers) and writes a rosbag2.

    rosbags' sqlite3 writer may only be used from the thread that opened it, so one writer
    thread owns it and everything else hands it work through a queue.
    """

    def __init__(self, node, out: Path, topics: list[str], storage: str, log, discover_s: float = 30.0) -> None:
        import queue

        from sam_ovseg_ros.tools import bagio

        self.node, self.log, self.out, self.storage = node, log, out, storage
        self.ts = bagio.typestore()
        self.queue: queue.Queue = queue.Queue()
        self.subs, self.counts, self.latched = [], {t: 0 for t in topics}, set()
        self.pending = list(topics)
        self.discover_until = time.monotonic() + discover_s
        self.thread = threading.Thread(target=self._write_loop, daemon=True)
        self.thread.start()

    def _write_loop(self) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        plugin = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3
        writer, conns = Writer(self.out, version=8, storage_plugin=plugin), {}
        writer.open()
        while True:
            op = self.queue.get()
            if op is None:
                break
            if op[0] == "topic":
                _, topic, msgtype = op
                conns[topic] = writer.add_connection(topic, msgtype, typestore=self.ts)
            else:
                _, topic, stamp, data = op
                writer.write(conns[topic], stamp, data)
        writer.close()

    def poll_discovery(self) -> None:
        """Subscribe to every wanted topic once its publisher (and type) is known."""
        from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

        from sam_ovseg_ros.tools import bagio

        if not self.pending:
            return
        known = dict(self.node.get_topic_names_and_types())
        for topic in list(self.pending):
            types = known.get(topic)
            if not types:
                continue
            msgtype = types[0]
            cls = bagio.message_class(msgtype)
            infos = self.node.get_publishers_info_by_topic(topic)
            reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos) if infos else True
            transient = any(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in infos)
            self.queue.put(("topic", topic, msgtype))
            if transient:
                self.latched.add(topic)
            self.subs.append(self.node.create_subscription(cls, topic, self._cb(topic), _qos(reliable, transient, 100),
                                                           raw=True))
            self.pending.remove(topic)
        if self.pending and time.monotonic() > self.discover_until:
            self.log(f"not recording {self.pending}: no publisher appeared")
            self.pending = []

    def _cb(self, topic):
        def cb(data: bytes) -> None:
            self.counts[topic] += 1
            self.queue.put(("msg", topic, self.node.get_clock().now().nanoseconds, data))
        return cb

    def complete(self, n: int) -> bool:
        """Every topic has n messages (topics with a transient-local publisher: 1)."""
        return not self.pending and all(c >= (1 if t in self.latched else n) for t, c in self.counts.items())

    def close(self) -> None:
        for sub in self.subs:
            self.node.destroy_subscription(sub)
        self.subs = []
        self.queue.put(None)
        self.thread.join(timeout=60)


def main(argv=None) -> int:
    args = parse_args(argv)
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    rclpy.init(args=args.ros_args or None)
    node = rclpy.create_node("sam_ovseg_replay")
    log = node.get_logger().info
    if not Path(args.bag).exists():
        node.get_logger().error(f"bag not found: {args.bag}")
        return 2
    player = Player(node, args, log)
    recorder = Recorder(node, args.record, args.topics, args.storage, log) if args.record else None
    executor = SingleThreadedExecutor()  # the recorder's callbacks only queue; one thread is cheaper
    executor.add_node(node)
    stop, spun = threading.Event(), threading.Event()

    def spin_loop():
        while not spun.is_set():
            executor.spin_once(timeout_sec=0.05)

    spin = threading.Thread(target=spin_loop, daemon=True)
    spin.start()
    clock_pub = None
    if args.clock:
        from rosgraph_msgs.msg import Clock

        clock_pub = node.create_publisher(Clock, "/clock", _qos(depth=1))

        def clock_loop():
            while not stop.is_set():
                if player.bag_time is not None:
                    msg = Clock()
                    msg.clock.sec, msg.clock.nanosec = divmod(player.bag_time, 1_000_000_000)
                    clock_pub.publish(msg)
                time.sleep(0.01)

        threading.Thread(target=clock_loop, daemon=True).start()
    if args.duration > 0:
        threading.Timer(args.duration, stop.set).start()

    def discovery_loop():
        while recorder and not stop.is_set() and recorder.pending:
            recorder.poll_discovery()
            time.sleep(0.05)

    threading.Thread(target=discovery_loop, daemon=True).start()
    code = 0
    try:
        if args.wait > 0:
            player.wait_for_subscribers(args.wait)
        if recorder:  # let the recorder subscribe to the node's outputs before the first input frame
            end = time.monotonic() + max(args.wait, 5.0)
            while recorder.pending and time.monotonic() < end and not stop.is_set():
                time.sleep(0.05)
        if args.start_delay > 0:
            time.sleep(args.start_delay)
        log(f"playing {args.bag} ({len(player.conns)} topics, rate {args.rate})")
        while not stop.is_set():
            player.play_once(stop)
            if not args.loop:
                break
        log(f"playback done: {player.published} messages")
        end = time.monotonic() + (args.linger if recorder else 0.0)
        while recorder and time.monotonic() < end and not stop.is_set():
            if args.expect and recorder.complete(args.expect):
                break
            time.sleep(0.05)
    except KeyboardInterrupt:
        code = 0
    finally:
        stop.set()
        if recorder:
            recorder.close()
            log(f"recorded to {args.record}: " + ", ".join(f"{t} {n}" for t, n in recorder.counts.items()))
        player.close()
        spun.set()
        spin.join(timeout=5)
        executor.shutdown(timeout_sec=1)
        node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
