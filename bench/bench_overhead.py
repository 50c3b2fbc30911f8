#!/usr/bin/env python3
"""CPU time of everything around the models, per 640x480 frame (ScanNet frames, medians).

Stages: decode (sensor_msgs/Image -> numpy; compressed JPEG/PNG/compressedDepth timed apart), depth render, instances, fusion (vote + semantic
image), segments, cloud (what machines consume), overlay and markers (what people look at), message
build + publish (to a subscriber in another process), next to a bare rclpy publish of prebuilt
messages of the same sizes to the same subscriber; and the bytes per frame of each cloud option.
SAM-like masks are synthesised (default 100 per frame, 100 px .. 40 % of the image, overlapping)
so the per-mask stages see real counts; the OVSeg label map is a 20-class map of the image.

The same run times naive references written the way the original code does it: fusion with a
full-image np.unique per mask and painting per mask (SegmentAnyRGBD predictor.py), segment records
by a boolean selection per instance, and a cloud built by per-mask group/label assignment plus
per-point struct packing (as sensor_msgs_py.create_cloud).

    python bench/bench_overhead.py [--frames 60] [--masks 100] [--json out.json]
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", "97")

from sam_ovseg_ros.core import cloud, depth, fusion, instances, overlay  # noqa: E402
from sam_ovseg_ros.core.cloud import Intrinsics  # noqa: E402
from sam_ovseg_ros.ros import image_codec  # noqa: E402
from sam_ovseg_ros.tools.samplebag import load_frames  # noqa: E402


def synthetic_masks(rgb: np.ndarray, d: np.ndarray, m: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(masks, areas, inclusive boxes) with SAM-like count, sizes and overlaps."""
    h, w = d.shape
    yy, xx = np.mgrid[0:h, 0:w]
    masks = np.zeros((m, h, w), bool)
    for i in range(m):
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        area = float(np.exp(rng.uniform(np.log(100), np.log(0.4 * h * w))))
        ry = np.sqrt(area / np.pi) * rng.uniform(0.5, 2.0)
        rx = area / np.pi / ry
        ell = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        band = np.abs(d.astype(np.int32) - int(d[cy, cx])) < 250  # follow the depth like SAM on depth
        masks[i] = ell & band if (ell & band).sum() >= 50 else ell
    areas = masks.reshape(m, -1).sum(1)
    boxes = np.zeros((m, 4), np.int64)
    for i, sl in enumerate(masks):
        ys, xs = np.nonzero(sl)
        boxes[i] = (xs.min(), ys.min(), xs.max(), ys.max())
    return masks, areas, boxes


