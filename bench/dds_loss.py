#!/usr/bin/env python3
"""Where the soak's input loss comes from: the middleware alone, without the node.

A publisher process sends what the soak sends (640x480 rgb8 + 16UC1 depth + camera_info at ``--hz``, the
harness's QoS: reliable, keep-last 10) and a subscriber process takes colour and depth with the node's QoS
(reliable, keep-last ``qos.depth`` 5) in a plain rclpy executor, counting what arrives per ``--period``.
``--hog F`` gives the subscriber a second thread that holds the GIL for a fraction F of the time in 50 ms
stretches (pure-Python work, as the node's worker does between its NumPy and torch calls), so callbacks
are held back the way the node's are. ``--echo-mb M`` makes the subscriber publish an M MB message
(the size of the node's organized cloud) every ``--echo-period`` s from a thread, which the publisher
process subscribes to, as the soak's harness takes the node's outputs.

    python bench/dds_loss.py [--minutes 5] [--hz 30] [--hog 0.0]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(181, 230)))


def publish(seconds: float, hz: float, echo: bool, best_effort: bool) -> None:
    import numpy as np
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    rclpy.init()
    node = rclpy.create_node("loss_pub")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE)
    pc, pd, pi = (node.create_publisher(t, n, qos) for t, n in ((Image, "color"), (Image, "depth"),
                                                                 (CameraInfo, "info")))
    got = []
    if echo:
        node.create_subscription(Image, "echo", lambda m: got.append(len(m.data)),
                                 QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
        from rclpy.executors import SingleThreadedExecutor

        ex = SingleThreadedExecutor()
        ex.add_node(node)
        threading.Thread(target=ex.spin, daemon=True).start()
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (480, 640, 3), np.uint8)
    depth = rng.integers(500, 4000, (480, 640), np.uint16)
    end, t0, sent = time.monotonic() + seconds, time.monotonic(), 0
    while time.monotonic() < end:
        delay = t0 + sent / hz - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        stamp = time.time_ns()
        for pub, arr, enc, step in ((pd, depth, "16UC1", 1280), (pc, rgb, "rgb8", 1920)):
            m = Image(height=480, width=640, encoding=enc, step=step, data=arr.tobytes())
            m.header.stamp.sec, m.header.stamp.nanosec = divmod(stamp, 10**9)
            pub.publish(m)
        pi.publish(CameraInfo(width=640, height=480))
        sent += 1
    print(json.dumps({"sent": sent, "echo_received": len(got)}), flush=True)
    rclpy.shutdown()


def hog(fraction: float, stop: threading.Event) -> None:
    """Hold the GIL for ``fraction`` of the time, 50 ms at a time (a pure-Python loop never releases it)."""
    burst = 0.05
    while not stop.is_set():
        end = time.perf_counter() + burst
        x = 0
        while time.perf_counter() < end:
            x += 1
        time.sleep(burst * (1 - fraction) / max(fraction, 1e-3))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--hz", type=float, default=30.0)
    ap.add_argument("--period", type=float, default=10.0)
    ap.add_argument("--hog", type=float, default=0.0)
    ap.add_argument("--echo-mb", type=float, default=0.0)
    ap.add_argument("--best-effort", action="store_true", help="both sides best effort (sensor data QoS)")
    ap.add_argument("--echo-period", type=float, default=1.6)
    ap.add_argument("--publish", type=float, help=argparse.SUPPRESS)  # the publisher process
    a = ap.parse_args()
    if a.publish:
        publish(a.publish, a.hz, a.echo_mb > 0, a.best_effort)
        return 0
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("loss_sub")
    counts = {"color": 0, "depth": 0}
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT if a.best_effort else ReliabilityPolicy.RELIABLE)
    for name in counts:
        node.create_subscription(Image, name, lambda m, n=name: counts.__setitem__(n, counts[n] + 1), qos)
    stop = threading.Event()
    if a.hog > 0:
        threading.Thread(target=hog, args=(a.hog, stop), daemon=True).start()
    seconds = a.minutes * 60
    pub = subprocess.Popen([sys.executable, __file__, "--publish", str(seconds), "--hz", str(a.hz),
                            "--echo-mb", str(a.echo_mb), *(["--best-effort"] if a.best_effort else [])], stdout=subprocess.PIPE, text=True)
    if a.echo_mb > 0:
        echo = node.create_publisher(Image, "echo", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        n = int(a.echo_mb * 1e6)

        def send_echo():
            payload = bytes(n)
            while not stop.wait(a.echo_period):
                echo.publish(Image(height=1, width=n, encoding="mono8", step=n, data=payload))

        threading.Thread(target=send_echo, daemon=True).start()
    t0 = next_row = time.monotonic()
    last = dict(counts)
    rows = []
    while pub.poll() is None:
        rclpy.spin_once(node, timeout_sec=0.05)
        if time.monotonic() >= next_row + a.period:
            next_row += a.period
            row = {"t_s": round(time.monotonic() - t0), **{k: counts[k] - last[k] for k in counts},
                   "expected": round(a.hz * a.period)}
            last = dict(counts)
            rows.append(row)
            print(json.dumps(row), flush=True)
    stop.set()
    end = json.loads(pub.stdout.read().strip().splitlines()[-1])
    sent = end["sent"]
    lost = [1 - min(r["color"], r["depth"]) / r["expected"] for r in rows[1:]]
    print(json.dumps({"hz": a.hz, "hog": a.hog, "best_effort": a.best_effort, "echo_mb": a.echo_mb, "echo_received": end["echo_received"],
                      "sent": sent, "color": counts["color"], "depth": counts["depth"],
                      "rows_over_20pct_lost": sum(x > 0.2 for x in lost), "rows": len(lost)}), flush=True)
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
