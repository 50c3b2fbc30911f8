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

Memory: each row also has the node's C heap from /diagnostics (``memory_mb.heap_in_use``: a leak grows it;
``memory_mb.heap_free``: kept by malloc, fragmentation); the summary gives RSS per 10-minute window and the
slope after ``--warmup``. ``--tracemalloc`` runs the node under bench/memtrace.py (growth by allocation site,
in ``memtrace.txt``); ``--arena-max N`` sets the node's ``MALLOC_ARENA_MAX``.
"""
from __future__ import annotations

import argparse
import atexit
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


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def idle_ticks() -> tuple[int, int]:
    """(idle + iowait, total) clock ticks of the whole machine."""
    v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return v[3] + v[4], sum(v)


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
    ap.add_argument("--warmup", type=float, default=600.0, help="seconds before RSS drift is measured")
    ap.add_argument("--window", type=float, default=600.0, help="seconds per RSS window in the summary")
    ap.add_argument("--tracemalloc", type=float, default=0.0, metavar="PERIOD",
                    help="run the node under bench/memtrace.py, a report every PERIOD s")
    ap.add_argument("--arena-max", type=int, default=0,
                    help="the node's MALLOC_ARENA_MAX (0: unset, the node limits itself to 2; 16: glibc's default here)")
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
    env, main_args = {}, None
    if a.arena_max:
        env["MALLOC_ARENA_MAX"] = str(a.arena_max)
    if a.tracemalloc:
        env.update(MEMTRACE_OUT=str(a.out / "memtrace.txt"), MEMTRACE_PERIOD=str(a.tracemalloc))
        main_args = [str(REPO / "bench" / "memtrace.py")]
    node = NodeProcess(NS, {"weights_dir": str(REPO / "build" / "weights"), "sync.slop": 0.0,
                            "diagnostics.period": a.period / 2, "map.max_voxels": 200_000,
                            "map.tf_timeout": 0.05}, log_dir=a.out, env=env, main=main_args)
    # the node goes with this script, however it ends (an error, Ctrl-C, a timeout's SIGTERM)
    atexit.register(lambda: node.alive() and node.proc.kill())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rclpy.init()
    h = Harness(NS, record=False)  # subscribed to every output, as RViz and a mapper would be
    h.wait_connected(180)
    ages, rows, diag, rss_samples = [], [], {}, []
    lock = threading.Lock()

    def sample_rss():  # twice a second: a frame's temporaries swing RSS by hundreds of MB within a second
        while node.alive():
            v = rss_mb(node.proc.pid)
            with lock:
                rss_samples.append(v)
            time.sleep(0.5)

    threading.Thread(target=sample_rss, daemon=True).start()

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
    hz = os.sysconf("SC_CLK_TCK")
    last_cpu, last_idle = cpu_ticks(node.proc.pid), idle_ticks()
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
                    rss_window, rss_samples[:] = list(rss_samples) or [rss_mb(node.proc.pid)], []
                    stages = {k: float(v) for k, v in diag.items() if k.startswith("median_ms.")}
                    counts = {k: int(v) for k, v in diag.items() if k.startswith("count.")}
                    memory = {m: float(diag[f"memory_mb.{m}"]) if f"memory_mb.{m}" in diag else ""
                              for m in ("heap_in_use", "heap_free", "mmap")}
                all_ages += window
                cpu, idle = cpu_ticks(node.proc.pid), idle_ticks()
                node_cpu = (cpu - last_cpu) / hz / a.period * 100  # % of one core
                machine_idle = (idle[0] - last_idle[0]) / max(idle[1] - last_idle[1], 1) * 100
                last_cpu, last_idle = cpu, idle
                row = {"t_s": round(time.monotonic() - t_start, 1), "rss_mb": round(float(np.median(rss_window)), 1),
                       "rss_min_mb": round(min(rss_window), 1), "rss_max_mb": round(max(rss_window), 1),
                       "soak_rss_mb": round(rss_mb(os.getpid()), 1),  # this publisher/subscriber
                       "sent": sent, "age_p50_ms": round(float(np.percentile(window, 50)), 1) if window else "",
                       "age_p99_ms": round(float(np.percentile(window, 99)), 1) if window else "",
                       "node_cpu_pct": round(node_cpu, 1), "machine_idle_pct": round(machine_idle, 1),
                       "color_in": counts.get("count.color_msgs", 0), "depth_in": counts.get("count.depth_msgs", 0),
                       "frames_in": counts.get("count.pairs", 0), "processed": counts.get("count.processed", 0),
                       "dropped": counts.get("count.dropped", 0), **memory, **stages}
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
    windows = {}
    for r in rows:  # RSS per window (median of its rows, and its heap figures at the window's end)
        windows.setdefault(int(r["t_s"] // a.window), []).append(r)
    per_window = [{"window_min": f"{k * a.window / 60:.0f}-{(k + 1) * a.window / 60:.0f}",
                   "rss_median_mb": round(float(np.median([r["rss_mb"] for r in w])), 1),
                   "rss_min_mb": min(r["rss_min_mb"] for r in w), "rss_max_mb": max(r["rss_max_mb"] for r in w),
                   **{f"{m}_mb": w[-1][m] for m in ("heap_in_use", "heap_free", "mmap")}}
                  for k, w in sorted(windows.items())]
    # input loss per row (pairs that never reached the node), against how busy the machine was
    loss = []
    for prev, r in zip(rows, rows[1:]):
        sent = r["sent"] - prev["sent"]
        if sent > 0:
            loss.append((1 - (r["frames_in"] - prev["frames_in"]) / sent, r["machine_idle_pct"], r["node_cpu_pct"]))
    busy = [x for x, idle, _ in loss if idle < 5]
    spare = [x for x, idle, _ in loss if idle >= 5]
    loss_summary = {
        "rows_with_over_20pct_lost": sum(x > 0.2 for x, _, _ in loss), "rows": len(loss),
        "mean_loss_pct_machine_idle_below_5pct": round(100 * float(np.mean(busy)), 1) if busy else None,
        "rows_idle_below_5pct": len(busy),
        "mean_loss_pct_machine_idle_5pct_or_more": round(100 * float(np.mean(spare)), 1) if spare else None,
        "node_cpu_pct_median": round(float(np.median([c for _, _, c in loss])), 1) if loss else None}
    return {"minutes": a.minutes, "input_hz": a.hz, "rows": len(rows), "node_alive_at_end": alive, "exit_code": code,
            "arena_max": a.arena_max or "default", "tracemalloc": bool(a.tracemalloc), "warmup_s": a.warmup,
            "rss_per_window": per_window,
            "rss_drift_mb_per_hour_fit": round(slope, 1) if slope is not None else None,
            # the floor between frames' temporaries: what is kept, not what one frame holds for a moment
            "rss_min_drift_mb_per_hour_fit": round(float(np.polyfit(t, [r["rss_min_mb"] for r in warm], 1)[0]), 1)
            if len(rss) > 2 else None,
            "rss_quartile_medians_mb": [round(float(np.median(p)), 1) for p in np.array_split(rss, 4) if len(p)],
            "rss_drift_over_run_mb": round(slope * hours, 1) if slope is not None else None,
            "rss_min_max_mb_after_warmup": [min(rss), max(rss)] if rss else None,
            "rss_max_mb": max(r["rss_mb"] for r in rows) if rows else None,
            "soak_rss_max_mb": max(r["soak_rss_mb"] for r in rows) if rows else None,
            "age_p50_ms": round(float(np.percentile(ages, 50)), 1) if ages else None,
            "age_p99_ms": round(float(np.percentile(ages, 99)), 1) if ages else None,
            "sent": last.get("sent"), "color_in": last.get("color_in"), "depth_in": last.get("depth_in"),
            "frames_in": last.get("frames_in"), "processed": last.get("processed"), "dropped": last.get("dropped"),
            "input_loss": loss_summary}


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    t = [r["t_s"] / 60 for r in rows]
    fig, ax = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    ax[0].plot(t, [r["rss_mb"] for r in rows], label="node RSS (median of 10 s)")
    if "rss_min_mb" in rows[0]:
        ax[0].fill_between(t, [r["rss_min_mb"] for r in rows], [r["rss_max_mb"] for r in rows], alpha=0.2,
                           label="node RSS min..max")
    for key, name in (("heap_in_use", "C heap in use"), ("heap_free", "C heap free (kept by malloc)")):
        if key in rows[0]:
            ax[0].plot(t, [float(r[key]) if r[key] != "" else np.nan for r in rows], label=name)
    ax[0].plot(t, [r["soak_rss_mb"] for r in rows], label="soak publisher/subscriber")
    ax[0].set_ylabel("RSS (MB)")
    ax[0].legend(fontsize=7)
    ax[1].plot(t, [r["age_p50_ms"] or np.nan for r in rows], label="p50")
    ax[1].plot(t, [r["age_p99_ms"] or np.nan for r in rows], label="p99")
    ax[1].set_ylabel("output age (ms)")
    ax[1].legend()
    proc = np.diff([0] + [r["processed"] for r in rows])
    drop = np.diff([0] + [r["dropped"] for r in rows])
    ax[2].plot(t, proc, label="processed per row")
    ax[2].plot(t, drop, label="dropped per row")
    if len(rows) > 1:
        lost = np.diff([0] + [r["sent"] - r["frames_in"] for r in rows])
        ax[2].plot(t, lost, label="lost in transport per row")
    ax[2].set_ylabel("frames")
    ax[2].set_xlabel("minutes")
    ax[2].legend()
    fig.suptitle("sam_ovseg_node soak (tiny profile, CPU)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    raise SystemExit(main())
