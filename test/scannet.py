"""Real ScanNet frames (test/data/) as numpy arrays and the K they were captured with."""
from pathlib import Path

import numpy as np
from PIL import Image

SAMPLES = Path(__file__).resolve().parent / "data" / "scannet_scene0000_00"
FRAMES = ("1660", "2760", "5560")


def load(frame: str = "1660") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rgb uint8 HxWx3, depth uint16 HxW in mm, K 3x3 float64)."""
    rgb = np.asarray(Image.open(SAMPLES / "color" / f"{frame}.jpg").convert("RGB"))
    depth = np.asarray(Image.open(SAMPLES / "depth" / f"{frame}.png")).astype(np.uint16)
    k = np.loadtxt(SAMPLES / "intrinsics" / "intrinsic_depth.txt")[:3, :3]
    return rgb, depth, k


def segmenter_inputs(frames=("1660", "5560")) -> dict[str, np.ndarray]:
    """What SAM-like segmenters see on these frames: the original depth rendering and the colour image."""
    from sam_ovseg_ros.core import depth

    out = {}
    for f in frames:
        rgb, d, _ = load(f)
        out[f + "_depth"] = depth.render(d, depth.to_metres(d, 0.001), "original", "inferno", 0.001, 0.3, 5.0)
        out[f + "_rgb"] = rgb
    return out
