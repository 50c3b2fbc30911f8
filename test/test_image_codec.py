"""sensor_msgs/Image decoding without cv_bridge: every encoding, row padding, byte order, bad sizes."""
import numpy as np
import pytest

from sam_ovseg_ros.ros.image_codec import ImageDecodeError, RawImage, decode_color, decode_depth, encode

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
BIG = 10_000_000


def raw(arr: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> RawImage:
    h, w = arr.shape[:2]
    rows = arr.reshape(h, -1)
    if bigendian:
        rows = rows.astype(rows.dtype.newbyteorder(">"))
    b = rows.view(np.uint8).reshape(h, -1)
    buf = np.zeros((h, b.shape[1] + pad), np.uint8)
    buf[:, : b.shape[1]] = b
    return RawImage(encoding, h, w, b.shape[1] + pad, bigendian, buf.tobytes())


@pytest.mark.parametrize("pad", [0, 3, 64])
@pytest.mark.parametrize("enc,make", [
    ("rgb8", lambda a: a), ("bgr8", lambda a: a[..., ::-1]),
    ("rgba8", lambda a: np.dstack([a, np.full(a.shape[:2], 7, np.uint8)])),
    ("bgra8", lambda a: np.dstack([a[..., ::-1], np.full(a.shape[:2], 7, np.uint8)])),
])
def test_color_encodings_give_rgb(enc, make, pad):
    out = decode_color(raw(np.ascontiguousarray(make(RGB)), enc, pad), BIG)
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8
    assert np.array_equal(out, RGB)


def test_mono8_is_grey_rgb():
    g = RGB[..., 0].copy()
    out = decode_color(raw(g, "mono8", pad=5), BIG)
    assert np.array_equal(out, np.dstack([g, g, g]))


@pytest.mark.parametrize("enc", ["16UC1", "mono16"])
@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("pad", [0, 2, 10])
def test_uint16_depth(enc, bigendian, pad):
    d = RNG.integers(0, 65535, (4, 6), dtype=np.uint16)
    out = decode_depth(raw(d, enc, pad, bigendian), BIG)
    assert out.dtype == np.uint16 and out.dtype.isnative
    assert np.array_equal(out, d)


@pytest.mark.parametrize("bigendian", [False, True])
def test_float_depth_keeps_nan_and_inf(bigendian):
    d = RNG.random((4, 6)).astype(np.float32)
    d[0, 0], d[1, 1], d[2, 2] = np.nan, np.inf, -1.0
    out = decode_depth(raw(d, "32FC1", 4, bigendian), BIG)
    assert out.dtype == np.float32
    assert np.array_equal(out, d, equal_nan=True)


def test_roundtrip_encode():
    for arr, enc in ((RGB, "rgb8"), (RNG.integers(0, 9, (5, 7), dtype=np.uint16), "16UC1")):
        h, w, step, data = encode(arr, enc)
        assert np.array_equal(decode_color(RawImage(enc, h, w, step, False, data), BIG) if enc == "rgb8"
                              else decode_depth(RawImage(enc, h, w, step, False, data), BIG), arr)


@pytest.mark.parametrize("img,match", [
    (RawImage("yuv422", 2, 2, 4, False, bytes(8)), "unsupported encoding 'yuv422'"),
    (RawImage("rgb8", 0, 4, 12, False, b""), "empty image"),
    (RawImage("rgb8", 2, 4, 11, False, bytes(22)), "step 11 < 12"),
    (RawImage("rgb8", 2, 4, 12, False, bytes(20)), "data has 20 bytes, step\\*height = 24"),
    (RawImage("rgb8", 8000, 8000, 24000, False, bytes(10)), "exceeds max_image_pixels"),
    (RawImage("16UC1", 2, 2, 5, False, bytes(10)), "not a multiple"),
])
def test_bad_images_are_refused_with_a_reason(img, match):
    with pytest.raises(ImageDecodeError, match=match):
        (decode_depth if img.encoding == "16UC1" else decode_color)(img, 16_000_000)


def test_depth_encoding_on_color_topic_is_refused():
    with pytest.raises(ImageDecodeError, match="accepted: rgb8"):
        decode_color(raw(np.zeros((2, 2), np.uint16), "16UC1"), BIG)
