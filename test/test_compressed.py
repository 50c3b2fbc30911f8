"""Compressed inputs: image_transport's compressed (jpeg/png colour) and compressedDepth (png) formats,
decoded exactly, bad files refused with a reason, and through the node over DDS against the raw path."""
import time

import numpy as np
import pytest
from rosharness import cloud_array, compressed_msg, img, info_msg, node_rig
from scannet import load

from sam_ovseg_ros.ros import compressed
from sam_ovseg_ros.ros.image_codec import ImageDecodeError

S = 1_000_000_000


@pytest.fixture(scope="module")
def frame():
    return load("1660")


# ------------------------------------------------------------------ codec
def test_png_colour_and_16bit_depth_are_exact(frame):
    rgb, d, _ = frame
    assert np.array_equal(compressed.decode_color(*compressed.encode_color(rgb, "png"), 1 << 30), rgb)
    fmt, data = compressed.encode_depth(d)
    assert fmt == "16UC1; compressedDepth png" and data[:12] == b"\0" * 12
    out = compressed.decode_depth(fmt, data, 1 << 30)
    assert out.dtype == np.uint16 and np.array_equal(out, d)


def test_jpeg_colour_is_within_jpeg_loss(frame):
    rgb, _, _ = frame
    fmt, data = compressed.encode_color(rgb, "jpeg", quality=90)
    assert fmt == "rgb8; jpeg compressed bgr8" and len(data) < rgb.nbytes / 10
    out = compressed.decode_color(fmt, data, 1 << 30)
    diff = np.abs(out.astype(int) - rgb)
    assert out.shape == rgb.shape and diff.mean() < 2.0 and np.percentile(diff, 99) < 16
    assert np.array_equal(compressed.decode_color("jpeg", data, 1 << 30), out)  # old publishers' bare format


def test_32fc1_inverse_depth_quantisation(frame):
    """compressedDepth 32FC1: q = A / d + B truncated to uint16, d = A / (q - B); 0 = invalid (NaN)."""
    _, d, _ = frame
    m = np.where(d > 0, d / np.float32(1000), np.float32(np.nan)).astype(np.float32)
    fmt, data = compressed.encode_depth(m, depth_max=10.0, depth_quantization=100.0)
    out = compressed.decode_depth(fmt, data, 1 << 30)
    assert np.array_equal(np.isnan(out), np.isnan(m))
    a = 100.0 * 101.0
    step = m ** 2 / a  # one quantisation step at depth d: |dd/dq| = d^2 / A
    ok = ~np.isnan(m)
    assert (np.abs(out[ok] - m[ok]) <= 1.01 * step[ok] + 1e-6).all()


