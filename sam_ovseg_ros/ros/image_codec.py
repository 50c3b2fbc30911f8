"""sensor_msgs/Image bytes <-> numpy, without cv_bridge (not on PyPI, broken on NumPy 2).

Decoding honours ``step`` (row padding), ``is_bigendian`` and the channel order, and checks
every size before touching the buffer, so a malformed or huge message is refused with a
clear reason instead of being allocated or misread.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# encoding -> (numpy dtype, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")


class ImageDecodeError(ValueError):
    """The message cannot be read as an image of the expected kind."""


@dataclass(frozen=True)
class RawImage:
    """The fields of a sensor_msgs/Image that decoding needs (keeps this module ROS-free)."""

    encoding: str
    height: int
    width: int
    step: int
    is_bigendian: bool
    data: object  # bytes-like

    @classmethod
    def from_msg(cls, msg) -> "RawImage":
        return cls(msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian), msg.data)


def decode(img: RawImage, allowed: tuple[str, ...], max_pixels: int) -> np.ndarray:
    """Image array (H, W) or (H, W, C) in the message's own layout; a read-only view when possible."""
    if img.encoding not in ENCODINGS or img.encoding not in allowed:
        raise ImageDecodeError(f"unsupported encoding '{img.encoding}' (accepted: {', '.join(allowed)})")
    dtype, channels = ENCODINGS[img.encoding]
    h, w = int(img.height), int(img.width)
    if h <= 0 or w <= 0:
        raise ImageDecodeError(f"empty image {w}x{h}")
    if h * w > max_pixels:
        raise ImageDecodeError(f"image {w}x{h} exceeds max_image_pixels={max_pixels}; refused")
    row_bytes = w * channels * dtype.itemsize
    if img.step < row_bytes:
        raise ImageDecodeError(f"step {img.step} < {row_bytes} bytes needed for {w} px of {img.encoding}")
    buf = memoryview(img.data).cast("B")
    if buf.nbytes != img.step * h:
        raise ImageDecodeError(f"data has {buf.nbytes} bytes, step*height = {img.step * h}")
    if img.step % dtype.itemsize:
        raise ImageDecodeError(f"step {img.step} is not a multiple of the {dtype.itemsize}-byte pixel type")
    wire = dtype.newbyteorder(">" if img.is_bigendian else "<")
    rows = np.frombuffer(buf, dtype=wire).reshape(h, img.step // dtype.itemsize)
    arr = rows[:, : w * channels]
    if not wire.isnative:
        arr = arr.astype(dtype)  # byte swap into native order (a copy)
    return arr.reshape(h, w, channels) if channels > 1 else arr.reshape(h, w)


def decode_color(img: RawImage, max_pixels: int) -> np.ndarray:
    """H x W x 3 uint8 RGB (a copy only when the channel order or count needs one)."""
    arr = decode(img, COLOR_ENCODINGS, max_pixels)
    enc = img.encoding
    if enc == "rgb8":
        return arr
    if enc == "bgr8":
        return arr[..., ::-1]
    if enc == "rgba8":
        return arr[..., :3]
    if enc == "bgra8":
        return arr[..., 2::-1]
    return np.repeat(arr[..., None], 3, axis=2)  # mono8


def decode_depth(img: RawImage, max_pixels: int) -> np.ndarray:
    """uint16 (raw units, 0 invalid) for 16UC1/mono16, float32 metres for 32FC1."""
    return decode(img, DEPTH_ENCODINGS, max_pixels)


def encode(arr: np.ndarray, encoding: str) -> tuple[int, int, int, np.ndarray]:
    """(height, width, step, data) of an array in ``encoding`` (little-endian); data is the C-contiguous
    array itself (no copy when it already is one): the message layer copies it once."""
    dtype, channels = ENCODINGS[encoding]
    if arr.dtype != dtype:
        raise ValueError(f"{encoding} needs {dtype}, got {arr.dtype}")
    if (channels == 1 and arr.ndim != 2) or (channels > 1 and (arr.ndim != 3 or arr.shape[2] != channels)):
        raise ValueError(f"{encoding} needs {channels} channel(s), got shape {arr.shape}")
    arr = np.ascontiguousarray(arr)
    h, w = arr.shape[:2]
    return h, w, w * channels * dtype.itemsize, arr
