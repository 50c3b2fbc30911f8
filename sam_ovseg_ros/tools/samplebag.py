"""Write the sample RGB-D recordings: real frames in test/data/ as rosbag2 with RealSense topic names.

Color rgb8, aligned depth 16UC1 (mm, 0 = invalid) and camera_info, all stamped alike, as
``realsense2_camera`` with ``align_depth.enable:=true`` publishes them. Posed frames (7-Scenes) add
the camera pose as a robot's TF tree: ``map -> odom`` and ``odom -> base_link`` on ``/tf`` at every
frame, ``base_link -> camera_color_optical_frame`` on ``/tf_static``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

COLOR = "/camera/camera/color/image_raw"
DEPTH = "/camera/camera/aligned_depth_to_color/image_raw"
INFO = "/camera/camera/color/camera_info"
FRAME_ID = "camera_color_optical_frame"
SAMPLES = Path(__file__).resolve().parents[2] / "test" / "data" / "scannet_scene0000_00"
SEVEN_SCENES = Path(__file__).resolve().parents[2] / "test" / "data" / "7scenes_redkitchen"
TF, TF_STATIC = "/tf", "/tf_static"
MAP, ODOM, BASE = "map", "odom", "base_link"
# a fixed map -> odom offset and a camera mounted on the robot (optical frame: z forward, x right, y down)
MAP_ODOM = np.array([[0.0, -1, 0, 1.5], [1, 0, 0, -0.5], [0, 0, 1, 0.1], [0, 0, 0, 1]])
BASE_CAMERA = np.array([[0.0, 0, 1, 0.2], [-1, 0, 0, 0.0], [0, -1, 0, 1.1], [0, 0, 0, 1]])


def load_posed_frames(folder: Path = SEVEN_SCENES) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(name, rgb, depth mm, K, 4x4 camera-to-world pose) of every 7-Scenes frame in ``folder``."""
    from PIL import Image

    k = np.loadtxt(folder / "camera-intrinsics.txt")
    out = []
    for f in sorted(folder.glob("frame-*.color.jpg")):
        stem = f.name.split(".")[0]
        rgb = np.asarray(Image.open(f).convert("RGB"))
        depth = np.asarray(Image.open(folder / f"{stem}.depth.png")).astype(np.uint16)
        depth[depth == 65535] = 0  # raw 7-Scenes marks invalid depth with 65535
        out.append((stem, rgb, depth, k, np.loadtxt(folder / f"{stem}.pose.txt")))
    return out


def tf_links(pose: np.ndarray) -> tuple[list, list]:
    """(dynamic, static) (parent, child, 4x4) links whose chain map -> camera composes to ``pose``."""
    odom_base = np.linalg.inv(MAP_ODOM) @ pose @ np.linalg.inv(BASE_CAMERA)
    return [(MAP, ODOM, MAP_ODOM), (ODOM, BASE, odom_base)], [(BASE, FRAME_ID, BASE_CAMERA)]