def label_map(rgb: np.ndarray, k: int = 20) -> np.ndarray:
    q = (rgb[..., 0] // 64) * 16 + (rgb[..., 1] // 64) * 4 + rgb[..., 2] // 64
    return (q % k).astype(np.int64)


# ------------------------------------------------------------------ naive references (original style)
def naive_fusion(labels: np.ndarray, masks: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """SegmentAnyRGBD predictor.py: per mask np.unique over the label map, paint largest first."""
    fused = np.zeros(labels.shape, np.int64) - 1
    classes = []
    for i in range(len(masks)):
        vals, cnt = np.unique(labels[masks[i]], return_counts=True)
        classes.append(vals[np.argmax(cnt)])
    for i in np.argsort(-areas, kind="stable"):
        fused[masks[i]] = classes[i]
    return fused


def naive_segments(inst: np.ndarray, n: int, dm: np.ndarray, k: Intrinsics) -> list[tuple]:
    """Per instance: a full-image selection for area, box and centroid (the per-mask loop style)."""
    v, u = np.mgrid[0:inst.shape[0], 0:inst.shape[1]]
    x, y = (u - k.cx) / k.fx * dm, (v - k.cy) / k.fy * dm
    out = []
    for i in range(1, n + 1):
        sel = inst == i
        ys, xs = np.nonzero(sel)
        ok = sel & np.isfinite(dm)
        out.append((int(sel.sum()), xs.min(), ys.min(), xs.max(), ys.max(),
                    x[ok].mean() if ok.any() else np.nan, y[ok].mean() if ok.any() else np.nan,
                    dm[ok].mean() if ok.any() else np.nan))
    return out


def naive_cloud(d: np.ndarray, rgb: np.ndarray, k: Intrinsics, masks, areas, classes) -> bytes:
    """SegmentAnyRGBD build_pcd style group/label per mask, then per-point struct packing (create_cloud style)."""
    h, w = d.shape
    v, u = np.mgrid[0:h, 0:w]
    z = d / 1000.0
    x, y = (u - k.cx) * z / k.fx, (v - k.cy) * z / k.fy
    group = np.zeros((h, w), np.int64)
    sem = np.zeros((h, w), np.int64)
    for i in np.argsort(-areas, kind="stable"):
        group[masks[i]] = i + 1
        sem[masks[i]] = classes[i] + 1
    buf = bytearray(24 * h * w)
    pack = struct.Struct("<ffffII").pack_into
    xf, yf, zf, gf, sf = x.ravel(), y.ravel(), z.ravel(), group.ravel(), sem.ravel()
    rgbf = rgb.reshape(-1, 3)
    for i in range(h * w):
        zz = zf[i]
        if zz == 0:
            xx = yy = zz = float("nan")
        else:
            xx, yy = xf[i], yf[i]
        r, g, b = rgbf[i]
        packed = struct.unpack("<f", struct.pack("<I", (int(r) << 16) | (int(g) << 8) | int(b)))[0]
        pack(buf, 24 * i, xx, yy, zz, packed, int(sf[i]), int(gf[i]))
    return bytes(buf)


SINK = r"""
import os, sys, rclpy
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image, PointCloud2
from visualization_msgs.msg import MarkerArray
from sam_ovseg_ros.msg import SegmentArray
rclpy.init(); n = rclpy.create_node('bench_sink'); q = QoSProfile(depth=5)
for t, name in ((Image, 'depth_colormap'), (Image, 'instances'), (Image, 'semantic'), (Image, 'overlay'),
                (PointCloud2, 'points'), (SegmentArray, 'segments'), (MarkerArray, 'markers')):
    n.create_subscription(t, '/bench/' + name, lambda m: None, q)
print('ready', flush=True)
try:
    rclpy.spin(n)
except BaseException:
    pass
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--masks", type=int, default=100)
    ap.add_argument("--naive-frames", type=int, default=3, help="the per-point naive cloud takes seconds")
    ap.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "overhead.json")
    a = ap.parse_args()

    import rclpy
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import Image, PointCloud2
    from std_msgs.msg import Header
    from visualization_msgs.msg import MarkerArray

    from sam_ovseg_ros.msg import SegmentArray
    from sam_ovseg_ros.ros import messages

    rng = np.random.default_rng(0)
    frames = []
    for _, rgb, d, kk in load_frames():
        masks, areas, boxes = synthetic_masks(rgb, d, a.masks, rng)
        cmsg = messages.image(rgb, "rgb8", Header(frame_id="cam"))
        dmsg = messages.image(d, "16UC1", Header(frame_id="cam"))
        frames.append((cmsg, dmsg, Intrinsics.from_k(kk, 640, 480), masks, areas, boxes, label_map(rgb)))

    sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True, cwd=REPO)
    atexit.register(sink.kill)  # also when a stage raises
    sink.stdout.readline()
    rclpy.init()
    node = rclpy.create_node("bench_pub")
    q = QoSProfile(depth=5)
    pubs = {name: node.create_publisher(t, f"/bench/{name}", q) for t, name in (
        (Image, "depth_colormap"), (Image, "instances"), (Image, "semantic"), (Image, "overlay"),
        (PointCloud2, "points"), (SegmentArray, "segments"), (MarkerArray, "markers"))}
    end = time.monotonic() + 15
    while time.monotonic() < end and any(p.get_subscription_count() == 0 for p in pubs.values()):
        time.sleep(0.05)

    bp = cloud.Backprojector()
    pool = messages.MessagePool()  # as the node's publisher thread: segments and markers refilled
    names = ["wall%d" % i for i in range(20)]
    times: dict[str, list[float]] = {}
    cur: dict[str, float] = {}

    def timed(stage, fn):
        t0 = time.perf_counter()
        r = fn()
        cur[stage] = cur.get(stage, 0.0) + time.perf_counter() - t0
        return r

    depth.colormap_lut("inferno")

    def stages(i: int) -> dict:
        """Every stage of frame i, timed into ``cur``; returns what the publisher needs."""
        cmsg, dmsg, k, masks, areas, boxes, labels = frames[i % len(frames)]
        rgb = timed("decode", lambda: image_codec.decode_color(image_codec.RawImage.from_msg(cmsg), 1 << 24))
        dep = timed("decode", lambda: image_codec.decode_depth(image_codec.RawImage.from_msg(dmsg), 1 << 24))
        dm = timed("depth", lambda: depth.to_metres(dep, 0.001))
        dc = timed("depth", lambda: depth.render(dep, dm, "original", "inferno", 0.001, 0.3, 5.0))
        runs = timed("instances", lambda: instances.mask_runs(masks, boxes))  # as the pipeline: once per frame
        inst, order = timed("instances", lambda: instances.masks_to_instances(masks, areas, boxes, runs))
        cls, share = timed("fusion", lambda: fusion.vote(labels, masks, 20, boxes, order, runs))
        sem = timed("fusion", lambda: fusion.semantic_image(inst, cls))
        segs = timed("segments", lambda: instances.segments_from_instances(
            instances.measure(inst, len(order), boxes[order], dm, bp.rays(k)),
            np.ones(len(order), np.float32), cls, share, names))
        pts = timed("cloud", lambda: cloud.build_points(bp, dm, rgb, k, sem, inst, messages.message_array))
        ov = timed("overlay", lambda: overlay.draw(rgb, inst, segs))
        mk = timed("markers", lambda: pool.markers(segs, cmsg.header, 1.0, 0.08, "bench"))
        return dict(hdr=cmsg.header, dc=dc, inst=inst, sem=sem, ov=ov, pts=pts, segs=segs, mk=mk)

    def keep(into: dict, i: int) -> None:
        if i >= 3:  # warm-up frames do not count
            for stage, sec in cur.items():
                into.setdefault(stage, []).append(sec)
        cur.clear()

    # pass 1: the stages alone (what they cost; the targets)
    for i in range(a.frames + 3):
        stages(i)
        keep(times, i)
    # pass 2: the same, each frame published to the subscriber process before the next, next to a bare
    # publish of prebuilt messages of the same sizes (the middleware keeps working after publish()
    # returns, on the same 2 cores, so stages run slower here: reported as "while publishing")
    loaded: dict[str, list[float]] = {}
    for i in range(a.frames + 3):
        o = stages(i)
        built = {}

        def publish():
            built["depth_colormap"] = messages.image(o["dc"], "rgb8", o["hdr"])
            built["instances"] = messages.image(o["inst"], "16UC1", o["hdr"])
            built["semantic"] = messages.image(o["sem"], "16UC1", o["hdr"])
            built["overlay"] = messages.image(o["ov"], "rgb8", o["hdr"])
            built["points"] = messages.point_cloud(o["pts"], o["hdr"])
            built["segments"] = pool.segment_array(o["segs"], o["hdr"])
            for name, msg in built.items():
                pubs[name].publish(msg)
            pubs["markers"].publish(o["mk"])
        def bare():  # the reference: prebuilt messages of the same sizes (frame 0's), only publish() is timed
            timed("bare_publish", lambda: [pubs[name].publish(msg) for name, msg in bare_msgs.items()])

        if i % 2:  # alternate which goes first: the second publishes while the sink still takes the first
            bare()
        timed("publish", publish)
        if i == 0:
            bare_msgs = dict(built, markers=o["mk"])
        if i % 2 == 0:
            bare()
        keep(loaded, i)
    for name in ("publish", "bare_publish"):
        times[name] = loaded.pop(name)

    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    n = len(times["decode"])

    def total(stages, src=times) -> float:
        return statistics.median([sum(src[s_][j] for s_ in stages) for j in range(n)]) * 1000

    machine = ("decode", "depth", "instances", "fusion", "segments", "cloud")
    human = ("overlay", "markers")

    # naive references on the same data
    naive_f, ours_f, naive_s, ours_s, naive_c, ours_c = [], [], [], [], [], []
    for j in range(a.naive_frames):
        cmsg, dmsg, k, masks, areas, boxes, labels = frames[j % len(frames)]
        rgb = image_codec.decode_color(image_codec.RawImage.from_msg(cmsg), 1 << 24)
        dep = image_codec.decode_depth(image_codec.RawImage.from_msg(dmsg), 1 << 24)
        dm = depth.to_metres(dep, 0.001)
        t0 = time.perf_counter()
        fused = naive_fusion(labels, masks, areas)
        naive_f.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        runs = instances.mask_runs(masks, boxes)
        inst, order = instances.masks_to_instances(masks, areas, boxes, runs)
        cls, share = fusion.vote(labels, masks, 20, boxes, order, runs)
        sem = fusion.semantic_image(inst, cls)
        ours_f.append(time.perf_counter() - t0)
        assert np.array_equal(np.where(inst > 0, sem.astype(np.int64) - 1, -1), fused)  # same answer
        t0 = time.perf_counter()
        naive = naive_segments(inst, len(order), dm, k)
        naive_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        segs = instances.segments_from_instances(
            instances.measure(inst, len(order), boxes[order], dm, bp.rays(k)),
            np.ones(len(order), np.float32), cls, share, names)
        ours_s.append(time.perf_counter() - t0)
        assert [(s_.area, s_.bbox[0], s_.bbox[1]) for s_ in segs] == [r[:3] for r in naive]  # same answer
        classes = np.zeros(len(masks), np.int64)
        classes[order] = cls
        t0 = time.perf_counter()
        naive_cloud(dep, rgb, k, masks, areas, classes)
        naive_c.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        pts = cloud.build_points(bp, dm, rgb, k, sem, inst)
        pts.tobytes()
        ours_c.append(time.perf_counter() - t0)

    # cloud options: bytes per frame and build time
    from sam_ovseg_ros.core.config import NodeConfig
    from sam_ovseg_ros.core.frame_pipeline import Pipeline
    from sam_ovseg_ros.core.frame_types import Frame

    cmsg, dmsg, k, masks, areas, boxes, labels = frames[0]
    fr = Frame(image_codec.decode_color(image_codec.RawImage.from_msg(cmsg), 1 << 24),
               image_codec.decode_depth(image_codec.RawImage.from_msg(dmsg), 1 << 24), k)
    options = {}
    for label, org, dec in (("organized (default)", True, 1), ("cloud.decimation 2", True, 2),
                            ("cloud.decimation 4", True, 4), ("cloud.organized false", False, 1)):
        cfg = NodeConfig()
        cfg.cloud.organized, cfg.cloud.decimation = org, dec
        p = Pipeline(alloc=messages.message_array)  # as the node: memory its message owns
        size = int(p.process(fr, cfg).points.nbytes)
        runs = [p.process(fr, cfg).timings["cloud"] for _ in range(9)][2:]  # results dropped as the node does
        options[label] = {"bytes": size, "cloud_ms": statistics.median(runs) * 1000}

    # compressed inputs (transport: compressed): what decoding costs in place of the raw "decode" stage
    from sam_ovseg_ros.ros import compressed

    codecs = {"jpeg colour (q 95)": lambda f: compressed.encode_color(f[1], "jpeg", 95),
              "png colour": lambda f: compressed.encode_color(f[1], "png"),
              "compressedDepth 16UC1 png": lambda f: compressed.encode_depth(f[2])}
    decode_ms, sizes = {}, {}
    for label, enc in codecs.items():
        blobs = [enc(lf) for lf in load_frames()]
        dec = compressed.decode_depth if "Depth" in label else compressed.decode_color
        runs = []
        for j in range(max(9, a.frames // 4)):
            fmt, data = blobs[j % len(blobs)]
            t0 = time.perf_counter()
            dec(fmt, data, 1 << 24)
            runs.append(time.perf_counter() - t0)
        decode_ms[label] = statistics.median(runs[2:]) * 1000
        sizes[label] = statistics.median(len(b[1]) for b in blobs)

    naive_ifs = statistics.median(naive_f) + statistics.median(naive_s)
    ours_ifs = statistics.median(ours_f) + statistics.median(ours_s)
    res = {
        "machine": f"{os.cpu_count()} CPU cores, {os.uname().machine}, Python {sys.version.split()[0]}",
        "frames": n, "masks_per_frame": a.masks, "stage_median_ms": med,
        "machine_outputs_ms": total(machine), "human_outputs_ms": total(human),
        "machine_outputs_while_publishing_ms": total(machine, loaded),
        "human_outputs_while_publishing_ms": total(human, loaded),
        "publish_ms": med["publish"], "bare_publish_ms": med["bare_publish"],
        "publish_ratio": med["publish"] / med["bare_publish"],
        "non_model_total_ms": total([s_ for s_ in times if s_ != "bare_publish"]),
        "naive_fusion_ms": statistics.median(naive_f) * 1000, "ours_fusion_ms": statistics.median(ours_f) * 1000,
        "naive_segments_ms": statistics.median(naive_s) * 1000, "ours_segments_ms": statistics.median(ours_s) * 1000,
        "naive_cloud_ms": statistics.median(naive_c) * 1000, "ours_cloud_ms": statistics.median(ours_c) * 1000,
        "instances_fusion_segments_ratio": naive_ifs / ours_ifs, "cloud_options": options,
        "compressed_decode_ms": decode_ms, "compressed_bytes": sizes,
    }
    res["cloud_ratio"] = res["naive_cloud_ms"] / res["ours_cloud_ms"]
    print(f"{res['machine']}; {n} frames of 640x480, {a.masks} masks each (medians, ms)")
    for k_, v in med.items():
        print(f"  {k_:13s} {v:8.2f}")
    print(f"  machine outputs ({' + '.join(machine)}) {res['machine_outputs_ms']:.2f} (target <= 5)")
    print(f"  human outputs (overlay + markers) {res['human_outputs_ms']:.2f} (target <= 3 more)")
    print(f"  while publishing the previous frame: machine {res['machine_outputs_while_publishing_ms']:.2f}, "
          f"human {res['human_outputs_while_publishing_ms']:.2f}")
    print(f"  publish {res['publish_ms']:.2f} vs bare rclpy {res['bare_publish_ms']:.2f} -> "
          f"{res['publish_ratio']:.2f} (target <= 1.2)")
    print(f"  instances+fusion+segments naive {1000 * naive_ifs:.1f} vs ours {1000 * ours_ifs:.1f} -> "
          f"{res['instances_fusion_segments_ratio']:.1f}x (target >= 20)")
    print(f"  cloud   naive {res['naive_cloud_ms']:.1f} vs ours {res['ours_cloud_ms']:.1f}  -> {res['cloud_ratio']:.0f}x")
    for label, ms in decode_ms.items():
        print(f"  decode {label:26s} {ms:6.2f} ms ({sizes[label] / 1e3:.0f} kB/frame)")
    for label, o in options.items():
        print(f"  cloud {label:22s} {o['bytes'] / 1e6:6.2f} MB/frame, built in {o['cloud_ms']:.2f} ms")
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(res, indent=1))
    node.destroy_node()
    rclpy.try_shutdown()
    sink.terminate()
    try:
        sink.wait(timeout=10)
    except subprocess.TimeoutExpired:  # an rclpy process may hang at exit after its shutdown
        sink.kill()
        sink.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
