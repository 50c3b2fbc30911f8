"""Write the sample RGB-D recording: the ScanNet frames in test/data/ as a rosbag2 with RealSense topic names.

Color rgb8, aligned depth 16UC1 (mm, 0 = invalid) and camera_info, all stamped alike, as
``realsense2_camera`` with ``align_depth.enable:=true`` publishes them.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

COLOR = "/camera/camera/color/image_raw"
DEPTH = "/camera/camera/aligned_depth_to_color/image_raw"
INFO = "/camera/camera/color/camera_info"
FRAME_ID = "camera_color_optical_frame"
SAMPLES = Path(__file__).resolve().parents[1] / "test" / "data" / "scannet_scene0000_00"


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
          storage: str = "sqlite3") -> Path:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    Image, CameraInfo = ts.types["sensor_msgs/msg/Image"], ts.types["sensor_msgs/msg/CameraInfo"]
    Header, Time = ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]
    ROI = ts.types["sensor_msgs/msg/RegionOfInterest"]
    frames = frames if frames is not None else load_frames()
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(out, version=8, storage_plugin=plugin) as w:
        cc = w.add_connection(COLOR, Image.__msgtype__, typestore=ts)
        cd = w.add_connection(DEPTH, Image.__msgtype__, typestore=ts)
        ci = w.add_connection(INFO, CameraInfo.__msgtype__, typestore=ts)
        i = 0
        for _ in range(repeat):
            for _, rgb, depth, k in frames:
                t = start_s * 1_000_000_000 + int(i * 1e9 / rate_hz)
                hdr = Header(stamp=Time(sec=t // 1_000_000_000, nanosec=t % 1_000_000_000), frame_id=FRAME_ID)
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
                w.write(cd, t + 1000, ts.serialize_cdr(dimg, Image.__msgtype__))
                w.write(cc, t + 2000, ts.serialize_cdr(cimg, Image.__msgtype__))
                i += 1
    return out


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