def matrix_to_tq(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4x4 -> (translation, quaternion x y z w)."""
    r = m[:3, :3]
    w = np.sqrt(max(0.0, 1 + r[0, 0] + r[1, 1] + r[2, 2])) / 2
    x = np.copysign(np.sqrt(max(0.0, 1 + r[0, 0] - r[1, 1] - r[2, 2])) / 2, r[2, 1] - r[1, 2])
    y = np.copysign(np.sqrt(max(0.0, 1 - r[0, 0] + r[1, 1] - r[2, 2])) / 2, r[0, 2] - r[2, 0])
    z = np.copysign(np.sqrt(max(0.0, 1 - r[0, 0] - r[1, 1] + r[2, 2])) / 2, r[1, 0] - r[0, 1])
    return m[:3, 3].copy(), np.array([x, y, z, w])


def load_frames(folder: Path = SAMPLES) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    from PIL import Image

    k = np.loadtxt(folder / "intrinsics" / "intrinsic_depth.txt")[:3, :3]
    out = []
    for f in sorted((folder / "color").glob("*.jpg"), key=lambda p: int(p.stem)):
        rgb = np.asarray(Image.open(f).convert("RGB"))
        depth = np.asarray(Image.open(folder / "depth" / f"{f.stem}.png")).astype(np.uint16)
        out.append((f.stem, rgb, depth, k))
    return out


def write(out: Path, frames=None, rate_hz: float = 2.0, repeat: int = 1, start_s: int = 1_700_000_000,
          storage: str = "sqlite3", transport: str = "raw") -> Path:
    """A rosbag2 of the frames; ``transport="compressed"`` writes the images as image_transport's
    ``.../compressed`` (jpeg) and ``.../compressedDepth`` (png) sensor_msgs/CompressedImage topics."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    Image, CameraInfo = ts.types["sensor_msgs/msg/Image"], ts.types["sensor_msgs/msg/CameraInfo"]
    Header, Time = ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]
    ROI = ts.types["sensor_msgs/msg/RegionOfInterest"]
    frames = frames if frames is not None else load_frames()
    posed = len(frames[0]) == 5
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    Compressed = ts.types["sensor_msgs/msg/CompressedImage"]
    packed = transport == "compressed"
    with Writer(out, version=8, storage_plugin=plugin) as w:
        if packed:
            cc = w.add_connection(COLOR + "/compressed", Compressed.__msgtype__, typestore=ts)
            cd = w.add_connection(DEPTH + "/compressedDepth", Compressed.__msgtype__, typestore=ts)
        else:
            cc = w.add_connection(COLOR, Image.__msgtype__, typestore=ts)
            cd = w.add_connection(DEPTH, Image.__msgtype__, typestore=ts)
        ci = w.add_connection(INFO, CameraInfo.__msgtype__, typestore=ts)
        if posed:
            TFMessage = ts.types["tf2_msgs/msg/TFMessage"]
            ctf = w.add_connection(TF, TFMessage.__msgtype__, typestore=ts)
            cst = w.add_connection(TF_STATIC, TFMessage.__msgtype__, typestore=ts)  # the player latches it
        i = 0
        for _ in range(repeat):
            for _, rgb, depth, k, *pose in frames:
                t = start_s * 1_000_000_000 + int(i * 1e9 / rate_hz)
                hdr = Header(stamp=Time(sec=t // 1_000_000_000, nanosec=t % 1_000_000_000), frame_id=FRAME_ID)
                if posed:
                    dyn, static = tf_links(pose[0])
                    if i == 0:
                        w.write(cst, t - 1000, ts.serialize_cdr(_tf_message(ts, static, hdr), TFMessage.__msgtype__))
                    w.write(ctf, t - 500, ts.serialize_cdr(_tf_message(ts, dyn, hdr), TFMessage.__msgtype__))
                h, wd = depth.shape
                info = CameraInfo(header=hdr, height=h, width=wd, distortion_model="plumb_bob", d=np.zeros(5),
                                  k=k.ravel().astype(np.float64), r=np.eye(3).ravel(),
                                  p=np.hstack([k, np.zeros((3, 1))]).ravel(), binning_x=0, binning_y=0,
                                  roi=ROI(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
                dimg = Image(header=hdr, height=h, width=wd, encoding="16UC1", is_bigendian=0, step=wd * 2,
                             data=depth.astype("<u2").view(np.uint8).ravel())
                cimg = Image(header=hdr, height=h, width=wd, encoding="rgb8", is_bigendian=0, step=wd * 3,
                             data=np.ascontiguousarray(rgb).ravel())
                w.write(ci, t, ts.serialize_cdr(info, CameraInfo.__msgtype__))
                if packed:
                    from sam_ovseg_ros.ros import compressed

                    for conn, dt, (fmt, data) in ((cd, 1000, compressed.encode_depth(depth)),
                                                  (cc, 2000, compressed.encode_color(rgb, "jpeg"))):
                        msg = Compressed(header=hdr, format=fmt, data=np.frombuffer(data, np.uint8))
                        w.write(conn, t + dt, ts.serialize_cdr(msg, Compressed.__msgtype__))
                else:
                    w.write(cd, t + 1000, ts.serialize_cdr(dimg, Image.__msgtype__))
                    w.write(cc, t + 2000, ts.serialize_cdr(cimg, Image.__msgtype__))
                i += 1
    return out


def _tf_message(ts, links, hdr):
    TFMessage = ts.types["tf2_msgs/msg/TFMessage"]
    TS, Tr = ts.types["geometry_msgs/msg/TransformStamped"], ts.types["geometry_msgs/msg/Transform"]
    V3, Q = ts.types["geometry_msgs/msg/Vector3"], ts.types["geometry_msgs/msg/Quaternion"]
    Header = ts.types["std_msgs/msg/Header"]
    out = []
    for parent, child, m in links:
        t, q = matrix_to_tq(m)
        out.append(TS(header=Header(stamp=hdr.stamp, frame_id=parent), child_frame_id=child,
                      transform=Tr(translation=V3(x=t[0], y=t[1], z=t[2]), rotation=Q(x=q[0], y=q[1], z=q[2], w=q[3]))))
    return TFMessage(transforms=out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--rate", type=float, default=2.0)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--storage", choices=("sqlite3", "mcap"), default="sqlite3")
    a = p.parse_args(argv)
    print(write(a.out, rate_hz=a.rate, repeat=a.repeat, storage=a.storage))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
