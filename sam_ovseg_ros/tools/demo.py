"""``make demo``: the sample RGB-D recording through the node, outputs into out/.

1. Real checkpoints from the weights folder ($SAM_OVSEG_WEIGHTS, default ~/.cache/sam_ovseg_ros): OVSeg
   (Google Drive, through its confirm page) and SAM ViT-B are downloaded with progress, resume and the
   md5 check when missing and the network allows. Without both the tiny profile runs, and out/ says
   loudly that weights are random.
2. The ScanNet sample frames become a rosbag2 with RealSense topic names (build/sample_bag).
3. sam_ovseg_node runs as its own process; sam_ovseg_replay plays the bag into it over DDS
   (loopback only) and records every output topic to out/bag.
4. From the recorded bag: PNGs of overlay, depth colormap, instance/semantic views, a PLY of the
   semantic cloud, and an RViz-like picture (overlay + cloud views) per frame.
5. Mapping: the posed 7-Scenes frames with their poses on /tf (map -> odom -> base_link -> camera)
   through a second node; its ~/map/save service writes out/map/map.ply and out/map/objects.json,
   rendered to out/map_view.png (the accumulated map by colour and by object, boxes and names).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

NS = "demo"
NS_MAP = "demo_map"
WARNING = ("WARNING: the real SAM / OVSeg checkpoints were not found, so this demo ran the 'tiny' profile: "
           "models with RANDOM weights. Instances and class labels in out/ are MEANINGLESS; they only show "
           "that the pipeline, topics and files work. Put ovseg_swinbase_vitL14_ft_mpt.pth and a SAM checkpoint "
           "(sam_vit_b_01ec64.pth is enough) into {folder} (see README, 'Weights') and run make demo again.")


def choose_profile(log) -> tuple[str, dict]:
    """The real profile when OVSeg and a SAM checkpoint are (or can be made) present, else ``tiny`` at once.

    The download is kept as small as the real pipeline allows: OVSeg's only released checkpoint (Swin-B +
    CLIP ViT-L/14, ~2 GB, Google Drive) and the smallest SAM, ViT-B (358 MB), unless a larger SAM is already
    in the folder. OVSeg comes first: when Drive refuses (offline, quota), no SAM download is started for a
    run that would fall back to the tiny models anyway. ``SAM_OVSEG_NO_DOWNLOAD=1``: never download.
    """
    from sam_ovseg_ros.core.config import default_weights_dir
    from sam_ovseg_ros.core.weights import KNOWN, OVSEG_FILE, SAM_FILES, describe, fetch

    folder = default_weights_dir()
    sam = next((m for m in ("vit_h", "vit_l", "vit_b") if (folder / SAM_FILES[m]).is_file()), "vit_b")
    needed = [folder / OVSEG_FILE, folder / SAM_FILES[sam]]
    missing = [p for p in needed if not p.is_file()]
    offline = os.environ.get("SAM_OVSEG_NO_DOWNLOAD") == "1"
    for p in missing:
        if offline or fetch(KNOWN[p.name], folder, log) is None:
            log(f"missing checkpoint {p}. {describe(p.name)}")
            log(WARNING.format(folder=folder))
            return "tiny", {"profile": "tiny", "weights_dir": str(Path("build") / "weights")}
    return "default", {"profile": "default", "sam.model_type": sam, "weights_dir": str(folder)}


def ros_env() -> dict:
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
    env.setdefault("ROS_DOMAIN_ID", "61")
    return env


def run(out: Path, rate: float, log) -> int:
    from sam_ovseg_ros.ros import topics
    from sam_ovseg_ros.tools import samplebag

    profile, params = choose_profile(log)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("bag",):
        shutil.rmtree(out / stale, ignore_errors=True)
    (out / "WARNING_RANDOM_WEIGHTS.txt").unlink(missing_ok=True)
    Path("build").mkdir(exist_ok=True)
    bag_in = Path("build") / "sample_bag"
    shutil.rmtree(bag_in, ignore_errors=True)
    samplebag.write(bag_in, rate_hz=rate)
    log(f"sample recording: {bag_in} (ScanNet scene0000_00, {len(samplebag.load_frames())} frames)")

    env = ros_env()
    # the sample frames have no poses: no map (nor its file in the user's ~/.ros) for this node
    node, node_log = start_node(NS, {**params, "map.enabled": "false"}, env, out / "node.log")
    try:
        recorded = [f"/{NS}/sam_ovseg/{t}" for t in topics.OUTPUTS]
        replay_cmd = [sys.executable, "-m", "sam_ovseg_ros.tools.replay", str(bag_in), "--wait", "600", "--settle", "2",
                      "--record", str(out / "bag"), "--topics", *recorded, "--linger", "60" if profile == "tiny" else "300",
                      "--expect", str(len(samplebag.load_frames()))]
        t0 = time.monotonic()
        rc = subprocess.run(replay_cmd, env=env, timeout=1800).returncode
        log(f"replay finished in {time.monotonic() - t0:.0f} s (exit {rc})")
    finally:
        stop_node(node, node_log)
    if rc != 0:
        return rc
    n = export(out / "bag", out, log)
    rc = run_mapping(out, rate, params, env, log)
    if rc != 0:
        return rc
    if profile == "tiny":
        (out / "WARNING_RANDOM_WEIGHTS.txt").write_text(WARNING.format(folder=choose_folder()) + "\n")
    log(f"out/: {n} frames exported; see out/README.txt")
    return 0 if n > 0 else 1


def start_node(ns: str, params: dict, env: dict, log_path: Path) -> tuple[subprocess.Popen, object]:
    from sam_ovseg_ros.tools import samplebag

    cmd = [sys.executable, "-m", "sam_ovseg_ros.ros.node", "--ros-args", "-r", f"__ns:=/{ns}",
           "-r", f"color/image:={samplebag.COLOR}", "-r", f"depth/image:={samplebag.DEPTH}",
           "-r", f"color/camera_info:={samplebag.INFO}", "-p", "diagnostics.period:=2.0"]
    for k, v in params.items():
        cmd += ["-p", f"{k}:={v}"]
    log_file = open(log_path, "w")
    return subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env), log_file


def stop_node(node: subprocess.Popen, log_file) -> None:
    node.send_signal(2)
    try:
        node.wait(timeout=30)
    except subprocess.TimeoutExpired:
        node.kill()
    log_file.close()


def run_mapping(out: Path, rate: float, params: dict, env: dict, log) -> int:
    """The posed 7-Scenes frames through a node with the map on; the map saved through ~/map/save."""
    from sam_ovseg_ros.tools import samplebag

    frames = samplebag.load_posed_frames()
    bag_in = Path("build") / "mapping_bag"
    shutil.rmtree(bag_in, ignore_errors=True)
    samplebag.write(bag_in, frames=frames, rate_hz=rate)
    log(f"mapping recording: {bag_in} (7-Scenes redkitchen, {len(frames)} frames, poses on /tf)")
    map_dir = (out / "map").resolve()
    shutil.rmtree(map_dir, ignore_errors=True)
    node, log_file = start_node(NS_MAP, {**params, "map.save_dir": str(map_dir)}, env, out / "node_map.log")
    try:
        segments = f"/{NS_MAP}/sam_ovseg/segments"
        replay_cmd = [sys.executable, "-m", "sam_ovseg_ros.tools.replay", str(bag_in), "--wait", "600", "--settle", "2",
                      "--record", str(out / "map_bag"), "--topics", segments, "--linger", "120",
                      "--expect", str(len(frames))]
        shutil.rmtree(out / "map_bag", ignore_errors=True)
        rc = subprocess.run(replay_cmd, env=env, timeout=1800).returncode
        if rc == 0:
            saved = call_trigger(f"/{NS_MAP}/sam_ovseg/map/save", env)
            log(f"~/map/save: {saved}")
    finally:
        stop_node(node, log_file)
    if rc != 0 or not (map_dir / "map.ply").is_file():
        log("mapping run failed: see out/node_map.log")
        return rc or 1
    n_obj = render_map(map_dir, frames[0][4], out / "map_view.png")
    log(f"map: out/map/map.ply, out/map/objects.json ({n_obj} objects), out/map_view.png")
    return 0


def call_trigger(service: str, env: dict) -> str:
    """Call a std_srvs/Trigger service from a short-lived process (DDS on loopback, like the node)."""
    code = ("import sys, rclpy; from std_srvs.srv import Trigger; rclpy.init(); n = rclpy.create_node('demo_call');"
            f"c = n.create_client(Trigger, '{service}'); assert c.wait_for_service(timeout_sec=30);"
            "f = c.call_async(Trigger.Request()); rclpy.spin_until_future_complete(n, f, timeout_sec=60);"
            "r = f.result(); print(r.message); sys.exit(0 if r.success else 1)")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    return res.stdout.strip() or res.stderr.strip()[-500:]


def render_map(map_dir: Path, first_pose: np.ndarray, path: Path) -> int:
    """The saved map from above and behind the first camera: by colour, and by object with boxes and names."""
    import json

    import cv2
    from PIL import Image

    from sam_ovseg_ros.core.overlay import colors_of
    from sam_ovseg_ros.mapping.mapper import PLY_DTYPE
    from sam_ovseg_ros.tools import render

    raw = (map_dir / "map.ply").read_bytes()
    body = raw[raw.index(b"end_header\n") + len(b"end_header\n"):]
    v = np.frombuffer(body, PLY_DTYPE)
    objects = json.loads((map_dir / "objects.json").read_text())["objects"]
    to_cam = np.linalg.inv(first_pose)  # map -> first camera's optical frame, the frame orbit_view expects
    xyz = np.stack([v["x"], v["y"], v["z"]], 1).astype(np.float64) @ to_cam[:3, :3].T + to_cam[:3, 3]
    rgb = np.stack([v["red"], v["green"], v["blue"]], 1)
    by_obj = colors_of(v["object"]).astype(np.uint8)
    by_obj[v["object"] == 0] = 90
    view = dict(size=(800, 600), elevation_deg=50.0, azimuth_deg=-20.0, distance_scale=2.0)
    a, b = render.orbit_view(xyz, rgb, splat=5, **view), render.orbit_view(xyz, by_obj, splat=5, **view)
    for o in objects:  # the class name at each object's centroid, projected like the points
        c = np.array(o["centroid"]) @ to_cam[:3, :3].T + to_cam[:3, 3]
        uv = render.project(xyz, c[None], **view)
        if uv is not None:
            cv2.putText(b, f"{o['class_name'] or '?'} #{o['id']}", uv, cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                        (255, 255, 255), 1, cv2.LINE_AA)
    panel = np.concatenate([render.caption(a, "~/map/points (rgb)"),
                            render.caption(b, f"~/map/points (object), {len(objects)} objects")], axis=1)
    Image.fromarray(panel).save(path)
    return len(objects)


def choose_folder() -> Path:
    from sam_ovseg_ros.core.config import default_weights_dir

    return default_weights_dir()


def export(bag: Path, out: Path, log) -> int:
    """PNGs, PLY and RViz-like views of every recorded frame."""
    from PIL import Image
    from rosbags.highlevel import AnyReader

    from sam_ovseg_ros.core.cloud import POINT_DTYPE
    from sam_ovseg_ros.core.overlay import colors_of
    from sam_ovseg_ros.ros.image_codec import ENCODINGS, RawImage, decode
    from sam_ovseg_ros.tools import bagio, render

    frames: dict[int, dict] = {}
    vocab = []
    with AnyReader([bag], default_typestore=bagio.typestore()) as reader:
        for conn, _, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            name = conn.topic.rsplit("/", 1)[-1]
            if name == "vocabulary":
                vocab = list(msg.class_names)
                continue
            if name == "markers":
                continue
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            if name == "points":
                value = np.frombuffer(msg.data.tobytes(), POINT_DTYPE).reshape(msg.height, msg.width)
            elif name == "segments":
                value = msg.segments
            else:
                value = np.array(decode(RawImage(msg.encoding, msg.height, msg.width, msg.step,
                                                 bool(msg.is_bigendian), msg.data.tobytes()), tuple(ENCODINGS), 1 << 30))
            frames.setdefault(stamp, {})[name] = value
    complete = [s for s in sorted(frames) if {"overlay", "depth_colormap", "points", "instances", "semantic",
                                              "segments"} <= set(frames[s])]
    lines = []
    for i, stamp in enumerate(complete):
        f = frames[stamp]
        tag = f"frame{i:02d}"
        Image.fromarray(f["overlay"]).save(out / f"{tag}_overlay.png")
        Image.fromarray(f["depth_colormap"]).save(out / f"{tag}_depth_colormap.png")
        Image.fromarray(colors_of(f["instances"]).astype(np.uint8)).save(out / f"{tag}_instances.png")
        Image.fromarray(colors_of(f["semantic"]).astype(np.uint8)).save(out / f"{tag}_semantic.png")
        npts = render.write_ply(out / f"{tag}_semantic_cloud.ply", f["points"])
        color_view, label_view = render.cloud_views(f["points"])
        panel = np.concatenate([render.caption(f["overlay"], "~/overlay"),
                                render.caption(color_view, "~/points (rgb)"),
                                render.caption(label_view, "~/points (label)")], axis=1)
        Image.fromarray(panel).save(out / f"{tag}_rviz_view.png")
        names = sorted({s.class_name for s in f["segments"] if s.class_name})
        lines.append(f"{tag}: stamp {stamp / 1e9:.3f} s, {len(f['segments'])} instances, {npts} cloud points, "
                     f"classes: {', '.join(names) or '-'}")
    summary = ["sam_ovseg_ros demo output", f"vocabulary ({len(vocab)}): {', '.join(vocab)}", *lines,
               "files: bag/ (rosbag2 of every output topic), frameNN_{overlay,depth_colormap,instances,semantic,"
               "rviz_view}.png, frameNN_semantic_cloud.ply, node.log; mapping: map/map.ply, map/objects.json, "
               "map_view.png, node_map.log"]
    (out / "README.txt").write_text("\n".join(summary) + "\n")
    for ln in lines:
        log(ln)
    return len(complete)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("out"))
    p.add_argument("--rate", type=float, default=0.5, help="frames per second of the sample recording")
    a = p.parse_args(argv)
    return run(a.out, a.rate, lambda s: print(f"[demo] {s}", flush=True))


if __name__ == "__main__":
    raise SystemExit(main())
