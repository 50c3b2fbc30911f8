"""sensor_msgs/CompressedImage as image_transport writes it <-> numpy (ROS-free, no cv_bridge).

Colour (``compressed`` transport): ``format`` is ``"<encoding>; jpeg compressed <bgr8|rgb8|mono8>"`` (or
``png``), or just ``"jpeg"`` / ``"png"`` from older publishers; ``data`` is the JPEG/PNG file.
Depth (``compressedDepth`` transport, github.com/ros-perception/image_transport_plugins,
compressed_depth_image_transport): ``format`` is ``"16UC1; compressedDepth png"`` or ``"32FC1; ..."``;
``data`` is a 12-byte config header (int32 format, float32 depthParam[2]) and a PNG. 16UC1 PNGs hold the
raw depth; 32FC1 PNGs hold quantised inverse depth q = A / d + B (uint16, 0 = invalid), so d = A / (q - B).

Sizes are read from the file header and checked against ``max_pixels`` before anything is decoded;
a truncated or corrupt file raises ImageDecodeError saying what is wrong.
"""
from __future__ import annotations

import io
import struct

import numpy as np

from sam_ovseg_ros.ros.image_codec import ImageDecodeError

DEPTH_HEADER = struct.Struct("<iff")  # compressionFormat (INV_DEPTH = 0), depthParam[0], depthParam[1]


def _open(data: bytes, what: str, max_pixels: int):
    from PIL import Image, UnidentifiedImageError

    if len(data) == 0:
        raise ImageDecodeError(f"{what}: empty data")
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageDecodeError(f"{what}: not a readable JPEG/PNG (unknown or damaged file header)") from None
    except OSError as exc:
        raise ImageDecodeError(f"{what}: not a readable JPEG/PNG ({exc})") from None
    w, h = img.size
    if w * h > max_pixels:
        raise ImageDecodeError(f"{what}: image {w}x{h} exceeds max_image_pixels={max_pixels}; refused")
    if w <= 0 or h <= 0:
        raise ImageDecodeError(f"{what}: empty image {w}x{h}")
    return img


def _load(img, mode: str | None, what: str) -> np.ndarray:
    try:
        img.load()  # truncated or corrupt streams fail here (PIL never pads a truncated file)
        return np.asarray(img.convert(mode) if mode and img.mode != mode else img)
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"{what}: corrupt or truncated {img.format or 'image'} data ({exc})") from None


def decode_color(fmt: str, data: bytes, max_pixels: int) -> np.ndarray:
    """H x W x 3 uint8 RGB of a ``compressed`` colour image (JPEG or PNG; any channel layout)."""
    body = fmt.split(";")[-1].strip().lower()
    if "compresseddepth" in body or not any(k in body for k in ("jpeg", "jpg", "png")):
        raise ImageDecodeError(f"color/image/compressed: format '{fmt}' is not a jpeg/png colour image")
    img = _open(bytes(data), "color/image/compressed", max_pixels)
    return _load(img, "RGB", "color/image/compressed")


def decode_depth(fmt: str, data: bytes, max_pixels: int) -> np.ndarray:
    """uint16 raw depth (16UC1/mono16) or float32 metres with NaN (32FC1) of a ``compressedDepth`` image."""
    what = "depth/image/compressedDepth"
    encoding, _, rest = fmt.partition(";")
    encoding, rest = encoding.strip(), rest.strip().lower()
    if encoding not in ("16UC1", "mono16", "32FC1"):
        raise ImageDecodeError(f"{what}: format '{fmt}': encoding '{encoding}' is not 16UC1, mono16 or 32FC1")
    if rest and rest not in ("compresseddepth", "compresseddepth png"):
        raise ImageDecodeError(f"{what}: format '{fmt}' is not supported (only 'compressedDepth png')")
    data = bytes(data)
    if data.startswith(b"\x89PNG"):
        raise ImageDecodeError(f"{what}: the {DEPTH_HEADER.size}-byte config header is missing (the data starts "
                               "with a PNG signature: a plain png, not compressedDepth)")
    if len(data) <= DEPTH_HEADER.size:
        raise ImageDecodeError(f"{what}: {len(data)} bytes, not even the {DEPTH_HEADER.size}-byte config header "
                               "and a PNG (is this the plain 'compressed' transport?)")
    _, quant_a, quant_b = DEPTH_HEADER.unpack_from(data)
    img = _open(data[DEPTH_HEADER.size:], what, max_pixels)
    if img.format != "PNG" or img.mode not in ("I;16", "I;16B", "I"):
        raise ImageDecodeError(f"{what}: expected a 16-bit PNG after the config header, got {img.format} {img.mode}")
    q = _load(img, None, what).astype(np.uint16)
    if encoding != "32FC1":
        return q
    if not (np.isfinite(quant_a) and np.isfinite(quant_b)) or quant_a == 0:
        raise ImageDecodeError(f"{what}: 32FC1 config header has unusable quantisation A={quant_a}, B={quant_b}")
    with np.errstate(divide="ignore"):
        depth = np.float32(quant_a) / (q.astype(np.float32) - np.float32(quant_b))
    depth[q == 0] = np.nan
    return depth


# ------------------------------------------------------------------ encoding (tests, sample recordings)
def encode_color(rgb: np.ndarray, codec: str = "jpeg", quality: int = 95) -> tuple[str, bytes]:
    """(format, data) as compressed_image_transport publishes an rgb8 image."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="JPEG" if codec == "jpeg" else "PNG",
                                                    **({"quality": quality} if codec == "jpeg" else {}))
    return f"rgb8; {codec} compressed bgr8", buf.getvalue()


def encode_depth(depth: np.ndarray, depth_max: float = 10.0, depth_quantization: float = 100.0) -> tuple[str, bytes]:
    """(format, data) as compressed_depth_image_transport publishes 16UC1 (raw) or 32FC1 (inverse depth)."""
    from PIL import Image

    if depth.dtype == np.uint16:
        fmt, header, q = "16UC1; compressedDepth png", DEPTH_HEADER.pack(0, 0.0, 0.0), depth
    else:
        a = np.float32(depth_quantization * (depth_quantization + 1.0))
        b = np.float32(1.0 - a / np.float32(depth_max))
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = a / depth.astype(np.float32) + b
        q = np.where(np.isfinite(depth) & (depth > 0) & (depth < depth_max), inv, 0).astype(np.uint16)
        fmt, header = "32FC1; compressedDepth png", DEPTH_HEADER.pack(0, float(a), float(b))
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(q)).save(buf, format="PNG")
    return fmt, header + buf.getvalue()