@pytest.mark.parametrize("case,text", [
    ("truncated_jpeg", "truncated"),
    ("corrupt_header", "unknown or damaged file header"),
    ("empty", "empty data"),
    ("depth_not_png", "expected a 16-bit PNG"),
    ("depth_short", "not even the 12-byte config header"),
    ("depth_plain_png", "config header is missing"),
    ("depth_rvl", "only 'compressedDepth png'"),
    ("depth_encoding", "is not 16UC1"),
    ("huge", "exceeds max_image_pixels"),
])
def test_bad_compressed_images_say_what_is_wrong(frame, case, text):
    rgb, d, _ = frame
    cfmt, cdata = compressed.encode_color(rgb, "jpeg")
    dfmt, ddata = compressed.encode_depth(d)
    with pytest.raises(ImageDecodeError, match=text):
        if case == "truncated_jpeg":
            compressed.decode_color(cfmt, cdata[: len(cdata) // 2], 1 << 30)
        elif case == "corrupt_header":
            compressed.decode_color(cfmt, b"\0" * 64 + cdata[64:], 1 << 30)
        elif case == "empty":
            compressed.decode_color(cfmt, b"", 1 << 30)
        elif case == "depth_not_png":
            compressed.decode_depth(dfmt, ddata[:12] + cdata, 1 << 30)
        elif case == "depth_short":
            compressed.decode_depth(dfmt, ddata[:12], 1 << 30)
        elif case == "depth_plain_png":
            compressed.decode_depth(dfmt, ddata[12:], 1 << 30)
        elif case == "depth_rvl":
            compressed.decode_depth("16UC1; compressedDepth rvl", ddata, 1 << 30)
        elif case == "depth_encoding":
            compressed.decode_depth("rgb8; compressedDepth png", ddata, 1 << 30)
        else:
            compressed.decode_color(cfmt, cdata, 1000)


# ------------------------------------------------------------------ through the node
@pytest.fixture(scope="module")
def rigs(rclpy_context, tmp_path_factory):
    with node_rig("t_raw", {"sync.slop": 0.0}, tmp_path_factory) as raw, \
            node_rig("t_cmp", {"sync.slop": 0.0, "transport": "compressed"}, tmp_path_factory) as cmp:
        yield raw, cmp


def run(rig, rgb, d, k, stamp):
    node, h = rig
    h.publish(rgb, d, k, stamp)
    return h.wait_stamp(stamp, timeout=90)


@pytest.mark.dds
@pytest.mark.parametrize("codec", ["png", "jpeg"])
def test_compressed_inputs_give_the_raw_outputs(rigs, frame, codec):
    rgb, d, k = frame
    raw, cmp = rigs
    cmp[1].color_codec = codec
    stamp = (10 if codec == "png" else 20) * S
    a, b = run(raw, rgb, d, k, stamp), run(cmp, rgb, d, k, stamp)
    # depth is lossless: everything that depends on depth alone is equal (SAM segments the depth image)
    for name in ("depth_colormap", "instances"):
        assert np.array_equal(img(a[name]), img(b[name])), name
    pa, pb = cloud_array(a["points"]), cloud_array(b["points"])
    for f in ("x", "y", "z", "instance"):
        assert np.array_equal(pa[f], pb[f], equal_nan=True), f
    if codec == "png":  # lossless colour too: every output is the raw path's
        for name in ("semantic", "overlay"):
            assert np.array_equal(img(a[name]), img(b[name])), name
        assert np.array_equal(pa["rgb"].view(np.uint32), pb["rgb"].view(np.uint32))
        assert [(s.id, s.class_id, s.area) for s in a["segments"].segments] == \
               [(s.id, s.class_id, s.area) for s in b["segments"].segments]
    else:  # JPEG: the cloud's colours within JPEG's loss
        ca = np.stack([(pa["rgb"].view(np.uint32) >> s) & 255 for s in (16, 8, 0)], -1).astype(int)
        cb = np.stack([(pb["rgb"].view(np.uint32) >> s) & 255 for s in (16, 8, 0)], -1).astype(int)
        assert np.abs(ca - cb).mean() < 2.0


@pytest.mark.dds
@pytest.mark.parametrize("case,kind,text", [
    ("truncated_jpeg", "color_image", "corrupt or truncated JPEG"),
    ("corrupt_png", "depth_image", "depth/image/compressedDepth"),
    ("wrong_header", "depth_image", "12-byte config header is missing"),
])
def test_bad_compressed_frame_is_skipped_and_the_next_is_processed(rigs, frame, case, kind, text):
    rgb, d, k = frame
    node, h = rigs[1]
    h.color_codec = "jpeg"
    stamp = {"truncated_jpeg": 100, "corrupt_png": 110, "wrong_header": 120}[case] * S
    cfmt, cdata = compressed.encode_color(rgb, "jpeg")
    dfmt, ddata = compressed.encode_depth(d)
    if case == "truncated_jpeg":
        cdata = cdata[: len(cdata) // 3]
    elif case == "corrupt_png":
        ddata = ddata[:200] + bytes(b ^ 0xFF for b in ddata[200:400]) + ddata[400:]
    else:
        ddata = ddata[12:]  # a plain PNG on compressedDepth: the config header is missing
        dfmt = "16UC1; compressedDepth png"
    since = len(node.log())
    h.pub_info.publish(info_msg(k, 640, 480, stamp))
    time.sleep(0.05)
    h.pub_depth.publish(compressed_msg(dfmt, ddata, stamp))
    h.pub_color.publish(compressed_msg(cfmt, cdata, stamp))
    end = time.monotonic() + 30
    lines = []
    while not lines and time.monotonic() < end:
        lines = [ln for ln in node.log()[since:].splitlines() if f"[{kind}]" in ln]
        time.sleep(0.1)
    assert lines and text in lines[0], node.log()[since:][-2000:]
    assert h.by_stamp("depth_colormap", stamp) is None
    out = run(rigs[1], rgb, d, k, stamp + 5 * S)  # the node lives on and processes the next good frame
    assert out["segments"].segments and node.alive()
