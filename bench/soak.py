#!/usr/bin/env python3
"""Soak: the node (tiny profile) under 30 Hz RGB-D input for a long time; memory, latency, drops.

A camera-like publisher sends the ScanNet frames (640x480 rgb8 + 16UC1 + camera_info) at ``--hz`` with
live stamps, and a moving pose on /tf (map -> camera_color_optical_frame, 0.2 m/s), so tracking and the
voxel map work all along (``map.max_voxels`` is lowered so that its bound is reached early). Every
``--period`` s a CSV row: node RSS, output age p50/p99 (receipt time - input stamp of ~/segments),
frames in / processed / dropped, this script's own RSS (it keeps no output messages, only counts) and
the node's per-stage medians (from /diagnostics). At the end a PNG of the same, and a summary: RSS
drift after warm-up, overall age percentiles, drop rate.

    python bench/soak.py [--minutes 30] [--hz 30] [--out bench/results/soak]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "test"))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(100, 180)))

NS = "soak"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--hz", type=float, default=30.0)
    ap.add_argument("--period", type=float, default=10.0, help="seconds per CSV row")
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds before RSS drift is measured")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "soak")
    a = ap.parse_args()

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import TransformStamped
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile
    from rosharness import Harness, NodeProcess
    from tf2_msgs.msg import TFMessage

    from sam_ovseg_ros.msg import SegmentArray
    from sam_ovseg_ros.tools.samplebag import load_frames

    a.out.mkdir(parents=True, exist_ok=True)
    node = NodeProcess(NS, {"weights_dir": str(REPO / "build" / "weights"), "sync.slop": 0.0,
                            "diagnostics.period": a.period / 2, "map.max_voxels": 200_000,
                            "map.tf_timeout": 0.05}, log_dir=a.out)
    rclpy.init()
    h = Harness(NS, record=False)  # subscribed to every output, as RViz and a mapper would be
    h.wait_connected(180)
    ages, rows, diag = [], [], {}
    lock = threading.Lock()

    def on_segments(msg):
        now = time.time_ns()
        with lock:
            ages.append((now - (msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec)) / 1e6)

    def on_diag(msg):
        for st in msg.status:
            if st.name.startswith("sam_ovseg"):
                with lock:
                    diag.update({kv.key: kv.value for kv in st.values})

    h.node.create_subscription(SegmentArray, f"/{NS}/sam_ovseg/segments", on_segments, QoSProfile(depth=10))
    h.node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, QoSProfile(depth=10))
    tf_pub = h.node.create_publisher(TFMessage, "/tf", QoSProfile(depth=100))
    spin = SingleThreadedExecutor()
    frames = load_frames()
    t_start = time.monotonic()
    end = t_start + a.minutes * 60
    next_row = t_start + a.period
    sent = 0
    all_ages: list[float] = []
    with open(a.out / "soak.csv", "w", newline="") as f:
        w = None
        while time.monotonic() < end and node.alive():
            tick = t_start + sent / a.hz
            delay = tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            stamp = time.time_ns()
            _, rgb, d, k = frames[sent % len(frames)]
            tr = TransformStamped(child_frame_id="camera_color_optical_frame")
            tr.header.frame_id = "map"
            tr.header.stamp.sec, tr.header.stamp.nanosec = divmod(stamp, 10**9)
            tr.transform.translation.x = 0.2 * (time.monotonic() - t_start)
            tr.transform.rotation.w = 1.0
            tf_pub.publish(TFMessage(transforms=[tr]))
            h.publish(rgb, d, k, stamp)
            sent += 1
            if time.monotonic() >= next_row:
                next_row += a.period
                with lock:
                    window, ages[:] = list(ages), []
                    stages = {k: float(v) for k, v in diag.items() if k.startswith("median_ms.")}
                    counts = {k: int(v) for k, v in diag.items() if k.startswith("count.")}
                all_ages += window
                row = {"t_s": round(time.monotonic() - t_start, 1), "rss_mb": round(rss_mb(node.proc.pid), 1),
                       "soak_rss_mb": round(rss_mb(os.getpid()), 1),  # this publisher/subscriber
                       "sent": sent, "age_p50_ms": round(float(np.percentile(window, 50)), 1) if window else "",
                       "age_p99_ms": round(float(np.percentile(window, 99)), 1) if window else "",
                       "frames_in": counts.get("count.pairs", 0), "processed": counts.get("count.processed", 0),
                       "dropped": counts.get("count.dropped", 0), **stages}
                if w is None:
                    w = csv.DictWriter(f, fieldnames=list(row), extrasaction="ignore")
                    w.writeheader()
                w.writerow(row)
                f.flush()
                rows.append(row)
                print(json.dumps(row), flush=True)
    h.close()
    alive = node.alive()
    node.proc.send_signal(signal.SIGINT)
    code = node.stop()
    rclpy.try_shutdown()
    del spin
    summary = summarize(rows, all_ages, a, alive, code)
    (a.out / "summary.json").write_text(json.dumps(summary, indent=1))
    plot(rows, a.out / "soak.png")
    print(json.dumps(summary, indent=1))
    return 0 if alive and code == 0 else 1


def summarize(rows: list[dict], ages: list[float], a, alive: bool, code: int) -> dict:
    warm = [r for r in rows if r["t_s"] >= a.warmup] or rows
    rss = [r["rss_mb"] for r in warm]
    hours = max((warm[-1]["t_s"] - warm[0]["t_s"]) / 3600, 1e-9) if warm else 1e-9
    last = rows[-1] if rows else {}
    t = np.array([r["t_s"] for r in warm]) / 3600
    slope = float(np.polyfit(t, rss, 1)[0]) if len(rss) > 2 else None  # MB/h, least squares (RSS swings)
    return {"minutes": a.minutes, "input_hz": a.hz, "rows": len(rows), "node_alive_at_end": alive, "exit_code": code,
            "rss_drift_mb_per_hour_fit": round(slope, 1) if slope is not None else None,
            "rss_quartile_medians_mb": [round(float(np.median(p)), 1) for p in np.array_split(rss, 4) if len(p)],
            "rss_drift_over_run_mb": round(slope * hours, 1) if slope is not None else None,
            "rss_min_max_mb_after_warmup": [min(rss), max(rss)] if rss else None,
            "rss_max_mb": max(r["rss_mb"] for r in rows) if rows else None,
            "soak_rss_max_mb": max(r["soak_rss_mb"] for r in rows) if rows else None,
            "age_p50_ms": round(float(np.percentile(ages, 50)), 1) if ages else None,
            "age_p99_ms": round(float(np.percentile(ages, 99)), 1) if ages else None,
            "frames_in": last.get("frames_in"), "processed": last.get("processed"), "dropped": last.get("dropped")}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    t = [r["t_s"] / 60 for r in rows]
    fig, ax = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    ax[0].plot(t, [r["rss_mb"] for r in rows], label="node")
    ax[0].plot(t, [r["soak_rss_mb"] for r in rows], label="soak publisher/subscriber")
    ax[0].set_ylabel("RSS (MB)")
    ax[0].legend()
    ax[1].plot(t, [r["age_p50_ms"] or np.nan for r in rows], label="p50")
    ax[1].plot(t, [r["age_p99_ms"] or np.nan for r in rows], label="p99")
    ax[1].set_ylabel("output age (ms)")
    ax[1].legend()
    proc = np.diff([0] + [r["processed"] for r in rows])
    drop = np.diff([0] + [r["dropped"] for r in rows])
    ax[2].plot(t, proc, label="processed per row")
    ax[2].plot(t, drop, label="dropped per row")
    ax[2].set_ylabel("frames")
    ax[2].set_xlabel("minutes")
    ax[2].legend()
    fig.suptitle("sam_ovseg_node soak (tiny profile, CPU)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    raise SystemExit(main())
